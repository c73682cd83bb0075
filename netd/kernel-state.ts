/**
 * The kernel objects netd owns on one node, as plain data. The same shape
 * describes what should exist (built from the desired-state document) and
 * what does exist (parsed from iproute2's JSON), so reconciling is a diff of
 * two values.
 *
 * Ownership: every namespace whose name starts with the node's prefix is
 * netd's, and so is everything inside it. Outside its namespaces netd creates
 * two things: VXLAN devices, for the instant between their creation on the
 * underlay and their move into a network namespace (they carry the `wvx` name
 * prefix so a crash in between can be cleaned up), and the ingress leg, the
 * host end of a veth into the ingress network that carries the routing mesh.
 */
import { createHash } from 'node:crypto'

export const VXLAN_PORT = 4789
export const BRIDGE = 'br0'
export const VXLAN = 'vx0'
export const HOST_VXLAN_PREFIX = 'wvx'
export const TASK_ALIAS_PREFIX = 'weft:task='
export const NETWORK_ALIAS_PREFIX = 'weft:net='
/** The routing mesh's leg: a veth from the host namespace into the ingress network's bridge. */
export const INGRESS_LEG = 'weft-ingress'
/** The leg's bridge port is keyed like a task's, by a key no task id can take (ids never contain `@`). */
export const INGRESS_PORT_KEY = '@ingress'

export interface LinkBase {
  ifname: string
  mtu: number
  up: boolean
}

export interface VxlanLink extends LinkBase {
  vni: number
  local: string
  port: number
  learning: boolean
  proxy: boolean
  master: string | null
}

/** The bridge-side end of a task's veth, inside a network namespace. */
export interface PortLink extends LinkBase {
  task: string
  master: string | null
}

/**
 * br_netfilter's switches, per namespace: whether frames crossing a bridge are handed to the IPv4, IPv6 and
 * ARP netfilter hooks. Each namespace starts with them on once the module is loaded (Docker loads it), and
 * nothing in a network namespace filters bridged frames: handing them over cost the routing mesh 15 % of its
 * new connections per second here (lb/README.md, Benchmarks). netd turns them off.
 */
export const BRIDGE_NETFILTER_SYSCTLS = [
  'net.bridge.bridge-nf-call-iptables', 'net.bridge.bridge-nf-call-ip6tables', 'net.bridge.bridge-nf-call-arptables'
] as const

export interface NetworkNamespace {
  netns: string
  network: string
  loUp: boolean
  /** Whether any of BRIDGE_NETFILTER_SYSCTLS is on; null where br_netfilter is not loaded (nothing is handed over). */
  bridgeNetfilter: boolean | null
  bridge: LinkBase | null
  vxlan: VxlanLink | null
  /** Links in the namespace that are neither ours by name nor lo: removed on sight. */
  strayLinks: string[]
  /** Keyed by task id. */
  ports: Map<string, PortLink>
  /** Remote MAC → underlay address of the node that hosts it. */
  fdb: Map<string, string>
  /** Remote IP → MAC, permanent entries on the VXLAN device. */
  neighbours: Map<string, string>
}

/** The task-side end of a veth, inside a task namespace. */
export interface TaskInterface extends LinkBase {
  network: string
  mac: string
  /** "ip/prefix", or null when the interface has no IPv4 address. */
  address: string | null
}

export interface TaskNamespace {
  netns: string
  task: string
  loUp: boolean
  /** Keyed by network id. */
  interfaces: Map<string, TaskInterface>
  strayLinks: string[]
  /**
   * The default route's gateway: the node's ingress leg for tasks on the ingress network, so replies to
   * clients of host-mode published ports (whose address is kept) go back through this node.
   */
  defaultGateway: string | null
}

/** The host end of the ingress leg, in netd's own namespace. */
export interface IngressLeg extends LinkBase {
  network: string
  mac: string
  /** "ip/prefix", or null when it has no IPv4 address. */
  address: string | null
}

export interface KernelState {
  /** Keyed by network id. */
  networks: Map<string, NetworkNamespace>
  /** Keyed by task id. */
  tasks: Map<string, TaskNamespace>
  /** Namespaces with our prefix that are neither a network nor a task namespace. */
  strayNamespaces: string[]
  /** VXLAN devices left in the host namespace by an interrupted move. */
  strayHostLinks: string[]
  ingressLeg: IngressLeg | null
}

export function emptyKernelState (): KernelState {
  return { networks: new Map(), tasks: new Map(), strayNamespaces: [], strayHostLinks: [], ingressLeg: null }
}

export function networkNamespaceName (prefix: string, network: string): string {
  return `${prefix}n-${network}`
}

export function taskNamespaceName (prefix: string, task: string): string {
  return `${prefix}t-${task}`
}

/** Interface names are limited to 15 bytes, so the port is named by a digest of the task id. */
export function portName (task: string): string {
  return `ve${createHash('sha256').update(task).digest('hex').slice(0, 10)}`
}

export function hostVxlanName (vni: number): string {
  return `${HOST_VXLAN_PREFIX}${vni}`
}
