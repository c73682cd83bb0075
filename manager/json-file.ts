/**
 * Small JSON files kept by the manager and by netd's swarm module, each
 * replaced whole: written to a fresh temporary file (created with the final
 * mode), fsynced, renamed over the old one, and the directory fsynced. A
 * crash leaves the old file or the new one, never a mix.
 */
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { z } from 'zod'

/** The file's contents checked against `schema`; undefined when there is no file. Throws on a file that does not parse. */
export async function readJsonFile<S extends z.ZodType> (path: string, schema: S): Promise<z.output<S> | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  const parsed = schema.safeParse(JSON.parse(text))
  if (!parsed.success) throw new Error(`${path}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(file)'}: ${i.message}`).join('; ')}`)
  return parsed.data
}

export async function writeJsonFile (path: string, value: unknown, mode = 0o600): Promise<void> {
  const dir = dirname(path)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const temporary = `${path}.tmp`
  await unlink(temporary).catch((error: NodeJS.ErrnoException) => { if (error.code !== 'ENOENT') throw error })
  const file = await open(temporary, 'wx', mode)
  try {
    await file.writeFile(JSON.stringify(value, null, 2) + '\n')
    await file.sync()
  } finally {
    await file.close()
  }
  await rename(temporary, path)
  const directory = await open(dir, 'r')
  try { await directory.sync() } finally { await directory.close() }
}
