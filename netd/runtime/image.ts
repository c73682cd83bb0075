/**
 * weft's local image convention (see README.md in this directory): an image
 * is a directory `<images dir>/<reference>/` holding `rootfs/` (the task's
 * root filesystem) and optionally `config.json` (the image's defaults).
 * A reference with no such directory runs on the host's filesystem.
 *
 * There is no pulling, layering or digest: images are put there by whatever
 * provisions the node (debootstrap, `docker export | tar -x`, a package).
 */
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { TaskRuntimeError } from './errors.ts'
import { envSchema, userSchema, workdirSchema } from './spec.ts'

export const DEFAULT_IMAGES_DIR = '/var/lib/weft/images'

export const imageConfigSchema = z.strictObject({
  /** The default command (argv) when a task gives none. */
  command: z.array(z.string().refine((s) => !s.includes('\0'), 'must not contain NUL bytes')).min(1).optional(),
  /** Environment under the task's own (a task's variable wins). */
  env: envSchema.optional(),
  workdir: workdirSchema.optional(),
  user: userSchema.optional()
})

export type ImageConfig = z.output<typeof imageConfigSchema>

export type ResolvedImage =
  | { readonly kind: 'rootfs', readonly reference: string, readonly dir: string, readonly rootfs: string, readonly config: ImageConfig }
  | { readonly kind: 'host', readonly reference: string }

/** The image's root as the task sees it from outside: its rootfs, or `/`. */
export function imageRoot (image: ResolvedImage): string {
  return image.kind === 'rootfs' ? image.rootfs : '/'
}

/**
 * Finds `reference` (already validated against IMAGE_PATTERN) under `imagesDir`. A directory
 * that exists but has no rootfs, or a config.json that does not validate, is an error rather than
 * a silent fall-back to the host filesystem.
 */
export async function resolveImage (imagesDir: string, reference: string): Promise<ResolvedImage> {
  const dir = join(imagesDir, reference)
  const info = await stat(dir).catch(() => null)
  if (info === null) return { kind: 'host', reference }
  const rootfs = join(dir, 'rootfs')
  if (!(await stat(rootfs).catch(() => null))?.isDirectory()) {
    throw new TaskRuntimeError('NETD_ERR_TASK_IMAGE', `image "${reference}": ${dir} exists but has no rootfs directory`)
  }
  let config: ImageConfig = {}
  const configText = await readFile(join(dir, 'config.json'), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null
    throw error
  })
  if (configText !== null) {
    let json: unknown
    try {
      json = JSON.parse(configText)
    } catch (error) {
      throw new TaskRuntimeError('NETD_ERR_TASK_IMAGE', `image "${reference}": config.json is not JSON: ${(error as Error).message}`)
    }
    const parsed = imageConfigSchema.safeParse(json)
    if (!parsed.success) {
      const details = parsed.error.issues.map((issue) => `${issue.path.map(String).join('.') || 'config'}: ${issue.message}`)
      throw new TaskRuntimeError('NETD_ERR_TASK_IMAGE', `image "${reference}": invalid config.json: ${details.join('; ')}`, details)
    }
    config = parsed.data
  }
  return { kind: 'rootfs', reference, dir, rootfs, config }
}
