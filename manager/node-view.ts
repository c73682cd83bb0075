/**
 * The manager's projection of cluster-wide endpoints onto one node's
 * desired-state document: the networks that node's tasks use, its own
 * endpoints, every other node's endpoints on those networks, and the
 * services reachable on them. A node with no task on a network neither
 * builds it nor learns its peers.
 */
import type { DesiredState, Network, Service } from '../netd/desired-state.ts'

export interface ClusterEndpoint {
  task: string
  network: string
  ip: string
  mac: string
  /** Underlay address of the node that runs the task. */
  node: string
  service?: string
  name?: string
  healthy?: boolean
}

export interface ClusterView {
  revision: number
  networks: readonly Network[]
  endpoints: readonly ClusterEndpoint[]
  services?: readonly Service[]
}

export function nodeDocument (cluster: ClusterView, node: string): DesiredState {
  const local = cluster.endpoints.filter((e) => e.node === node)
  const used = new Set(local.map((e) => e.network))
  const identity = (e: ClusterEndpoint) => ({
    healthy: e.healthy ?? true,
    ...(e.service === undefined ? {} : { service: e.service }),
    ...(e.name === undefined ? {} : { name: e.name })
  })
  return {
    version: 1,
    revision: cluster.revision,
    networks: cluster.networks.filter((n) => used.has(n.id)),
    endpoints: local.map((e) => ({ task: e.task, network: e.network, ip: e.ip, mac: e.mac, ...identity(e) })),
    remoteEndpoints: cluster.endpoints
      .filter((e) => e.node !== node && used.has(e.network))
      .map((e) => ({ network: e.network, ip: e.ip, mac: e.mac, node: e.node, task: e.task, ...identity(e) })),
    services: (cluster.services ?? [])
      .map((service) => ({ ...service, networks: service.networks.filter((n) => used.has(n.network)) }))
      .filter((service) => service.networks.length > 0)
  }
}

/** Docker's convention: a locally administered MAC that embeds the IPv4 address (02:42:a.b.c.d). */
export function macForIp (ip: string): string {
  return ['02', '42', ...ip.split('.').map((octet) => Number(octet).toString(16).padStart(2, '0'))].join(':')
}
