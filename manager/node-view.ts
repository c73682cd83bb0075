/**
 * The manager's projection of cluster-wide endpoints onto one node's
 * desired-state document: the networks that node's tasks use, its own
 * endpoints, every other node's endpoints on those networks, and the
 * services reachable on them. A node with no task on a network neither
 * builds it nor learns its peers.
 */
import type { DesiredStateInput, NetworkInput, ServiceInput } from '../netd/desired-state.ts'

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

/** One node's endpoint on the ingress network: where its routing-mesh leg enters the overlay. */
export interface IngressEndpoint {
  node: string
  ip: string
  mac: string
}

export interface ClusterView {
  revision: number
  networks: readonly NetworkInput[]
  endpoints: readonly ClusterEndpoint[]
  services?: readonly ServiceInput[]
  /** The routing mesh: every node is on the ingress network, through its own ingress endpoint. */
  ingress?: { network: string, endpoints: readonly IngressEndpoint[] }
}

export function nodeDocument (cluster: ClusterView, node: string): DesiredStateInput {
  const local = cluster.endpoints.filter((e) => e.node === node)
  const used = new Set(local.map((e) => e.network))
  const ownIngress = cluster.ingress?.endpoints.find((e) => e.node === node)
  if (cluster.ingress && ownIngress) used.add(cluster.ingress.network)
  const peerIngress = ownIngress === undefined ? [] : cluster.ingress!.endpoints.filter((e) => e.node !== node)
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
    remoteEndpoints: [
      ...cluster.endpoints
        .filter((e) => e.node !== node && used.has(e.network))
        .map((e) => ({ network: e.network, ip: e.ip, mac: e.mac, node: e.node, task: e.task, ...identity(e) })),
      ...peerIngress.map((e) => ({ network: cluster.ingress!.network, ip: e.ip, mac: e.mac, node: e.node }))
    ],
    services: (cluster.services ?? [])
      .map((service) => ({ ...service, networks: service.networks.filter((n) => used.has(n.network)) }))
      .filter((service) => service.networks.length > 0),
    ...(ownIngress === undefined ? {} : { ingress: { network: cluster.ingress!.network, ip: ownIngress.ip, mac: ownIngress.mac } })
  }
}

/** Docker's convention: a locally administered MAC that embeds the IPv4 address (02:42:a.b.c.d). */
export function macForIp (ip: string): string {
  return ['02', '42', ...ip.split('.').map((octet) => Number(octet).toString(16).padStart(2, '0'))].join(':')
}
