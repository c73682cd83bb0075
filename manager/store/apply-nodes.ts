/**
 * apply for the cluster and its nodes: init, join, update (availability,
 * labels, role), status transitions (from the leader's heartbeat tracking),
 * leadership, removal with Swarm's force rules.
 */
import { macForIp } from '../node-view.ts'
import type { CommandOf } from './commands.ts'
import { fail } from './errors.ts'
import { allocateAddress, allocateNetwork, initIpam, releaseAddress } from './ipam.ts'
import { findNode } from './queries.ts'
import { isTerminal, type NodeRecord } from './state.ts'
import type { Tx } from './tx.ts'
import type { CommandResult } from './apply.ts'
import { endTask } from './apply-tasks.ts'

export const INGRESS_NAME = 'ingress'

export function clusterInit (tx: Tx, cmd: CommandOf<'cluster.init'>): CommandResult {
  if (tx.cluster !== null) fail('STORE_ERR_ALREADY_INITIALIZED', `this node is already part of cluster ${tx.cluster.id}`)
  const ipam = initIpam({ pools: cmd.defaultAddrPool, subnetSize: cmd.subnetSize, avoid: cmd.avoid })
  const ingress = allocateNetwork(ipam, cmd.ingressNetworkId, { subnet: cmd.ingressSubnet, gateway: cmd.ingressGateway })
  tx.ipam = ingress.ipam
  tx.networks.put({
    id: cmd.ingressNetworkId,
    name: INGRESS_NAME,
    driver: 'overlay',
    subnet: ingress.subnet,
    gateway: ingress.gateway,
    vni: ingress.vni,
    ingress: true,
    attachable: false,
    labels: {},
    createdAt: tx.now,
    updatedAt: tx.now,
    version: 1
  })
  tx.cluster = { id: cmd.clusterId, createdAt: tx.now, ingressNetwork: cmd.ingressNetworkId, taskHistoryLimit: cmd.taskHistoryLimit }
  const node = addNode(tx, { ...cmd.node, role: 'manager' }, true)
  return { id: cmd.clusterId, detail: { node: node.id, ingress: { subnet: ingress.subnet, gateway: ingress.gateway, vni: ingress.vni } } }
}

export function nodeJoin (tx: Tx, cmd: CommandOf<'node.join'>): CommandResult {
  const node = addNode(tx, cmd.node, false)
  return { id: node.id, detail: { ingress: node.ingress.ip } }
}

function addNode (tx: Tx, spec: CommandOf<'node.join'>['node'], leader: boolean): NodeRecord {
  if (tx.nodes.get(spec.id) !== undefined) fail('STORE_ERR_EXISTS', `node ${spec.id} is already a member`)
  const sameAddr = tx.nodes.values().find((n) => n.addr === spec.addr)
  if (sameAddr) fail('STORE_ERR_ADDRESS_IN_USE', `address ${spec.addr} is node ${sameAddr.hostname} (${sameAddr.id})'s: remove that node first`)
  const ingressNetwork = tx.cluster!.ingressNetwork
  const { ipam, ip } = allocateAddress(tx.ipam, ingressNetwork, `node:${spec.id}`, INGRESS_NAME)
  tx.ipam = ipam
  const node: NodeRecord = {
    id: spec.id,
    hostname: spec.hostname,
    role: spec.role,
    availability: 'active',
    labels: spec.labels,
    status: 'ready',
    statusMessage: '',
    statusAt: tx.now,
    addr: spec.addr,
    managerStatus: spec.role === 'manager' ? { leader, reachability: 'reachable' } : null,
    ingress: { ip, mac: macForIp(ip) },
    createdAt: tx.now,
    updatedAt: tx.now,
    version: 1
  }
  tx.nodes.put(node)
  return node
}

function save (tx: Tx, node: NodeRecord, patch: Partial<NodeRecord>): void {
  tx.nodes.put({ ...node, ...patch, updatedAt: tx.now, version: node.version + 1 })
}

export function nodeUpdate (tx: Tx, cmd: CommandOf<'node.update'>): CommandResult {
  const node = findNode(tx.view(), cmd.node)
  if (cmd.version !== undefined && cmd.version !== node.version) {
    fail('STORE_ERR_VERSION_CONFLICT', `node ${node.hostname} is at version ${node.version}, not ${cmd.version}: read it again`)
  }
  const labels: Record<string, string> = { ...node.labels }
  for (const key of cmd.labelsRemove) delete labels[key]
  Object.assign(labels, cmd.labelsAdd)
  const role = cmd.role ?? node.role
  if (node.role === 'manager' && role === 'worker') {
    const managers = tx.nodes.values().filter((n) => n.role === 'manager')
    if (managers.length === 1) fail('STORE_ERR_LAST_MANAGER', `node ${node.hostname} is the last manager of the cluster and cannot be demoted`)
  }
  const patch: Partial<NodeRecord> = {
    availability: cmd.availability ?? node.availability,
    labels,
    role,
    managerStatus: role === 'worker' ? null : node.managerStatus ?? { leader: false, reachability: node.status === 'ready' ? 'reachable' : 'unreachable' }
  }
  const same = patch.availability === node.availability && role === node.role &&
    JSON.stringify(Object.entries(labels).sort()) === JSON.stringify(Object.entries(node.labels).sort())
  if (same) return { id: node.id } // nothing changed
  save(tx, node, patch)
  return { id: node.id }
}

export function nodeStatus (tx: Tx, cmd: CommandOf<'node.status'>): CommandResult {
  const node = findNode(tx.view(), cmd.node)
  if (node.status === cmd.status) return { id: node.id } // nothing changed
  save(tx, node, {
    status: cmd.status,
    statusMessage: cmd.message,
    statusAt: tx.now,
    managerStatus: node.managerStatus === null ? null : { ...node.managerStatus, reachability: cmd.status === 'ready' ? 'reachable' : 'unreachable' }
  })
  return { id: node.id }
}

export function nodeLeader (tx: Tx, cmd: CommandOf<'node.leader'>): CommandResult {
  const leader = findNode(tx.view(), cmd.node)
  if (leader.managerStatus === null) fail('STORE_ERR_INVALID_SPEC', `node ${leader.hostname} is not a manager and cannot lead`)
  for (const node of tx.nodes.values()) {
    if (node.managerStatus === null) continue
    const lead = node.id === leader.id
    if (node.managerStatus.leader !== lead) save(tx, node, { managerStatus: { ...node.managerStatus, leader: lead } })
  }
  return { id: leader.id }
}

/**
 * Swarm's rules: a manager must be demoted first; a node that is not down
 * needs force. The node's tasks cannot be reached any more: they are marked
 * shut down and their addresses released, and the orchestrator replaces them.
 */
export function nodeRemove (tx: Tx, cmd: CommandOf<'node.remove'>): CommandResult {
  const node = findNode(tx.view(), cmd.node)
  if (node.role === 'manager') fail('STORE_ERR_NODE_IS_MANAGER', `node ${node.hostname} is a cluster manager: demote it before removing it`)
  if (node.status !== 'down' && !cmd.force) fail('STORE_ERR_NODE_NOT_DOWN', `node ${node.hostname} is not down and can't be removed (use force)`)
  for (const task of tx.tasks.values()) {
    if (task.node !== node.id || isTerminal(task.state)) continue
    endTask(tx, task, 'shutdown', 'node removed', { desiredState: 'shutdown' })
  }
  tx.ipam = releaseAddress(tx.ipam, tx.cluster!.ingressNetwork, node.ingress.ip, `node:${node.id}`)
  tx.nodes.remove(node.id)
  return { id: node.id }
}
