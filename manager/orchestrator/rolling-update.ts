/**
 * Rolling updates, as a pure decision over a service's tasks: which outdated
 * tasks to replace now, whether the update is over, and what to do when new
 * tasks fail. Everything it needs is in the state (the update's start time,
 * each task's creation and running times), so a new leader carries on where
 * the old one stopped.
 *
 * While an update (or rollback) runs:
 *  - "new" tasks are those made from the current spec since the update began;
 *  - a new task is ready once running and, if it has a health check, healthy;
 *  - a new task failed when it ended (failed, rejected, complete) less than
 *    `monitor` after it started running (or without ever running), turned
 *    unhealthy, or is still not ready `monitor` after it was created;
 *  - more failures than `maxFailureRatio` of the service's tasks trigger the
 *    failure action: pause, continue (ignore), or rollback (to the previous
 *    spec; a rollback that fails pauses);
 *  - otherwise, when every new task is ready and `delay` has passed since
 *    the last of them became ready, the next `parallelism` outdated tasks (0: all)
 *    are replaced, lowest slot first;
 *  - when none is outdated and the last new task has been ready for
 *    `monitor`, the update is completed.
 * Replacement is stop-and-start in one step: the old task is told to stop
 * and the new one is created (task.create `replaces`).
 */
import { isTerminal, type ServiceRecord, type TaskRecord } from '../store/state.ts'

/** When a task became ready for traffic (running, and healthy if it has a check), or null. */
export function readyAt (task: TaskRecord): number | null {
  if (task.state !== 'running' || task.runningAt === null) return null
  if (task.spec.healthcheck === undefined) return task.runningAt
  return task.health?.status === 'healthy' ? task.health.changedAt : null
}

export interface UpdateDecision {
  /** Outdated tasks to replace now. */
  readonly replace: readonly TaskRecord[]
  readonly transition: { readonly state: 'paused' | 'completed' | 'rollback_paused' | 'rollback_completed', readonly message: string } | null
  /** Start an automatic rollback, with this message. */
  readonly rollback: string | null
  /** When something here changes with time alone (a delay or monitor period ends). */
  readonly wakeAt: number | null
}

const NOTHING: UpdateDecision = Object.freeze({ replace: [], transition: null, rollback: null, wakeAt: null })

const byPlace = (a: TaskRecord, b: TaskRecord): number =>
  (a.slot ?? 0) - (b.slot ?? 0) || ((a.node ?? '') < (b.node ?? '') ? -1 : (a.node ?? '') > (b.node ?? '') ? 1 : 0) || (a.id < b.id ? -1 : 1)

export interface UpdateInput {
  readonly service: ServiceRecord
  /** All of the service's tasks, history included. */
  readonly tasks: readonly TaskRecord[]
  /** Running (or runnable) tasks made from an older spec, on nodes that are fine. */
  readonly outdated: readonly TaskRecord[]
  /** Whether a task was made from the service's current spec. */
  readonly isCurrent: (task: TaskRecord) => boolean
  /** How many tasks the service should have (replicas, or eligible nodes): the base of the failure ratio. */
  readonly slots: number
  readonly now: number
}

export function rollingUpdate (input: UpdateInput): UpdateDecision {
  const { service, tasks, outdated, isCurrent, slots, now } = input
  const status = service.updateStatus
  if (status === null || (status.state !== 'updating' && status.state !== 'rollback_started')) return NOTHING
  const rollingBack = status.state === 'rollback_started'
  const config = rollingBack ? service.spec.rollback : service.spec.update
  let wakeAt: number | null = null
  const wake = (at: number): void => { if (at > now && (wakeAt === null || at < wakeAt)) wakeAt = at }

  const fresh = tasks.filter((t) => isCurrent(t) && t.createdAt >= status.startedAt)
  const failures: TaskRecord[] = []
  for (const task of fresh) {
    if (isTerminal(task.state)) {
      if (task.state !== 'shutdown' && (task.runningAt === null || task.statusAt - task.runningAt < config.monitor)) failures.push(task)
    } else if (task.desiredState === 'running' && task.health?.status === 'unhealthy') {
      failures.push(task)
    } else if (task.desiredState === 'running' && readyAt(task) === null) {
      const deadline = task.createdAt + config.monitor
      if (now >= deadline) failures.push(task)
      else wake(deadline)
    }
  }
  failures.sort((a, b) => a.statusAt - b.statusAt || (a.id < b.id ? -1 : 1))

  if (failures.length > config.maxFailureRatio * Math.max(1, slots) && config.failureAction !== 'continue') {
    const culprit = failures[0]!.id
    if (!rollingBack && config.failureAction === 'rollback' && service.previousSpec !== null) {
      return { ...NOTHING, rollback: `update rolled back due to failure or early termination of task ${culprit}` }
    }
    return {
      ...NOTHING,
      transition: rollingBack
        ? { state: 'rollback_paused', message: `rollback paused due to failure or early termination of task ${culprit}` }
        : { state: 'paused', message: `update paused due to failure or early termination of task ${culprit}` }
    }
  }

  const failed = new Set(failures.map((t) => t.id))
  const inFlight = fresh.filter((t) => t.desiredState === 'running' && !isTerminal(t.state) && readyAt(t) === null && !failed.has(t.id))
  const started = fresh.map(readyAt).filter((at): at is number => at !== null)
  const lastRunning = started.length === 0 ? null : Math.max(...started)
  if (inFlight.length > 0) return { ...NOTHING, wakeAt }

  if (outdated.length === 0) {
    const settled = lastRunning === null ? now : lastRunning + config.monitor
    if (now >= settled) {
      return { ...NOTHING, transition: rollingBack ? { state: 'rollback_completed', message: 'rollback completed' } : { state: 'completed', message: 'update completed' } }
    }
    wake(settled)
    return { ...NOTHING, wakeAt }
  }
  if (lastRunning !== null && now < lastRunning + config.delay) {
    wake(lastRunning + config.delay)
    return { ...NOTHING, wakeAt }
  }
  const batch = config.parallelism === 0 ? outdated.length : Math.min(config.parallelism, outdated.length)
  return { ...NOTHING, replace: [...outdated].sort(byPlace).slice(0, batch), wakeAt }
}
