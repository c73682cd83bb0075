/**
 * The manager's projection of cluster-wide endpoints onto one node's
 * desired-state document: the networks that node's tasks use, its own
 * endpoints, and every other node's endpoints on those networks. A node
 * with no task on a network neither builds it nor learns its peers.
 */
import type { DesiredState, Network } from '../netd/desired-state.ts'

export interface ClusterEndpoint {
  task: string
  network: string
  ip: string
  mac: string
  /** Underlay address of the node that runs the task. */
  node: string
}

export interface ClusterView {
  revision: number
  networks: readonly Network[]
  endpoints: readonly ClusterEndpoint[]
}

export function nodeDocument (cluster: ClusterView, node: string): DesiredState {
  const local = cluster.endpoints.filter((e) => e.node === node)
  const used = new Set(local.map((e) => e.network))
  return {
    version: 1,
    revision: cluster.revision,
    networks: cluster.networks.filter((n) => used.has(n.id)),
    endpoints: local.map(({ task, network, ip, mac }) => ({ task, network, ip, mac })),
    remoteEndpoints: cluster.endpoints
      .filter((e) => e.node !== node && used.has(e.network))
      .map(({ network, ip, mac, node }) => ({ network, ip, mac, node }))
  }
}

/** Docker's convention: a locally administered MAC that embeds the IPv4 address (02:42:a.b.c.d). */
export function macForIp (ip: string): string {
  return ['02', '42', ...ip.split('.').map((octet) => Number(octet).toString(16).padStart(2, '0'))].join(':')
}
