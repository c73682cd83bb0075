/**
 * Spawning a tool, in netd's own namespace or in a named one. A named
 * namespace is entered with `nsenter --net=/run/netns/NAME` (one extra exec,
 * ~3 ms; `ip netns exec` also remounts /sys and costs more). Never one process
 * per object: callers batch (one `nft -f` per namespace per change).
 */
import { spawn } from 'node:child_process'
import { access } from 'node:fs/promises'

export const NETNS_DIR = '/run/netns'

export interface Completed {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** argv run inside `netns` (null: netd's own namespace). */
export function inNamespace (netns: string | null, argv: readonly string[]): string[] {
  return netns === null ? [...argv] : ['nsenter', `--net=${NETNS_DIR}/${netns}`, ...argv]
}

export interface RunOptions {
  /** Written to stdin, which is then closed. */
  readonly input?: string
  /** Resolve (as exit code 0) as soon as the output so far satisfies this; the process then finishes on its own. */
  readonly doneWhen?: (stdout: string) => boolean
  /** Added to the environment. */
  readonly env?: Readonly<Record<string, string>>
}

export function run (argv: readonly string[], options: RunOptions = {}): Promise<Completed> {
  return new Promise((resolve, reject) => {
    const env = options.env === undefined ? process.env : { ...process.env, ...options.env }
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env })
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    const text = (chunks: Buffer[]): string => Buffer.concat(chunks).toString()
    child.stdout.on('data', (chunk: Buffer) => {
      stdout.push(chunk)
      if (options.doneWhen?.(text(stdout)) === true) resolve({ code: 0, stdout: text(stdout), stderr: text(stderr) })
    })
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? 1, stdout: text(stdout), stderr: text(stderr) }))
    child.stdin.on('error', () => { /* the exit code and stderr report the failure */ })
    child.stdin.end(options.input ?? '')
  })
}

export async function namespaceExists (netns: string): Promise<boolean> {
  return await access(`${NETNS_DIR}/${netns}`).then(() => true, () => false)
}
