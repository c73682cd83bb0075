/**
 * The orchestrator: desired state vs actual, as a pure function from the
 * cluster state (plus the time and the leader's in-memory liveness) to the
 * commands that move the cluster toward what its services ask for. The
 * leader runs it after every change and when `wakeAt` comes, proposes the
 * commands in order, and runs it again only once they are applied (ids of
 * new tasks derive from the state's index, so a round proposed twice is
 * refused the second time).
 *
 * One round, in order; each step sees what the earlier ones did, because the
 * round applies its own commands to a scratch copy of the state as it goes
 * (so every command it returns applies cleanly to the state it was given):
 *
 *  1. liveness: a ready node silent for longer than the grace period is Down;
 *     a Down node heard from again is ready;
 *  2. per service, per slot (replicated) or node (global):
 *     - create the tasks that are missing, shut down those beyond the replica
 *       count (highest slots) or on nodes no longer eligible (global);
 *     - replace tasks lost with their node (down, removed, drained, or no
 *       longer matching the constraints) elsewhere; a global service's task
 *       there is shut down instead, and comes back with the node;
 *     - replace tasks that ended, as the restart policy says (condition,
 *       delay, max attempts within window);
 *     - run the rolling update (rolling-update.ts);
 *  3. forget old tasks once they stopped: those of removed services, slots
 *     scaled away and removed nodes, and per slot all but the
 *     `taskHistoryLimit` most recent;
 *  4. retry address allocation of tasks waiting for addresses, when there is room;
 *  5. schedule pending tasks (scheduler.ts), or record why they cannot be.
 *
 * With nothing to do it returns no command: a converged cluster is quiet.
 */
import { apply } from '../store/apply.ts'
import type { CommandInput } from '../store/commands.ts'
import type { StoreErrorInfo } from '../store/errors.ts'
import { derivedId } from '../store/ids.ts'
import { freeAddresses } from '../store/ipam.ts'
import { slotKey, tasksOfService } from '../store/queries.ts'
import { specKey, taskSpecOf } from '../store/spec.ts'
import { isTerminal, TASK_STATE_ORDER, type ClusterState, type NodeRecord, type ServiceRecord, type TaskRecord } from '../store/state.ts'
import { constraintsOf, satisfiesAll } from './constraints.ts'
import { rollingUpdate } from './rolling-update.ts'
import { schedule } from './scheduler.ts'

/** What the leader knows of node liveness, kept in memory, never in the log. */
export interface Liveness {
  /** Time of each node's last heartbeat, on the leader's clock. The leader counts its own node as heard from. */
  readonly lastSeen: ReadonlyMap<string, number>
  /** When this leader began counting: a node not heard from yet gets the grace period from then. */
  readonly since: number
  /** How long a node may stay silent before it is Down (Swarm: heartbeat period 5 s × 3). */
  readonly gracePeriod: number
}

export interface ReconcilePlan {
  /** To propose, in order. */
  readonly commands: readonly CommandInput[]
  /** The state once they are all applied (if nothing else is applied in between). */
  readonly state: ClusterState
  /** Commands the round meant to emit but that apply refused: a bug if ever non-empty. */
  readonly rejected: ReadonlyArray<{ readonly command: CommandInput, readonly error: StoreErrorInfo }>
  /**
   * The earliest time at which a round would do something that time alone
   * brings about (a restart delay, an update's delay or monitor period ends).
   * Heartbeat deadlines are not in it: the caller owns that clock, and runs a
   * round at least once per grace period.
   */
  readonly wakeAt: number | null
}

class Round {
  state: ClusterState
  readonly now: number
  readonly commands: CommandInput[] = []
  readonly rejected: Array<{ command: CommandInput, error: StoreErrorInfo }> = []
  wakeAt: number | null = null
  #base: ClusterState
  #ids = 0

  constructor (state: ClusterState, now: number) {
    this.state = state
    this.#base = state
    this.now = now
  }

  emit (command: CommandInput): boolean {
    const outcome = apply(this.state, command, this.now)
    if (outcome.error !== undefined) {
      this.rejected.push({ command, error: outcome.error })
      return false
    }
    if (outcome.result.changed) {
      this.commands.push(command)
      this.state = outcome.state
    }
    return true
  }

