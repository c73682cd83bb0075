/**
 * Looking at a task's root filesystem from outside it, as the task will see
 * it once chrooted: symlinks are followed inside the root (an absolute link
 * target starts again at the root, `..` stops at it), so the checks made
 * before a start agree with what exec will find. For the host image the root
 * is `/` and this is ordinary path resolution.
 */
import { lstat, readFile, readlink, stat } from 'node:fs/promises'
import { join, posix } from 'node:path'

const MAX_LINKS = 40

/**
 * The host path that `path` (absolute, as seen inside the root) names, with every symlink
 * followed inside the root; null when a component does not exist or links loop.
 */
export async function resolveInRoot (root: string, path: string): Promise<string | null> {
  const pending = path.split('/').filter((c) => c !== '' && c !== '.')
  const resolved: string[] = []
  let links = 0
  while (pending.length > 0) {
    const component = pending.shift() as string
    if (component === '..') {
      resolved.pop()
      continue
    }
    const candidate = join(root, ...resolved, component)
    let info
    try {
      info = await lstat(candidate)
    } catch {
      return null
    }
    if (!info.isSymbolicLink()) {
      resolved.push(component)
      continue
    }
    if (++links > MAX_LINKS) return null
    const target = await readlink(candidate)
    if (target.startsWith('/')) resolved.length = 0
    pending.unshift(...target.split('/').filter((c) => c !== '' && c !== '.'))
  }
  return join(root, ...resolved)
}

export async function isDirectoryInRoot (root: string, path: string): Promise<boolean> {
  const host = await resolveInRoot(root, path)
  if (host === null) return false
  return (await stat(host).catch(() => null))?.isDirectory() ?? false
}

async function isExecutableFile (hostPath: string): Promise<boolean> {
  const info = await stat(hostPath).catch(() => null)
  return info !== null && info.isFile() && (info.mode & 0o111) !== 0
}

/**
 * Where exec would find `program` inside the root: a name with a slash is taken as a path
 * (relative to the working directory), any other name is looked up in PATH's absolute
 * entries, as execvp does. Returns the path inside the root, or null.
 */
export async function findExecutable (root: string, program: string, pathVariable: string, workdir: string): Promise<string | null> {
  if (program.includes('/')) {
    const inside = posix.resolve(workdir, program)
    const host = await resolveInRoot(root, inside)
    return host !== null && (await isExecutableFile(host)) ? inside : null
  }
  for (const dir of pathVariable.split(':')) {
    if (!dir.startsWith('/')) continue
    const inside = posix.join(dir, program)
    const host = await resolveInRoot(root, inside)
    if (host !== null && (await isExecutableFile(host))) return inside
  }
  return null
}

/** A file of the root (e.g. /etc/passwd) as text; empty when it does not exist. */
export async function readRootFile (root: string, path: string): Promise<string> {
  const host = await resolveInRoot(root, path)
  if (host === null) return ''
  return readFile(host, 'utf8').catch(() => '')
}
