/**
 * The scheduler: which node runs each pending task. Pure: a state in,
 * decisions out, in a deterministic order.
 *
 * A node can take a task when it is ready, its availability is active (pause
 * and drain take no new tasks), it satisfies the task's constraints, and, for
 * a service publishing host-mode ports, it does not already run a task of
 * that service. Among those, a replicated task goes to the node with the
 * fewest active tasks of its service, then the fewest active tasks overall,
 * then the first by hostname and id; each placement counts for the next one,
 * so a batch of tasks spreads evenly. A global task has its node from
 * creation and is assigned once that node can take it.
 *
 * A task no node can take stays pending with Swarm's explanation, e.g.
 * `no suitable node (scheduling constraints not satisfied on 3 nodes)`.
 */
import { constraintsOf, satisfiesAll } from './constraints.ts'
import { isActive } from '../store/queries.ts'
import type { ClusterState, NodeRecord, ServiceRecord, TaskRecord } from '../store/state.ts'

export interface Placement { readonly task: string, readonly node: string }
export interface Unplaceable { readonly task: string, readonly error: string }

export interface ScheduleDecision {
  readonly assignments: readonly Placement[]
  readonly unschedulable: readonly Unplaceable[]
}

/** Why a node cannot take a task: Swarm's filters (ready and active, constraints, host ports). */
export type Ineligibility = 'unavailable' | 'constraints' | 'host-port'

function explain (counts: ReadonlyMap<Ineligibility, number>): string {
  const plural = (n: number): string => `${n} node${n === 1 ? '' : 's'}`
  const parts: string[] = []
  const unavailable = counts.get('unavailable') ?? 0
  const constraints = counts.get('constraints') ?? 0
  const ports = counts.get('host-port') ?? 0
  if (unavailable > 0) parts.push(`${plural(unavailable)} not available for new tasks`)
  if (constraints > 0) parts.push(`scheduling constraints not satisfied on ${plural(constraints)}`)
  if (ports > 0) parts.push(`host-mode port already in use on ${plural(ports)}`)
  return parts.length === 0 ? 'no suitable node' : `no suitable node (${parts.join('; ')})`
}

const publishesHostPorts = (service: ServiceRecord | undefined): boolean =>
  service?.spec.ports.some((p) => p.mode === 'host' && p.published !== undefined) ?? false

/** Active tasks per node and per service on each node, updated as the scheduler places tasks. */
class Load {
  readonly total = new Map<string, number>()
  readonly perService = new Map<string, number>()

  constructor (state: ClusterState) {
    for (const task of Object.values(state.tasks)) if (isActive(task)) this.add(task.service, task.node!)
  }

  add (service: string, node: string): void {
    this.total.set(node, (this.total.get(node) ?? 0) + 1)
    const key = `${service}\u0000${node}`
    this.perService.set(key, (this.perService.get(key) ?? 0) + 1)
  }

  of (service: string, node: string): number {
    return this.perService.get(`${service}\u0000${node}`) ?? 0
  }
}

/** Why `node` cannot take `task` now, or null when it can. */
export function ineligibility (state: ClusterState, node: NodeRecord, task: TaskRecord): Ineligibility | null {
  return check(state, node, task, undefined)
}

function check (state: ClusterState, node: NodeRecord, task: TaskRecord, load: Load | undefined): Ineligibility | null {
  if (node.status !== 'ready' || node.availability !== 'active') return 'unavailable'
  const constraints = constraintsOf(task.spec.constraints)
  if (!constraints.ok || !satisfiesAll(node, constraints.value)) return 'constraints'
  if (publishesHostPorts(state.services[task.service])) {
    const busy = load !== undefined
      ? load.of(task.service, node.id) > 0
      : Object.values(state.tasks).some((t) => t.service === task.service && t.node === node.id && isActive(t))
    if (busy) return 'host-port'
  }
  return null
}

/** Tasks waiting for a node, oldest first. */
export function pendingTasks (state: ClusterState): TaskRecord[] {
  return Object.values(state.tasks)
    .filter((t) => t.desiredState === 'running' && t.state === 'pending' && t.allocated)
    .sort((a, b) => a.createdAt - b.createdAt || (a.service < b.service ? -1 : a.service > b.service ? 1 : 0) ||
      (a.slot ?? 0) - (b.slot ?? 0) || (a.id < b.id ? -1 : 1))
}

export function schedule (state: ClusterState): ScheduleDecision {
  const nodes = Object.values(state.nodes).sort((a, b) => (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : a.id < b.id ? -1 : 1))
  const load = new Load(state)
  const assignments: Placement[] = []
  const unschedulable: Unplaceable[] = []
  for (const task of pendingTasks(state)) {
    const reasons = new Map<Ineligibility, number>()
    const candidates = (task.node !== null ? nodes.filter((n) => n.id === task.node) : nodes).filter((node) => {
      const reason = check(state, node, task, load)
      if (reason !== null) reasons.set(reason, (reasons.get(reason) ?? 0) + 1)
      return reason === null
    })
    let best: NodeRecord | undefined
    for (const node of candidates) {
      if (best === undefined) { best = node; continue }
      const byService = load.of(task.service, node.id) - load.of(task.service, best.id)
      const byTotal = (load.total.get(node.id) ?? 0) - (load.total.get(best.id) ?? 0)
      if (byService < 0 || (byService === 0 && byTotal < 0)) best = node
    }
    if (best === undefined) {
      unschedulable.push({ task: task.id, error: task.node !== null && !state.nodes[task.node] ? `node ${task.node} is gone` : explain(reasons) })
      continue
    }
    load.add(task.service, best.id)
    assignments.push({ task: task.id, node: best.id })
  }
  return { assignments, unschedulable }
}
