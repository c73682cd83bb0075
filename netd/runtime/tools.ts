/**
 * Finds the programs the launch chain runs, once, by absolute path (the
 * chain itself runs with a fixed PATH, and the task's own PATH must never
 * decide which `unshare` runs as root). util-linux ≥ 2.38 is needed for
 * unshare's --root/--wd/--setuid and nsenter's --wdns; that is checked here
 * so a missing feature is one clear error instead of a failed task.
 */
import { spawn } from 'node:child_process'
import { access, constants } from 'node:fs/promises'
import { join } from 'node:path'
import { TaskRuntimeError } from './errors.ts'
import type { Tools } from './launch.ts'

/** Where tools are looked for: the usual system directories, whatever netd's own PATH is. */
export const TOOL_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']

/** The first executable `name` in `dirs`, by absolute path; null when there is none. */
export async function which (name: string, dirs: readonly string[]): Promise<string | null> {
  for (const dir of dirs) {
    const candidate = join(dir, name)
    try {
      await access(candidate, constants.X_OK)
      return candidate
    } catch { /* next directory */ }
  }
  return null
}

function helpText (program: string): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(program, ['--help'], { stdio: ['ignore', 'pipe', 'ignore'], env: { PATH: TOOL_PATH.join(':'), LC_ALL: 'C' } })
    const out: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.on('error', () => resolve(''))
    child.on('close', () => resolve(Buffer.concat(out).toString()))
  })
}

const REQUIRED_OPTIONS: ReadonlyArray<readonly [keyof Tools, readonly string[]]> = [
  ['unshare', ['--root', '--wd', '--setuid', '--propagation']],
  ['nsenter', ['--wdns', '--setuid', '--root']],
  ['setpriv', ['--regid', '--groups', '--clear-groups']]
]

export async function findTools (dirs: readonly string[] = TOOL_PATH): Promise<Tools> {
  const names: Array<keyof Tools> = ['sh', 'ip', 'unshare', 'nsenter', 'setpriv', 'env', 'mount']
  const found: Partial<Record<keyof Tools, string>> = {}
  const missing: string[] = []
  for (const name of names) {
    const path = await which(name, dirs)
    if (path === null) missing.push(name)
    else found[name] = path
  }
  if (missing.length > 0) {
    throw new TaskRuntimeError('NETD_ERR_TASK_TOOLS', `the task runtime needs ${missing.join(', ')} (util-linux, iproute2, coreutils) in ${dirs.join(':')}`, missing)
  }
  const tools = found as Tools
  const lacking: string[] = []
  for (const [name, options] of REQUIRED_OPTIONS) {
    const help = await helpText(tools[name])
    for (const option of options) if (!help.includes(option)) lacking.push(`${name} ${option}`)
  }
  if (lacking.length > 0) {
    throw new TaskRuntimeError('NETD_ERR_TASK_TOOLS', `the task runtime needs util-linux 2.38 or later: missing ${lacking.join(', ')}`, lacking)
  }
  return Object.freeze(tools)
}
