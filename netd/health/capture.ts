/**
 * Runs one probe process to its end, its timeout, or its cancellation, and
 * keeps the first bytes of what it printed. The I/O edge of probes.ts.
 *
 * The process is spawned detached, so it leads a process group of its own:
 * the wrappers a probe goes through (setpriv, nsenter — which forks to enter
 * a PID namespace — bash, curl) and whatever the check itself starts are all
 * in that group, and one SIGKILL to the group ends them all. netd's own
 * group is never signalled.
 *
 * A check that exits but leaves a child holding its output open (`sh -c
 * 'daemon &'`) is given DRAIN_MS to finish printing; then the group is killed
 * and the exit status stands. Whatever the end, the group is killed once the
 * probe is over: a probe never outlives its timeout, and nothing a probe
 * started (and left in its group) outlives the probe.
 *
 * Signalling the group after its leader was reaped is safe in practice: the
 * group's id is the leader's pid, which the kernel does not hand out again
 * while the group has members; once it has none, the kill finds nothing
 * unless pids wrapped around pid_max in the moment between.
 */
import { spawn } from 'node:child_process'
import type { BoundedOutput } from './output.ts'

/** How long a probe that exited gets to close its output before what is left of its group is killed. */
export const DRAIN_MS = 250

export type CaptureOutcome =
  | { readonly kind: 'exited', readonly code: number | null, readonly signal: NodeJS.Signals | null }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'aborted' }
  /** The program could not be started at all (ENOENT, EACCES…). */
  | { readonly kind: 'error', readonly message: string }

export interface CaptureOptions {
  readonly env: Readonly<Record<string, string>>
  readonly timeoutMs: number
  /** Where stdout and stderr go; the same collector for both interleaves them as written. */
  readonly stdout: BoundedOutput
  readonly stderr: BoundedOutput
  readonly signal?: AbortSignal | undefined
}

export function capture (argv: readonly string[], options: CaptureOptions): Promise<CaptureOutcome> {
  const { env, timeoutMs, stdout, stderr, signal } = options
  if (signal?.aborted === true) return Promise.resolve({ kind: 'aborted' })
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...env }, cwd: '/', detached: true })
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))

  return new Promise((resolve) => {
    let settled = false
    let drainTimer: NodeJS.Timeout | undefined
    const killGroup = (): void => {
      if (child.pid === undefined) return
      try {
        process.kill(-child.pid, 'SIGKILL')
      } catch { /* ESRCH: the whole group has already gone */ }
    }
    const finish = (outcome: CaptureOutcome): void => {
      if (settled) return
      settled = true
      clearTimeout(timeoutTimer)
      clearTimeout(drainTimer)
      signal?.removeEventListener('abort', onAbort)
      killGroup()
      // Whatever still holds the pipes (a process that left the group) is not waited for.
      child.stdout.destroy()
      child.stderr.destroy()
      resolve(outcome)
    }
    const onAbort = (): void => finish({ kind: 'aborted' })
    const timeoutTimer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs)
    signal?.addEventListener('abort', onAbort, { once: true })

    child.once('error', (error) => finish({ kind: 'error', message: error.message }))
    child.once('exit', (code, exitSignal) => {
      drainTimer = setTimeout(() => finish({ kind: 'exited', code, signal: exitSignal }), DRAIN_MS)
    })
    child.once('close', (code, exitSignal) => finish({ kind: 'exited', code, signal: exitSignal }))
  })
}
