/**
 * Task states as Swarm names them, and the status the runtime reports for a
 * task: pure functions from what was observed (an exit status, whether a stop
 * was asked for) to what the manager is told.
 *
 * new → assigned → preparing belong to the manager and the agent; the runtime
 * takes a task from `starting` to `running` and on to `complete` (exit 0),
 * `failed` (any other exit, or an end whose status was lost) or `shutdown`
 * (netd stopped it). A start refused before any process exists throws; the
 * agent reports that task as `rejected`.
 */
import { constants } from 'node:os'

export const TASK_STATES = ['new', 'assigned', 'preparing', 'starting', 'running', 'complete', 'failed', 'shutdown', 'rejected'] as const
export type TaskState = typeof TASK_STATES[number]
export type RuntimeTaskState = Extract<TaskState, 'starting' | 'running' | 'complete' | 'failed' | 'shutdown'>

const FINAL: ReadonlySet<TaskState> = new Set(['complete', 'failed', 'shutdown', 'rejected'])

export function isFinal (state: TaskState): boolean {
  return FINAL.has(state)
}

export interface TaskStatus {
  readonly task: string
  readonly name: string
  readonly state: RuntimeTaskState
  /** Swarm's short message: starting, started, finished, shutdown. */
  readonly message: string
  /** Why a task failed, for a person; null otherwise. */
  readonly error: string | null
  /** The task's PID 1 as the host sees it, while it runs. */
  readonly pid: number | null
  readonly exitCode: number | null
  /** The signal N when the exit code is 128+N: a shell reports a death by signal so (a task that exits 128+N by itself reads the same). */
  readonly signal: NodeJS.Signals | null
  readonly startedAt: string | null
  readonly finishedAt: string | null
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals])
)

export function signalOfExitCode (code: number): NodeJS.Signals | null {
  if (code <= 128 || code > 128 + 64) return null
  return SIGNAL_NAMES.get(code - 128) ?? null
}

interface Identity {
  readonly task: string
  readonly name: string
}

export function startingStatus (id: Identity): TaskStatus {
  return { ...id, state: 'starting', message: 'starting', error: null, pid: null, exitCode: null, signal: null, startedAt: null, finishedAt: null }
}

export function runningStatus (id: Identity, pid: number | null, startedAt: string): TaskStatus {
  return { ...id, state: 'running', message: 'started', error: null, pid, exitCode: null, signal: null, startedAt, finishedAt: null }
}

export interface Ending {
  /** The recorded exit status, or null when the task is gone without one. */
  readonly exitCode: number | null
  readonly finishedAt: string | null
  readonly stopRequested: boolean
  readonly startedAt: string | null
  /** Why the status is missing (exitCode null). */
  readonly lost?: string
  /** The last line the task wrote to stderr: explains a launch failure (exit 125-127). */
  readonly stderrTail?: string
}

/** Exit codes 125-127: the chain could not run the command (weft, env, setpriv or exec failed). */
function isLaunchFailure (code: number): boolean {
  return code >= 125 && code <= 127
}

export function endedStatus (id: Identity, ending: Ending): TaskStatus {
  const { exitCode } = ending
  const signal = exitCode === null ? null : signalOfExitCode(exitCode)
  const common = { ...id, pid: null, exitCode, signal, startedAt: ending.startedAt, finishedAt: ending.finishedAt }
  if (ending.stopRequested) return { ...common, state: 'shutdown', message: 'shutdown', error: null }
  if (exitCode === 0) return { ...common, state: 'complete', message: 'finished', error: null }
  let error: string
  if (exitCode === null) error = `exit status lost: ${ending.lost ?? 'the task ended while nothing watched it'}`
  else if (signal !== null) error = `non-zero exit (${exitCode}): killed by ${signal}`
  else error = `non-zero exit (${exitCode})`
  if (exitCode !== null && isLaunchFailure(exitCode) && ending.stderrTail) error += `: ${ending.stderrTail}`
  return { ...common, state: 'failed', message: 'finished', error }
}
