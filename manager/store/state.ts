/**
 * The whole cluster state: plain, JSON-serialisable data, and nothing else.
 * A snapshot is `JSON.stringify(state)`; restoring is `JSON.parse`. Every
 * allocation (subnets, VNIs, VIPs, task and ingress addresses) lives here, so
 * what was handed out before a manager restart is still held after it.
 *
 * Invariants `apply` keeps (and the property tests check):
 *  - objects are immutable: apply replaces what it changes and shares the rest,
 *    so an old state stays valid after apply returns a new one;
 *  - `ipam.networks[n].held` is exactly the set of addresses some object holds
 *    on network n: its gateway, its services' VIPs, the attachments of tasks
 *    not yet terminal, and (ingress) every node's ingress endpoint;
 *  - at most one task with desiredState running per slot of a replicated
 *    service, and per node of a global service;
 *  - `index` counts the commands that changed something; it is each node's
 *    desired-state revision and part of the ids the orchestrator derives.
 *
 * Times are milliseconds, as passed to apply (the proposer's clock, recorded
 * with the command in the log, so that every replica stamps the same time).
 */
import type { HealthReport } from '../../netd/health/health-spec.ts'
import type { ServiceSpec, TaskSpec } from './spec.ts'

export const STATE_FORMAT = 1

export interface ClusterState {
  readonly format: typeof STATE_FORMAT
  readonly index: number
  readonly cluster: ClusterInfo | null
  readonly nodes: Readonly<Record<string, NodeRecord>>
  readonly networks: Readonly<Record<string, NetworkRecord>>
  readonly services: Readonly<Record<string, ServiceRecord>>
  readonly tasks: Readonly<Record<string, TaskRecord>>
  readonly ipam: IpamState
}

export interface ClusterInfo {
  readonly id: string
  readonly createdAt: number
  readonly ingressNetwork: string
  /** Terminal tasks kept per slot (per node for global services), the current one included. Swarm's default is 5. */
  readonly taskHistoryLimit: number
}

export type NodeRole = 'worker' | 'manager'
export type NodeAvailability = 'active' | 'pause' | 'drain'
export type NodeStatus = 'ready' | 'down'

export interface ManagerStatus {
  readonly leader: boolean
  readonly reachability: 'reachable' | 'unreachable'
}

export interface NodeRecord {
  readonly id: string
  readonly hostname: string
  readonly role: NodeRole
  readonly availability: NodeAvailability
  readonly labels: Readonly<Record<string, string>>
  readonly status: NodeStatus
  readonly statusMessage: string
  readonly statusAt: number
  /** Underlay address: where other nodes send this node's VXLAN traffic. */
  readonly addr: string
  /** Managers only. */
  readonly managerStatus: ManagerStatus | null
  /** This node's endpoint on the ingress network (the routing mesh's leg). */
  readonly ingress: { readonly ip: string, readonly mac: string }
  readonly createdAt: number
  readonly updatedAt: number
  readonly version: number
}

export interface NetworkRecord {
  readonly id: string
  readonly name: string
  readonly driver: 'overlay'
  readonly subnet: string
  readonly gateway: string
  readonly vni: number
  readonly ingress: boolean
  readonly attachable: boolean
  readonly labels: Readonly<Record<string, string>>
  readonly createdAt: number
  readonly updatedAt: number
  readonly version: number
}

export type UpdateState = 'updating' | 'paused' | 'completed' | 'rollback_started' | 'rollback_paused' | 'rollback_completed'

export interface UpdateStatus {
  readonly state: UpdateState
  readonly startedAt: number
  readonly completedAt: number | null
  readonly message: string
}

export interface ServiceRecord {
  readonly id: string
  /** Networks are ids here, never names. */
  readonly spec: ServiceSpec
  /** The spec before the last update, for rollback; a rollback swaps the two. */
  readonly previousSpec: ServiceSpec | null
  /** Counts changes of the task spec (those that replace tasks); tasks record the one they were made from. */
  readonly specVersion: number
  /** VIP mode: one address per network the service is on (the ingress network included when it publishes). */
  readonly vips: ReadonlyArray<{ readonly network: string, readonly ip: string }>
  readonly updateStatus: UpdateStatus | null
  /** The last address allocation failure for one of its tasks; cleared by the next success. */
  readonly allocationError: string | null
  readonly createdAt: number
  readonly updatedAt: number
  /** Bumped by every change; service.update may name the version it was made against. */
  readonly version: number
}

