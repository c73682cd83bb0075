/**
 * From the cluster state to each node's desired-state document (the input
 * netd, dnsd and lb reconcile against), through node-view.ts: this module
 * builds the cluster-wide view, `nodeDocument` projects it onto one node.
 *
 * What is in the view:
 *  - every network (a node builds only those its tasks use, plus ingress);
 *  - one endpoint per network attachment of each task a node runs: assigned
 *    or further, not ended, on a node that is still a member;
 *  - an endpoint is healthy when its task is desired running and running,
 *    its health check (if it has one) has passed, and its node is ready: only
 *    healthy endpoints get traffic. A task told to stop stays, unhealthy,
 *    until it has ended: new connections and answers leave it at once while
 *    its node drains it, and the connections it still serves keep their
 *    path (the overlay's FDB and neighbour entries on every node);
 *  - every service with its VIP per network (VIP mode), aliases, ports,
 *    endpoint mode and scheduler;
 *  - every node's ingress endpoint (the routing mesh).
 * The revision is the state's index.
 *
 * Each node's document also lists the tasks it runs (`tasks`, from each
 * TaskRecord's spec): assigned to it and not ended, desired running or
 * shutdown. A task told to stop stays listed until its node reports it
 * ended, so the node keeps its namespace until the process is gone.
 */
import { nodeDocument, type ClusterEndpoint, type ClusterView } from '../node-view.ts'
import type { DesiredStateInput, NetworkInput, ServiceInput } from '../../netd/desired-state.ts'
import { taskName } from './queries.ts'
import { serviceNetworkIds } from './spec.ts'
import { isTerminal, TASK_STATE_ORDER, type ClusterState, type TaskRecord } from './state.ts'

/** Tasks nodes run now (or are draining): on a member node, assigned or further, not ended, of a service that exists. */
export function scheduledTasks (state: ClusterState): TaskRecord[] {
  return Object.values(state.tasks).filter((t) =>
    t.node !== null && state.nodes[t.node] !== undefined &&
    TASK_STATE_ORDER[t.state] >= TASK_STATE_ORDER.assigned && !isTerminal(t.state) &&
    state.services[t.service] !== undefined)
}

/** Whether a task may get traffic: wanted, running, and healthy when it has a check (a check not yet passed is not). */
export function isServing (task: TaskRecord): boolean {
  return task.desiredState === 'running' && task.state === 'running' &&
    (task.health === null ? task.spec.healthcheck === undefined : task.health.status === 'healthy')
}

export function clusterView (state: ClusterState): ClusterView {
  const networks: NetworkInput[] = Object.values(state.networks).map((n) => ({
    id: n.id, name: n.name, subnet: n.subnet, gateway: n.gateway, vni: n.vni, ingress: n.ingress
  }))
  const endpoints: ClusterEndpoint[] = []
  for (const task of scheduledTasks(state)) {
    const node = state.nodes[task.node!]!
    const service = state.services[task.service]!
    const healthy = isServing(task) && node.status === 'ready'
    const name = taskName(service, task).toLowerCase()
    for (const a of task.attachments) {
      endpoints.push({ task: task.id, network: a.network, ip: a.ip, mac: a.mac, node: node.addr, service: service.id, name, healthy })
    }
  }
  const ingress = state.cluster?.ingressNetwork
  const services: ServiceInput[] = Object.values(state.services).map((s) => ({
    id: s.id,
    name: s.spec.name.toLowerCase(),
    endpointMode: s.spec.endpointMode,
    scheduler: s.spec.scheduler,
    networks: serviceNetworkIds(s.spec, ingress ?? '').map((network) => {
      const vip = s.vips.find((v) => v.network === network)?.ip
      const aliases = s.spec.networks.find((n) => n.network === network)?.aliases ?? []
      return { network, aliases, ...(vip === undefined ? {} : { vip }) }
    }),
    ports: s.spec.ports.map((p) => ({ ...p }))
  }))
  return {
    revision: state.index,
    networks,
    endpoints,
    services,
    ...(ingress === undefined
      ? {}
      : { ingress: { network: ingress, endpoints: Object.values(state.nodes).map((n) => ({ node: n.addr, ip: n.ingress.ip, mac: n.ingress.mac })) } })
  }
}

type TaskInput = NonNullable<DesiredStateInput['tasks']>[number]

/** The processes a node runs: its tasks from assignment until they end, desired running or shutdown. */
export function nodeTasks (state: ClusterState, nodeId: string): TaskInput[] {
  return Object.values(state.tasks)
    .filter((t) => t.node === nodeId && TASK_STATE_ORDER[t.state] >= TASK_STATE_ORDER.assigned && !isTerminal(t.state))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((t) => {
      const service = state.services[t.service]
      return {
        id: t.id,
        // A removed service's tasks only need stopping: their id is name enough.
        name: service === undefined ? t.id : taskName(service, t),
        service: t.service,
        image: t.spec.image,
        command: t.spec.args,
        env: t.spec.env,
        ...(t.spec.workdir === undefined ? {} : { workdir: t.spec.workdir }),
        ...(t.spec.user === undefined ? {} : { user: t.spec.user }),
        ...(t.spec.healthcheck === undefined ? {} : { healthcheck: t.spec.healthcheck }),
        drainDelay: t.spec.drainDelay,
        stopGracePeriod: t.spec.stopGracePeriod,
        desiredState: t.desiredState
      }
    })
}

/** One node's document, or undefined for a node that is not a member. */
export function nodeDocumentFor (state: ClusterState, nodeId: string, view: ClusterView = clusterView(state)): DesiredStateInput | undefined {
  const node = state.nodes[nodeId]
  return node === undefined ? undefined : { ...nodeDocument(view, node.addr), tasks: nodeTasks(state, nodeId) }
}

/** Every member's document, by node id (the view is built once). */
export function nodeDocuments (state: ClusterState): Map<string, DesiredStateInput> {
  const view = clusterView(state)
  const out = new Map<string, DesiredStateInput>()
  for (const id of Object.keys(state.nodes).sort()) out.set(id, { ...nodeDocument(view, state.nodes[id]!.addr), tasks: nodeTasks(state, id) })
  return out
}
