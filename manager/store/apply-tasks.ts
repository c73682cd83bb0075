/**
 * apply for tasks, along Swarm's life cycle:
 *
 *   new → pending → assigned → preparing → starting → running → complete | failed | shutdown | rejected
 *
 * task.create takes the service's current task spec and allocates an address
 * on each of its networks, all or nothing. On success the task is pending
 * (ready to schedule); when a network is full it is pending with an ERROR that
 * says so (and the service shows it too), and the orchestrator retries with
 * task.allocate once addresses are free. A task never waits silently in `new`.
 *
 * Once assigned, only forward moves are accepted (a late report of an older
 * state is refused), and a terminal state is final; reaching it releases the
 * task's addresses. Nodes report for their own tasks only.
 */
import { macForIp } from '../node-view.ts'
import { constraintsOf, satisfiesAll } from '../orchestrator/constraints.ts'
import type { CommandOf } from './commands.ts'
import { fail, StoreError } from './errors.ts'
import { allocateAddress, releaseAddress } from './ipam.ts'
import { isTerminal, TASK_STATE_ORDER, type IpamState, type TaskAttachment, type TaskRecord } from './state.ts'
import { taskSpecOf, type TaskSpec } from './spec.ts'
import type { Tx } from './tx.ts'
import type { CommandResult } from './apply.ts'

function getTask (tx: Tx, id: string): TaskRecord {
  return tx.tasks.get(id) ?? fail('STORE_ERR_NOT_FOUND', `task ${id} not found`)
}

/** All of the task's addresses, or none and why. */
function allocateAttachments (tx: Tx, taskId: string, spec: TaskSpec): { ipam: IpamState, attachments: TaskAttachment[] } | { error: string } {
  let ipam = tx.ipam
  const attachments: TaskAttachment[] = []
  for (const { network } of spec.networks) {
    try {
      const allocation = allocateAddress(ipam, network, `task:${taskId}`, tx.networks.get(network)?.name)
      ipam = allocation.ipam
      attachments.push({ network, ip: allocation.ip, mac: macForIp(allocation.ip) })
    } catch (error) {
      if (error instanceof StoreError && error.code === 'STORE_ERR_POOL_EXHAUSTED') return { error: `could not allocate an address: ${error.message}` }
      throw error
    }
  }
  return { ipam, attachments }
}

function touch (tx: Tx, task: TaskRecord, patch: Partial<TaskRecord>): void {
  tx.tasks.put({ ...task, ...patch, updatedAt: tx.now, version: task.version + 1 })
}

function noteAllocation (tx: Tx, serviceId: string, error: string | null): void {
  const service = tx.services.get(serviceId)
  if (service === undefined || service.allocationError === error) return
  tx.services.put({ ...service, allocationError: error, updatedAt: tx.now, version: service.version + 1 })
}

export function taskCreate (tx: Tx, cmd: CommandOf<'task.create'>): CommandResult {
  if (tx.tasks.get(cmd.id) !== undefined) fail('STORE_ERR_EXISTS', `task id ${cmd.id} is taken`)
  const service = tx.services.get(cmd.service) ?? fail('STORE_ERR_NOT_FOUND', `service ${cmd.service} not found`)
  const name = service.spec.name
  if (service.spec.mode.kind === 'replicated') {
    if (cmd.slot === undefined || cmd.node !== undefined) fail('STORE_ERR_INVALID_COMMAND', `service ${name} is replicated: a task needs a slot and no node`)
  } else {
    if (cmd.node === undefined || cmd.slot !== undefined) fail('STORE_ERR_INVALID_COMMAND', `service ${name} is global: a task needs a node and no slot`)
    if (tx.nodes.get(cmd.node) === undefined) fail('STORE_ERR_NOT_FOUND', `node ${cmd.node} not found`)
  }
  const slot = cmd.slot ?? null
  const node = cmd.node ?? null
  const sameSlot = (t: TaskRecord): boolean => t.service === service.id && t.slot === slot && (slot !== null || t.node === node)
  let replaced: TaskRecord | null = null
  if (cmd.replaces !== undefined) {
    replaced = getTask(tx, cmd.replaces)
    if (!sameSlot(replaced)) fail('STORE_ERR_INVALID_COMMAND', `task ${replaced.id} is not in the same ${slot !== null ? 'slot' : 'node'} of service ${name}`)
  }
  const running = tx.tasks.values().find((t) => sameSlot(t) && t.desiredState === 'running' && t.id !== replaced?.id)
  if (running) fail('STORE_ERR_SLOT_TAKEN', `${slot !== null ? `slot ${slot}` : `node ${node}`} of service ${name} already has task ${running.id}`)

  if (replaced !== null && replaced.desiredState === 'running') stopTask(tx, replaced, '')
  const spec = taskSpecOf(service.spec, tx.cluster!.ingressNetwork)
  const allocation = allocateAttachments(tx, cmd.id, spec)
  const ok = !('error' in allocation)
  if (ok) tx.ipam = allocation.ipam
  noteAllocation(tx, service.id, ok ? null : allocation.error)
  tx.tasks.put({
    id: cmd.id,
    service: service.id,
    slot,
    node,
    desiredState: 'running',
    state: 'pending',
    message: ok ? 'allocated' : 'waiting for addresses',
    error: ok ? null : allocation.error,
    statusAt: tx.now,
    runningAt: null,
    spec,
    specVersion: service.specVersion,
    attachments: ok ? allocation.attachments : [],
    allocated: ok,
    health: null,
    restarts: cmd.restarts,
    createdAt: tx.now,
    updatedAt: tx.now,
    version: 1
  })
  return { id: cmd.id, ...(ok ? {} : { detail: { error: allocation.error } }) }
}

