/**
 * What the debugging commands show: desired state and kernel state side by
 * side. Pure, so the CLI, the API and tests all read the same rows.
 */
import type { DesiredState } from './desired-state.ts'
import { networkNamespaceName, taskNamespaceName, type KernelState } from './kernel-state.ts'

export interface NetworkRow {
  id: string
  name: string
  subnet: string
  gateway: string
  vni: number
  netns: string
  localEndpoints: number
  remoteEndpoints: number
  kernel: 'ok' | 'missing' | 'drift'
}

export interface EndpointRow {
  task: string | null
  network: string
  ip: string
  mac: string
  /** "local", or the underlay address of the node that hosts it. */
  node: string
  netns: string | null
  ifname: string | null
  kernel: 'ok' | 'missing' | 'drift'
}

export interface FdbRow {
  mac: string
  ip: string | null
  /** Where the document says the MAC lives. */
  desiredNode: string | null
  /** Where the kernel's FDB sends it. */
  kernelNode: string | null
  kernelNeighbour: string | null
  status: 'ok' | 'missing' | 'unexpected' | 'wrong-node' | 'missing-neighbour'
}

export function networkRows (doc: DesiredState, kernel: KernelState, prefix: string): NetworkRow[] {
  return doc.networks.map((network) => {
    const have = kernel.networks.get(network.id)
    const remotes = doc.remoteEndpoints.filter((r) => r.network === network.id)
    const healthy = have?.vxlan?.vni === network.vni && have.vxlan.up && have.bridge?.up === true &&
      remotes.every((r) => have.fdb.get(r.mac) === r.node && have.neighbours.get(r.ip) === r.mac)
    return {
      id: network.id,
      name: network.name,
      subnet: network.subnet,
      gateway: network.gateway,
      vni: network.vni,
      netns: networkNamespaceName(prefix, network.id),
      localEndpoints: doc.endpoints.filter((e) => e.network === network.id).length,
      remoteEndpoints: remotes.length,
      kernel: have ? (healthy ? 'ok' : 'drift') : 'missing'
    }
  })
}

export function endpointRows (doc: DesiredState, kernel: KernelState, prefix: string, network?: string): EndpointRow[] {
  const rows: EndpointRow[] = []
  for (const endpoint of doc.endpoints) {
    if (network !== undefined && endpoint.network !== network) continue
    const iface = kernel.tasks.get(endpoint.task)?.interfaces.get(endpoint.network)
    const healthy = iface !== undefined && iface.up && iface.mac === endpoint.mac && iface.address?.split('/')[0] === endpoint.ip
    rows.push({
      task: endpoint.task,
      network: endpoint.network,
      ip: endpoint.ip,
      mac: endpoint.mac,
      node: 'local',
      netns: taskNamespaceName(prefix, endpoint.task),
      ifname: iface?.ifname ?? null,
      kernel: iface ? (healthy ? 'ok' : 'drift') : 'missing'
    })
  }
  for (const remote of doc.remoteEndpoints) {
    if (network !== undefined && remote.network !== network) continue
    const have = kernel.networks.get(remote.network)
    const healthy = have?.fdb.get(remote.mac) === remote.node && have.neighbours.get(remote.ip) === remote.mac
    rows.push({
      task: null,
      network: remote.network,
      ip: remote.ip,
      mac: remote.mac,
      node: remote.node,
      netns: null,
      ifname: null,
      kernel: healthy ? 'ok' : have?.fdb.has(remote.mac) ? 'drift' : 'missing'
    })
  }
  return rows
}

export function fdbRows (doc: DesiredState, kernel: KernelState, network: string): FdbRow[] {
  const have = kernel.networks.get(network)
  const kernelFdb = have?.fdb ?? new Map<string, string>()
  const kernelIpByMac = new Map([...(have?.neighbours ?? new Map<string, string>())].map(([ip, mac]) => [mac, ip]))
  const rows: FdbRow[] = []
  const seen = new Set<string>()
  for (const remote of doc.remoteEndpoints) {
    if (remote.network !== network) continue
    seen.add(remote.mac)
    const kernelNode = kernelFdb.get(remote.mac) ?? null
    const kernelNeighbour = kernelIpByMac.get(remote.mac) ?? null
    const status = kernelNode === null ? 'missing' : kernelNode !== remote.node ? 'wrong-node' : kernelNeighbour !== remote.ip ? 'missing-neighbour' : 'ok'
    rows.push({ mac: remote.mac, ip: remote.ip, desiredNode: remote.node, kernelNode, kernelNeighbour, status })
  }
  for (const [mac, node] of kernelFdb) {
    if (!seen.has(mac)) rows.push({ mac, ip: null, desiredNode: null, kernelNode: node, kernelNeighbour: kernelIpByMac.get(mac) ?? null, status: 'unexpected' })
  }
  return rows
}
