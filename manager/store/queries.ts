/**
 * Read-only questions about a state, shared by apply, the orchestrator and the
 * node documents. Lookups by reference accept an id or a name (a hostname for
 * nodes); a name two objects share is an error, never a guess.
 */
import { fail } from './errors.ts'
import { isTerminal, TASK_STATE_ORDER, type ClusterState, type NetworkRecord, type NodeRecord, type ServiceRecord, type TaskRecord } from './state.ts'

function byRef<T extends { id: string }> (table: Readonly<Record<string, T>>, ref: string, kind: string, nameOf: (item: T) => string, fold: boolean): T {
  const exact = table[ref]
  if (exact !== undefined) return exact
  const want = fold ? ref.toLowerCase() : ref
  const named = Object.values(table).filter((item) => (fold ? nameOf(item).toLowerCase() : nameOf(item)) === want)
  if (named.length === 1) return named[0]!
  if (named.length > 1) return fail('STORE_ERR_AMBIGUOUS', `${kind} name "${ref}" is ambiguous: ${named.map((n) => n.id).sort().join(', ')}`)
  return fail('STORE_ERR_NOT_FOUND', `${kind} ${ref} not found`)
}

export function findNode (state: ClusterState, ref: string): NodeRecord {
  return byRef(state.nodes, ref, 'node', (n) => n.hostname, false)
}

export function findNetwork (state: ClusterState, ref: string): NetworkRecord {
  return byRef(state.networks, ref, 'network', (n) => n.name, false)
}

/** Service names are DNS names: matched without regard to case. */
export function findService (state: ClusterState, ref: string): ServiceRecord {
  return byRef(state.services, ref, 'service', (s) => s.spec.name, true)
}

export function findTask (state: ClusterState, ref: string): TaskRecord {
  const task = state.tasks[ref]
  return task ?? fail('STORE_ERR_NOT_FOUND', `task ${ref} not found`)
}

export function tasksOfService (state: ClusterState, serviceId: string): TaskRecord[] {
  return Object.values(state.tasks).filter((t) => t.service === serviceId)
}

/** A task is "active" on its node from assignment until it ends or is told to stop. */
export function isActive (task: TaskRecord): boolean {
  return task.desiredState === 'running' && task.node !== null &&
    TASK_STATE_ORDER[task.state] >= TASK_STATE_ORDER.assigned && !isTerminal(task.state)
}

/** Key of the place a task fills: its slot (replicated) or its node (global). */
export function slotKey (task: TaskRecord): string {
  return task.slot !== null ? `slot:${task.slot}` : `node:${task.node ?? ''}`
}

/** `docker service ps` NAME and DNS task name: `<service>.<slot>.<task id>`, or `<service>.<node id>.<task id>`. */
export function taskName (service: ServiceRecord, task: TaskRecord): string {
  return `${service.spec.name}.${task.slot ?? task.node}.${task.id}`
}

/** Every address some object holds on each network: what `ipam.networks[*].held` must be. */
export function expectedHoldings (state: ClusterState): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {}
  for (const network of Object.values(state.networks)) out[network.id] = { [network.gateway]: 'gateway' }
  const hold = (network: string, ip: string, owner: string): void => {
    (out[network] ??= {})[ip] = owner
  }
  for (const service of Object.values(state.services)) for (const vip of service.vips) hold(vip.network, vip.ip, `vip:${service.id}`)
  for (const task of Object.values(state.tasks)) for (const a of task.attachments) hold(a.network, a.ip, `task:${task.id}`)
  const ingress = state.cluster?.ingressNetwork
  if (ingress !== undefined) for (const node of Object.values(state.nodes)) hold(ingress, node.ingress.ip, `node:${node.id}`)
  return out
}