export function taskAllocate (tx: Tx, cmd: CommandOf<'task.allocate'>): CommandResult {
  const task = getTask(tx, cmd.task)
  if (task.allocated) return { id: task.id } // nothing changed
  if (task.desiredState !== 'running' || task.state !== 'pending') fail('STORE_ERR_INVALID_TRANSITION', `task ${task.id} is ${task.state}, not waiting for addresses`)
  const allocation = allocateAttachments(tx, task.id, task.spec)
  if ('error' in allocation) return fail('STORE_ERR_POOL_EXHAUSTED', allocation.error)
  tx.ipam = allocation.ipam
  noteAllocation(tx, task.service, null)
  touch(tx, task, { attachments: allocation.attachments, allocated: true, error: null, message: 'allocated', statusAt: tx.now })
  return { id: task.id }
}

/**
 * The scheduler chose; apply checks again what may have changed since (the
 * node went down or was drained, labels changed), so a stale decision is
 * refused rather than carried out.
 */
export function taskAssign (tx: Tx, cmd: CommandOf<'task.assign'>): CommandResult {
  const task = getTask(tx, cmd.task)
  if (task.desiredState !== 'running' || task.state !== 'pending' || !task.allocated) {
    fail('STORE_ERR_INVALID_TRANSITION', `task ${task.id} is ${task.state}${task.allocated ? '' : ' without addresses'}, desired ${task.desiredState}: it cannot be assigned`)
  }
  if (task.node !== null && task.node !== cmd.node) fail('STORE_ERR_NOT_SCHEDULABLE', `task ${task.id} belongs on node ${task.node}`)
  const node = tx.nodes.get(cmd.node) ?? fail('STORE_ERR_NOT_FOUND', `node ${cmd.node} not found`)
  if (node.status !== 'ready') fail('STORE_ERR_NOT_SCHEDULABLE', `node ${node.hostname} is down`)
  if (node.availability !== 'active') fail('STORE_ERR_NOT_SCHEDULABLE', `node ${node.hostname} is ${node.availability === 'pause' ? 'paused' : 'drained'}`)
  const constraints = constraintsOf(task.spec.constraints)
  if (!constraints.ok || !satisfiesAll(node, constraints.value)) fail('STORE_ERR_NOT_SCHEDULABLE', `node ${node.hostname} does not satisfy the constraints of task ${task.id}`)
  touch(tx, task, { node: node.id, state: 'assigned', message: 'assigned', error: null, statusAt: tx.now })
  return { id: task.id }
}