  newId (): string {
    return derivedId(this.#base.cluster!.id, this.#base.index, this.#ids++)
  }

  wake (at: number): void {
    if (at > this.now && (this.wakeAt === null || at < this.wakeAt)) this.wakeAt = at
  }
}

export function plan (state: ClusterState, now: number, liveness: Liveness): ReconcilePlan {
  const round = new Round(state, now)
  if (state.cluster !== null) {
    checkLiveness(round, liveness)
    for (const id of Object.keys(state.services).sort()) orchestrateService(round, id)
    forgetTasks(round)
    retryAllocation(round)
    scheduleTasks(round)
  }
  return { commands: round.commands, state: round.state, rejected: round.rejected, wakeAt: round.wakeAt }
}

export function reconcile (state: ClusterState, now: number, liveness: Liveness): CommandInput[] {
  return [...plan(state, now, liveness).commands]
}

function sortedNodes (state: ClusterState): NodeRecord[] {
  return Object.values(state.nodes).sort((a, b) => (a.id < b.id ? -1 : 1))
}

function checkLiveness (round: Round, liveness: Liveness): void {
  for (const node of sortedNodes(round.state)) {
    const heard = liveness.lastSeen.get(node.id)
    if (node.status === 'ready') {
      const last = Math.max(heard ?? -Infinity, liveness.since)
      if (round.now - last > liveness.gracePeriod) round.emit({ type: 'node.status', node: node.id, status: 'down', message: 'heartbeat failure' })
    } else if (heard !== undefined && round.now - heard <= liveness.gracePeriod) {
      round.emit({ type: 'node.status', node: node.id, status: 'ready', message: '' })
    }
  }
}

/** Why a task that a node was given cannot stay there, or null. Unassigned tasks are the scheduler's. */
function lostReason (state: ClusterState, task: TaskRecord): string | null {
  if (task.node === null || TASK_STATE_ORDER[task.state] < TASK_STATE_ORDER.assigned || isTerminal(task.state)) return null
  const node = state.nodes[task.node]
  if (node === undefined) return `node ${task.node} was removed`
  if (node.status === 'down') return `node ${node.hostname} is down`
  if (node.availability === 'drain') return `node ${node.hostname} is drained`
  const constraints = constraintsOf(task.spec.constraints)
  if (constraints.ok && !satisfiesAll(node, constraints.value)) return `node ${node.hostname} no longer satisfies the constraints`
  return null
}

/** For an ended task: whether (and when) the restart policy starts another, and what it counts as. */
function restartOf (service: ServiceRecord, task: TaskRecord): { at: number, restarts: number } | null {
  if (service.spec.restart.condition === 'on-failure' && task.state === 'complete') return null
  return restartAfter(service, task, task.statusAt)
}

/** Whether (and when) the restart policy replaces a task that failed at `failedAt`. */
function restartAfter (service: ServiceRecord, task: TaskRecord, failedAt: number): { at: number, restarts: number } | null {
  const policy = service.spec.restart
  if (policy.condition === 'none') return null
  const ranLong = policy.window > 0 && task.runningAt !== null && failedAt - task.runningAt >= policy.window
  const restarts = ranLong ? 0 : task.restarts
  if (policy.maxAttempts > 0 && restarts >= policy.maxAttempts) return null
  return { at: failedAt + policy.delay, restarts: restarts + 1 }
}

function orchestrateService (round: Round, serviceId: string): void {
  let service = round.state.services[serviceId]
  if (service === undefined) return
  const ingress = round.state.cluster!.ingressNetwork
  const replace = (task: TaskRecord, restarts: number): void => {
    round.emit({
      type: 'task.create',
      id: round.newId(),
      service: serviceId,
      ...(task.slot !== null ? { slot: task.slot } : { node: task.node! }),
      replaces: task.id,
      restarts
    })
  }
  // Docker's rule: an unhealthy task is stopped and its slot restarted as the restart policy says
  // (condition none keeps it, out of traffic, until it is healthy again).
  const replaceIfUnhealthy = (task: TaskRecord): void => {
    if (task.health?.status !== 'unhealthy') return
    const restart = restartAfter(service!, task, task.health.changedAt)
    if (restart === null) return
    if (round.now < restart.at) {
      round.wake(restart.at)
      return
    }
    round.emit({ type: 'task.shutdown', task: task.id, message: 'task unhealthy' })
    if (service!.spec.mode.kind === 'replicated') replace(task, restart.restarts)
  }
  const handleRunnable = (task: TaskRecord): void => {
    if (isTerminal(task.state)) {
      const restart = restartOf(service!, task)
      if (restart === null) return
      if (round.now >= restart.at) replace(task, restart.restarts)
      else round.wake(restart.at)
      return
    }
    const lost = lostReason(round.state, task)
    if (lost === null) {
      replaceIfUnhealthy(task)
      return
    }
    // Stopped with the reason (as `service ps` shows it), then, for a replicated service, replaced elsewhere.
    round.emit({ type: 'task.shutdown', task: task.id, message: lost })
    if (service!.spec.mode.kind === 'replicated') replace(task, task.restarts)
  }

  const runnable = tasksOfService(round.state, serviceId).filter((t) => t.desiredState === 'running')
  let slots: number
  if (service.spec.mode.kind === 'replicated') {
    const replicas = service.spec.mode.replicas
    slots = replicas
    const filled = new Set<number>()
    for (const task of runnable.sort((a, b) => a.slot! - b.slot!)) {
      if (task.slot! > replicas) {
        round.emit({ type: 'task.shutdown', task: task.id, message: 'scaled down' })
        continue
      }
      filled.add(task.slot!)
      handleRunnable(task)
    }
    for (let slot = 1; slot <= replicas; slot++) {
      if (!filled.has(slot)) round.emit({ type: 'task.create', id: round.newId(), service: serviceId, slot })
    }
  } else {
    const eligible = sortedNodes(round.state).filter((node) => {
      if (node.status !== 'ready' || node.availability !== 'active') return false
      const constraints = constraintsOf(service!.spec.constraints)
      return constraints.ok && satisfiesAll(node, constraints.value)
    })
    slots = eligible.length
    const covered = new Set<string>()
    for (const task of runnable.sort((a, b) => (a.node! < b.node! ? -1 : 1))) {
      const node = round.state.nodes[task.node!]
      const constraints = constraintsOf(service.spec.constraints)
      if (node === undefined || node.availability === 'drain' || (constraints.ok && !satisfiesAll(node, constraints.value))) {
        round.emit({ type: 'task.shutdown', task: task.id, message: node === undefined ? 'node removed' : `node ${node.hostname} is no longer eligible` })
        continue
      }
      covered.add(task.node!)
      handleRunnable(task)
    }
    for (const node of eligible) {
      if (!covered.has(node.id)) round.emit({ type: 'task.create', id: round.newId(), service: serviceId, node: node.id })
    }
  }

  // The rolling update sees what the steps above did.
  service = round.state.services[serviceId]!
  const current = specKey(taskSpecOf(service.spec, ingress))
  const isCurrent = (t: TaskRecord): boolean => specKey(t.spec) === current
  const tasks = tasksOfService(round.state, serviceId)
  const outdated = tasks.filter((t) => t.desiredState === 'running' && !isTerminal(t.state) && !isCurrent(t) && lostReason(round.state, t) === null)
  const decision = rollingUpdate({ service, tasks, outdated, isCurrent, slots, now: round.now })
  if (decision.wakeAt !== null) round.wake(decision.wakeAt)
  for (const task of decision.replace) replace(task, 0)
  if (decision.rollback !== null) round.emit({ type: 'service.rollback', service: serviceId, automatic: true, message: decision.rollback })
  if (decision.transition !== null) round.emit({ type: 'service.update-state', service: serviceId, ...decision.transition })
}

/** A task that no node runs any more, or never did. */
function stopped (state: ClusterState, task: TaskRecord): boolean {
  if (isTerminal(task.state) || TASK_STATE_ORDER[task.state] < TASK_STATE_ORDER.assigned) return true
  return task.node === null || state.nodes[task.node] === undefined
}

function forgetTasks (round: Round): void {
  const limit = round.state.cluster!.taskHistoryLimit
  const bySlot = new Map<string, TaskRecord[]>()
  for (const task of Object.values(round.state.tasks)) {
    const service = round.state.services[task.service]
    const forgettable = task.desiredState === 'shutdown' && stopped(round.state, task)
    const placeGone = service !== undefined && (service.spec.mode.kind === 'replicated'
      ? task.slot! > service.spec.mode.replicas
      : round.state.nodes[task.node ?? ''] === undefined)
    if (service === undefined || placeGone) {
      if (forgettable) round.emit({ type: 'task.remove', task: task.id })
      continue
    }
    const key = `${task.service}/${slotKey(task)}`
    let list = bySlot.get(key)
    if (list === undefined) bySlot.set(key, list = [])
    list.push(task)
  }
  for (const key of [...bySlot.keys()].sort()) {
    const history = bySlot.get(key)!.sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1))
    for (const task of history.slice(limit)) {
      if (task.desiredState === 'shutdown' && stopped(round.state, task)) round.emit({ type: 'task.remove', task: task.id })
    }
  }
}

function retryAllocation (round: Round): void {
  const waiting = Object.values(round.state.tasks)
    .filter((t) => t.desiredState === 'running' && t.state === 'pending' && !t.allocated)
    .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
  for (const task of waiting) {
    if (task.spec.networks.every(({ network }) => freeAddresses(round.state.ipam, network) > 0)) {
      round.emit({ type: 'task.allocate', task: task.id })
    }
  }
}

function scheduleTasks (round: Round): void {
  const decision = schedule(round.state)
  for (const { task, node } of decision.assignments) round.emit({ type: 'task.assign', task, node })
  for (const { task, error } of decision.unschedulable) {
    const current = round.state.tasks[task]!
    if (current.error !== error) round.emit({ type: 'task.status', task, state: 'pending', message: current.message, error })
  }
}
