/**
 * What the agent must do to make the task runtime match the document's task
 * list: a pure decision from the document's tasks, the runtime's statuses and
 * the work already in flight.
 *
 *  - start: desired running, unknown to the runtime, its namespace built;
 *  - stop: running in the runtime, and desired shutdown or no longer listed
 *    (the manager forgot it: its node was removed, or the swarm left);
 *  - never started: desired shutdown before the runtime ever had it, which
 *    ends it as `shutdown` without a process;
 *  - forget: ended tasks no longer listed, beyond the `keep` most recent of
 *    each service (their logs go with them).
 * A task id is started at most once (the runtime refuses a second start):
 * a task that ended stays ended even if the document still lists it, until
 * the manager hears of the end and replaces it.
 */
import { envFromList, type TaskProcessSpecInput } from '../runtime/spec.ts'
import { isFinal, type TaskStatus } from '../runtime/status.ts'
import { taskNamespaceName } from '../kernel-state.ts'
import type { Task } from '../desired-state.ts'

export interface SyncInput {
  readonly tasks: readonly Task[]
  readonly statuses: ReadonlyMap<string, TaskStatus>
  /** Tasks being started or stopped right now. */
  readonly busy: ReadonlySet<string>
  /** Tasks the runtime refused to start (rejected): never tried again. */
  readonly rejected: ReadonlySet<string>
  /** Tasks whose network namespace exists. */
  readonly namespaces: ReadonlySet<string>
  /** Ended tasks kept per service once the document no longer lists them. */
  readonly keep: number
}

export interface SyncPlan {
  readonly start: readonly Task[]
  readonly stop: readonly string[]
  readonly neverStarted: readonly string[]
  readonly forget: readonly string[]
}

export function planTaskSync (input: SyncInput): SyncPlan {
  const { tasks, statuses, busy, rejected, namespaces, keep } = input
  const listed = new Map(tasks.map((t) => [t.id, t]))
  const start: Task[] = []
  const stop: string[] = []
  const neverStarted: string[] = []
  for (const task of tasks) {
    if (busy.has(task.id) || rejected.has(task.id)) continue
    const status = statuses.get(task.id)
    if (task.desiredState === 'running') {
      if (status === undefined && namespaces.has(task.id)) start.push(task)
    } else if (status === undefined) {
      neverStarted.push(task.id)
    } else if (!isFinal(status.state)) {
      stop.push(task.id)
    }
  }
  const ended: TaskStatus[] = []
  for (const [id, status] of statuses) {
    if (listed.has(id)) continue
    if (!isFinal(status.state)) {
      if (!busy.has(id)) stop.push(id)
    } else if (!busy.has(id)) {
      ended.push(status)
    }
  }
  const byService = new Map<string, TaskStatus[]>()
  for (const status of ended) {
    const service = status.name.split('.')[0] ?? status.name
    byService.set(service, [...(byService.get(service) ?? []), status])
  }
  const forget: string[] = []
  for (const list of byService.values()) {
    list.sort((a, b) => (b.finishedAt ?? '').localeCompare(a.finishedAt ?? '') || (a.task < b.task ? -1 : 1))
    forget.push(...list.slice(keep).map((s) => s.task))
  }
  return { start, stop: stop.sort(), neverStarted, forget: forget.sort() }
}

/** What the runtime is given to start a task of the document. */
export function processSpecOf (task: Task, prefix: string): TaskProcessSpecInput {
  return {
    task: task.id,
    name: task.name,
    netns: taskNamespaceName(prefix, task.id),
    image: task.image,
    command: task.command,
    env: envFromList(task.env),
    ...(task.workdir === undefined ? {} : { workdir: task.workdir }),
    ...(task.user === undefined ? {} : { user: task.user }),
    ...(task.hostname === undefined ? {} : { hostname: task.hostname })
  }
}