export function taskStatus (tx: Tx, cmd: CommandOf<'task.status'>): CommandResult {
  const task = getTask(tx, cmd.task)
  if (cmd.node !== undefined && task.node !== cmd.node) fail('STORE_ERR_NOT_FOUND', `task ${task.id} is not assigned to node ${cmd.node}`)
  const from = TASK_STATE_ORDER[task.state]
  const to = TASK_STATE_ORDER[cmd.state]
  if (task.state === cmd.state) {
    if (task.message === cmd.message && task.error === cmd.error) return { id: task.id } // nothing changed
    if (isTerminal(task.state)) fail('STORE_ERR_INVALID_TRANSITION', `task ${task.id} has ended (${task.state})`)
    touch(tx, task, { message: cmd.message, error: cmd.error })
    return { id: task.id }
  }
  if (isTerminal(task.state)) fail('STORE_ERR_INVALID_TRANSITION', `task ${task.id} has ended (${task.state}); it cannot become ${cmd.state}`)
  if (to < from || cmd.state === 'new' || cmd.state === 'pending') fail('STORE_ERR_INVALID_TRANSITION', `task ${task.id} is ${task.state}; it cannot go back to ${cmd.state}`)
  if (from < TASK_STATE_ORDER.assigned && (!isTerminal(cmd.state) || cmd.node !== undefined)) {
    fail('STORE_ERR_INVALID_TRANSITION', `task ${task.id} is not assigned to a node yet; it cannot become ${cmd.state}`)
  }
  if (isTerminal(cmd.state)) {
    endTask(tx, task, cmd.state, cmd.message, {}, cmd.error)
  } else {
    touch(tx, task, {
      state: cmd.state,
      message: cmd.message,
      error: cmd.error,
      statusAt: tx.now,
      ...(cmd.state === 'running' && task.runningAt === null ? { runningAt: tx.now } : {})
    })
  }
  return { id: task.id }
}

/** Desired state → shutdown. A task no node has been given ends here and now; one on a node ends when the node reports it. */
function stopTask (tx: Tx, task: TaskRecord, message: string): void {
  if (TASK_STATE_ORDER[task.state] < TASK_STATE_ORDER.assigned) {
    endTask(tx, task, 'shutdown', message === '' ? 'shut down before it was assigned' : message, { desiredState: 'shutdown' })
  } else {
    touch(tx, task, { desiredState: 'shutdown', ...(message === '' ? {} : { message }) })
  }
}

export function taskShutdown (tx: Tx, cmd: CommandOf<'task.shutdown'>): CommandResult {
  const task = getTask(tx, cmd.task)
  if (task.desiredState === 'shutdown') return { id: task.id } // nothing changed
  stopTask(tx, task, cmd.message)
  return { id: task.id }
}

/** Removes a task from history; refused while a node may still be running it. */
export function taskRemove (tx: Tx, cmd: CommandOf<'task.remove'>): CommandResult {
  const task = getTask(tx, cmd.task)
  const onNode = TASK_STATE_ORDER[task.state] >= TASK_STATE_ORDER.assigned && task.node !== null && tx.nodes.get(task.node) !== undefined
  if (!isTerminal(task.state) && onNode) fail('STORE_ERR_TASK_ACTIVE', `task ${task.id} is ${task.state} on node ${task.node}: shut it down first`)
  if (task.attachments.length > 0) endTask(tx, task, isTerminal(task.state) ? task.state : 'shutdown', task.message)
  tx.tasks.remove(task.id)
  return { id: task.id }
}

export function taskHealth (tx: Tx, cmd: CommandOf<'task.health'>): CommandResult {
  const task = getTask(tx, cmd.task)
  if (cmd.node !== undefined && task.node !== cmd.node) fail('STORE_ERR_NOT_FOUND', `task ${task.id} is not assigned to node ${cmd.node}`)
  if (isTerminal(task.state)) return { id: task.id } // a late report of a task that has ended
  const changedAt = task.health?.status === cmd.report.status ? task.health.changedAt : tx.now
  touch(tx, task, { health: { ...cmd.report, changedAt } })
  return { id: task.id }
}

/** Moves a task to a terminal state and gives back its addresses: a task that has ended holds none. */
export function endTask (tx: Tx, task: TaskRecord, state: TaskRecord['state'], message: string, patch: Partial<TaskRecord> = {}, error: string | null = task.error): void {
  let ipam = tx.ipam
  for (const a of task.attachments) ipam = releaseAddress(ipam, a.network, a.ip, `task:${task.id}`)
  tx.ipam = ipam
  tx.tasks.put({
    ...task,
    ...patch,
    state,
    message,
    error,
    statusAt: tx.now,
    attachments: [],
    updatedAt: tx.now,
    version: task.version + 1
  })
}
