/**
 * Projects the desired-state document onto this node's kernel: which
 * namespaces, links, addresses, FDB and neighbour entries must exist.
 */
import type { DesiredState } from './desired-state.ts'
import {
  BRIDGE, INGRESS_LEG, INGRESS_PORT_KEY, VXLAN, VXLAN_PORT, emptyKernelState, networkNamespaceName, portName, taskNamespaceName,
  type KernelState, type NetworkNamespace, type TaskNamespace
} from './kernel-state.ts'

export interface NodeIdentity {
  /** Namespace name prefix; everything under it belongs to this netd. */
  prefix: string
  /** This node's underlay address: the VXLAN source and the FDB destination other nodes use. */
  underlayAddress: string
  /** Underlay MTU minus the 50 bytes of VXLAN encapsulation. */
  overlayMtu: number
}

export function desiredKernel (doc: DesiredState, node: NodeIdentity): KernelState {
  const state = emptyKernelState()
  const mtu = node.overlayMtu

  for (const network of doc.networks) {
    const namespace: NetworkNamespace = {
      netns: networkNamespaceName(node.prefix, network.id),
      network: network.id,
      loUp: true,
      bridgeNetfilter: false,
      bridge: { ifname: BRIDGE, mtu, up: true },
      vxlan: {
        ifname: VXLAN,
        mtu,
        up: true,
        vni: network.vni,
        local: node.underlayAddress,
        port: VXLAN_PORT,
        learning: false,
        proxy: true,
        master: BRIDGE
      },
      strayLinks: [],
      ports: new Map(),
      fdb: new Map(),
      neighbours: new Map()
    }
    state.networks.set(network.id, namespace)
  }

  const prefixLength = new Map(doc.networks.map((n) => [n.id, n.subnet.split('/')[1]!]))
  for (const endpoint of doc.endpoints) {
    let task: TaskNamespace | undefined = state.tasks.get(endpoint.task)
    if (!task) {
      task = { netns: taskNamespaceName(node.prefix, endpoint.task), task: endpoint.task, loUp: true, interfaces: new Map(), strayLinks: [], defaultGateway: null }
      state.tasks.set(endpoint.task, task)
    }
    // The task-side name is chosen when the interface is created (see plan.ts), so it is left blank here.
    task.interfaces.set(endpoint.network, {
      ifname: '',
      network: endpoint.network,
      mac: endpoint.mac,
      address: `${endpoint.ip}/${prefixLength.get(endpoint.network)}`,
      mtu,
      up: true
    })
    state.networks.get(endpoint.network)!.ports.set(endpoint.task, {
      ifname: portName(endpoint.task), task: endpoint.task, master: BRIDGE, mtu, up: true
    })
    if (endpoint.network === doc.ingress?.network) task.defaultGateway = doc.ingress.ip
  }

  // A task the node runs gets its namespace even without an endpoint (a service on no network).
  for (const task of doc.tasks ?? []) {
    if (!state.tasks.has(task.id)) {
      state.tasks.set(task.id, { netns: taskNamespaceName(node.prefix, task.id), task: task.id, loUp: true, interfaces: new Map(), strayLinks: [], defaultGateway: null })
    }
  }

  if (doc.ingress) {
    state.ingressLeg = {
      ifname: INGRESS_LEG,
      network: doc.ingress.network,
      mac: doc.ingress.mac,
      address: `${doc.ingress.ip}/${prefixLength.get(doc.ingress.network)}`,
      mtu,
      up: true
    }
    state.networks.get(doc.ingress.network)!.ports.set(INGRESS_PORT_KEY, {
      ifname: portName(INGRESS_PORT_KEY), task: INGRESS_PORT_KEY, master: BRIDGE, mtu, up: true
    })
  }

  for (const remote of doc.remoteEndpoints) {
    const namespace = state.networks.get(remote.network)!
    namespace.fdb.set(remote.mac, remote.node)
    namespace.neighbours.set(remote.ip, remote.mac)
  }
  return state
}