/** Swarm's task life cycle, in order. The last four are terminal. */
export const TASK_STATES = ['new', 'pending', 'assigned', 'preparing', 'starting', 'running', 'complete', 'failed', 'shutdown', 'rejected'] as const
export type TaskState = typeof TASK_STATES[number]
export type DesiredTaskState = 'running' | 'shutdown'

export const TASK_STATE_ORDER: Readonly<Record<TaskState, number>> = Object.freeze(
  Object.fromEntries(TASK_STATES.map((s, i) => [s, Math.min(i, 6)])) as Record<TaskState, number>
)

export function isTerminal (state: TaskState): boolean {
  return TASK_STATE_ORDER[state] >= TASK_STATE_ORDER.complete
}

export interface TaskAttachment {
  readonly network: string
  readonly ip: string
  readonly mac: string
}

export interface TaskRecord {
  readonly id: string
  readonly service: string
  /** Replicated services: 1, 2, … */
  readonly slot: number | null
  /** The node that runs it: set when assigned, or from creation for a global service's task. */
  readonly node: string | null
  readonly desiredState: DesiredTaskState
  readonly state: TaskState
  readonly message: string
  /** Why the task is stuck or ended badly, as `docker service ps` shows in ERROR. */
  readonly error: string | null
  readonly statusAt: number
  /** When it was first reported running. */
  readonly runningAt: number | null
  readonly spec: TaskSpec
  readonly specVersion: number
  /** One per network of `spec.networks`, or none while allocation has not succeeded. */
  readonly attachments: readonly TaskAttachment[]
  readonly allocated: boolean
  /** From the task's health check, as its node last reported a change; null until one does. */
  readonly health: TaskHealth | null
  /** How many tasks this slot went through before this one, by restart policy. */
  readonly restarts: number
  readonly createdAt: number
  readonly updatedAt: number
  readonly version: number
}

export interface TaskHealth extends HealthReport {
  /** When the status last changed (the manager's clock): an update's delay and a restart's delay count from it. */
  readonly changedAt: number
}

export interface IpamState {
  /** `--default-addr-pool`: where subnets of networks created without one come from. */
  readonly pools: readonly string[]
  /** `--default-addr-pool-mask-length`. */
  readonly subnetSize: number
  /** Routed on the underlay: default-pool subnets overlapping these are skipped. */
  readonly avoid: readonly string[]
  /** Where the next default-pool subnet search starts (an index over all pools' subnets), so freed subnets come back last. */
  readonly subnetCursor: number
  readonly vniStart: number
  readonly vniCursor: number
  /** VNI (decimal) → network id. */
  readonly vnis: Readonly<Record<string, string>>
  readonly networks: Readonly<Record<string, NetworkPool>>
}

/** Who holds an address: `gateway`, `vip:<service>`, `task:<task>`, `node:<node>` (ingress endpoint). */
export type AddressOwner = string

export interface NetworkPool {
  readonly subnet: string
  readonly gateway: string
  /** Whether the subnet came from the default pools (and so counts against them). */
  readonly fromPool: boolean
  readonly held: Readonly<Record<string, AddressOwner>>
  /** Offset in the subnet where the next search starts: addresses are handed out in order, freed ones come back last. */
  readonly cursor: number
}

export type { ServiceSpec, TaskSpec }

export function emptyState (): ClusterState {
  return {
    format: STATE_FORMAT,
    index: 0,
    cluster: null,
    nodes: {},
    networks: {},
    services: {},
    tasks: {},
    ipam: { pools: [], subnetSize: 24, avoid: [], subnetCursor: 0, vniStart: 4096, vniCursor: 4096, vnis: {}, networks: {} }
  }
}
