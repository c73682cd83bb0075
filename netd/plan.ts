/**
 * The reconcile diff: desired and observed kernel state in, an ordered list of
 * iproute2 batch lines out. Pure, so every decision is unit-testable and
 * `netd check` can show the drift it would repair.
 *
 * Ordering invariants (the executor runs stages in order, and every command
 * of a stage that targets one namespace in one batch):
 *  - removals come first, so a name or address freed by a removal can be reused;
 *  - namespaces, VXLAN devices and veth pairs are created from netd's own
 *    namespace: a VXLAN device is created there and moved, so its UDP socket
 *    stays on the underlay; veth ends are created directly in their namespaces;
 *  - remote MACs and IPs are programmed last, once the VXLAN device is up.
 * Matching objects produce no command at all: a restarted netd that finds
 * the kernel as it should be touches nothing, and running traffic is untouched.
 */
import {
  BRIDGE, BRIDGE_NETFILTER_SYSCTLS, INGRESS_LEG, INGRESS_PORT_KEY, NETWORK_ALIAS_PREFIX, TASK_ALIAS_PREFIX, VXLAN, hostVxlanName,
  type KernelState, type NetworkNamespace, type PortLink, type TaskInterface, type TaskNamespace, type VxlanLink
} from './kernel-state.ts'
import type { Tool } from './iproute.ts'

export const Stage = {
  removeNamespaces: 0,
  removeObjects: 1,
  createFromHost: 2,
  configureNetworks: 3,
  configureTasks: 4,
  programPeers: 5
} as const
export type StageNumber = typeof Stage[keyof typeof Stage]

export interface Command {
  stage: StageNumber
  /** Namespace the command runs in; null for netd's own namespace. */
  netns: string | null
  tool: Tool
  /** One line of `ip -batch` / `bridge -batch` input, or a sysctl's `name=value`. */
  line: string
  /** The drift this command repairs, for people (`netd check`, logs). */
  reason: string
}

export function plan (desired: KernelState, observed: KernelState): Command[] {
  const commands: Command[] = []
  const emit = (stage: StageNumber, netns: string | null, tool: Tool, line: string, reason: string): void => {
    commands.push({ stage, netns, tool, line, reason })
  }

  for (const name of observed.strayHostLinks) {
    emit(Stage.removeNamespaces, null, 'ip', `link del dev ${name}`, `unexpected VXLAN device ${name} left in the host namespace`)
  }
  for (const netns of observed.strayNamespaces) {
    emit(Stage.removeNamespaces, null, 'ip', `netns del ${netns}`, `unexpected namespace ${netns}`)
  }
  for (const [task, namespace] of observed.tasks) {
    if (!desired.tasks.has(task)) emit(Stage.removeNamespaces, null, 'ip', `netns del ${namespace.netns}`, `unexpected task ${task}`)
  }
  for (const [network, namespace] of observed.networks) {
    if (!desired.networks.has(network)) emit(Stage.removeNamespaces, null, 'ip', `netns del ${namespace.netns}`, `unexpected network ${network}`)
  }

  // Deleting either end of a veth deletes the pair, and deleting a namespace deletes its veths
  // with their peers: each pair is removed exactly once, by whichever removal comes first.
  const going: Removals = {
    tasks: new Set([...observed.tasks.keys()].filter((task) => !desired.tasks.has(task))),
    networks: new Set([...observed.networks.keys()].filter((network) => !desired.networks.has(network)))
  }
  for (const [network, want] of desired.networks) {
    planNetwork(want, observed.networks.get(network) ?? null, observed, going, emit)
  }
  for (const [task, want] of desired.tasks) {
    planTask(want, observed.tasks.get(task) ?? null, desired, observed, going, emit)
  }
  planIngressLeg(desired, observed, emit)
  return commands.sort((a, b) => a.stage - b.stage)
}

type Emit = (stage: StageNumber, netns: string | null, tool: Tool, line: string, reason: string) => void

interface Removals { tasks: ReadonlySet<string>, networks: ReadonlySet<string> }

function planNetwork (want: NetworkNamespace, have: NetworkNamespace | null, observed: KernelState, going: Removals, emit: Emit): void {
  const ns = want.netns
  const label = `network ${want.network}`
  if (!have) emit(Stage.createFromHost, null, 'ip', `netns add ${ns}`, `missing namespace of ${label}`)
  if (!have?.loUp) emit(Stage.configureNetworks, ns, 'ip', 'link set dev lo up', `loopback down in ${label}`)
  // A new namespace is written blind: sysctl skips the names br_netfilter has not made (module not loaded).
  if (want.bridgeNetfilter === false && (have === null || have.bridgeNetfilter === true)) {
    for (const name of BRIDGE_NETFILTER_SYSCTLS) emit(Stage.configureNetworks, ns, 'sysctl', `${name}=0`, `bridged frames handed to netfilter in ${label}`)
  }
  for (const stray of have?.strayLinks ?? []) {
    emit(Stage.removeObjects, ns, 'ip', `link del dev ${stray}`, `unexpected link ${stray} in ${label}`)
  }

  const bridge = want.bridge!
  if (!have?.bridge) {
    emit(Stage.configureNetworks, ns, 'ip', `link add ${BRIDGE} mtu ${bridge.mtu} type bridge`, `missing bridge of ${label}`)
    emit(Stage.configureNetworks, ns, 'ip', `link set dev ${BRIDGE} addrgenmode none up`, `missing bridge of ${label}`)
  } else {
    if (have.bridge.mtu !== bridge.mtu) emit(Stage.configureNetworks, ns, 'ip', `link set dev ${BRIDGE} mtu ${bridge.mtu}`, `bridge MTU ${have.bridge.mtu}, want ${bridge.mtu} in ${label}`)
    if (!have.bridge.up) emit(Stage.configureNetworks, ns, 'ip', `link set dev ${BRIDGE} up`, `bridge down in ${label}`)
  }

  planVxlan(want, have, label, emit)

  for (const [task, port] of want.ports) {
    const existing = have?.ports.get(task)
    if (existing) planPortAttributes(ns, port, existing, label, emit)
  }
  for (const [task, port] of have?.ports ?? []) {
    if (want.ports.has(task) || going.tasks.has(task)) continue
    // When the task stays, planTask removes its end of the pair, taking this port with it; planIngressLeg does the same for the leg.
    if (observed.tasks.get(task)?.interfaces.has(want.network)) continue
    if (task === INGRESS_PORT_KEY && observed.ingressLeg !== null) continue
    emit(Stage.removeObjects, ns, 'ip', `link del dev ${port.ifname}`, `unexpected port of task ${task} in ${label}`)
  }

  const vxlanRecreated = !sameVxlanIdentity(want.vxlan!, have?.vxlan ?? null)
  // A recreated VXLAN device comes back with an empty FDB and neighbour table.
  const haveFdb = vxlanRecreated ? new Map<string, string>() : have!.fdb
  const haveNeighbours = vxlanRecreated ? new Map<string, string>() : have!.neighbours
  for (const [mac, node] of haveFdb) {
    if (want.fdb.get(mac) !== node) emit(Stage.removeObjects, ns, 'bridge', `fdb del ${mac} dev ${VXLAN} dst ${node} self`, `unexpected FDB entry ${mac} → ${node} in ${label}`)
  }
  for (const [mac, node] of want.fdb) {
    if (haveFdb.get(mac) !== node) emit(Stage.programPeers, ns, 'bridge', `fdb replace ${mac} dev ${VXLAN} dst ${node} self permanent`, `missing FDB entry ${mac} → ${node} in ${label}`)
  }
  for (const ip of haveNeighbours.keys()) {
    // `neigh del` of a missing entry aborts the whole batch (iproute2 exits); a targeted flush cannot fail that way.
    if (!want.neighbours.has(ip)) emit(Stage.removeObjects, ns, 'ip', `neigh flush to ${ip} dev ${VXLAN} nud permanent`, `unexpected neighbour ${ip} in ${label}`)
  }
  for (const [ip, mac] of want.neighbours) {
    if (haveNeighbours.get(ip) !== mac) emit(Stage.programPeers, ns, 'ip', `neigh replace ${ip} lladdr ${mac} dev ${VXLAN} nud permanent`, `missing neighbour ${ip} → ${mac} in ${label}`)
  }
}

/** VNI, source address, port, learning and ARP proxy can only be set when the device is created. */
function sameVxlanIdentity (want: VxlanLink, have: VxlanLink | null): boolean {
  return have !== null && have.vni === want.vni && have.local === want.local && have.port === want.port &&
    have.learning === want.learning && have.proxy === want.proxy
}

function planVxlan (want: NetworkNamespace, have: NetworkNamespace | null, label: string, emit: Emit): void {
  const ns = want.netns
  const vxlan = want.vxlan!
  if (have?.vxlan && sameVxlanIdentity(vxlan, have.vxlan)) {
    if (have.vxlan.mtu !== vxlan.mtu) emit(Stage.configureNetworks, ns, 'ip', `link set dev ${VXLAN} mtu ${vxlan.mtu}`, `VXLAN MTU ${have.vxlan.mtu}, want ${vxlan.mtu} in ${label}`)
    if (have.vxlan.master !== BRIDGE) emit(Stage.configureNetworks, ns, 'ip', `link set dev ${VXLAN} master ${BRIDGE}`, `VXLAN device not on the bridge in ${label}`)
    if (!have.vxlan.up) emit(Stage.configureNetworks, ns, 'ip', `link set dev ${VXLAN} up`, `VXLAN device down in ${label}`)
    return
  }
  const reason = have?.vxlan ? `VXLAN device of ${label} has VNI ${have.vxlan.vni} local ${have.vxlan.local}, want VNI ${vxlan.vni} local ${vxlan.local}` : `missing VXLAN device of ${label}`
  if (have?.vxlan) emit(Stage.removeObjects, ns, 'ip', `link del dev ${VXLAN}`, reason)
  const onHost = hostVxlanName(vxlan.vni)
  emit(Stage.createFromHost, null, 'ip',
    `link add ${onHost} mtu ${vxlan.mtu} type vxlan id ${vxlan.vni} local ${vxlan.local} dstport ${vxlan.port} nolearning proxy`, reason)
  emit(Stage.createFromHost, null, 'ip', `link set dev ${onHost} netns ${ns}`, reason)
  emit(Stage.configureNetworks, ns, 'ip', `link set dev ${onHost} name ${VXLAN}`, reason)
  emit(Stage.configureNetworks, ns, 'ip', `link set dev ${VXLAN} addrgenmode none master ${BRIDGE} up`, reason)
}

function planPortAttributes (ns: string, want: PortLink, have: PortLink, label: string, emit: Emit): void {
  if (have.mtu !== want.mtu) emit(Stage.configureNetworks, ns, 'ip', `link set dev ${have.ifname} mtu ${want.mtu}`, `port of task ${want.task} has MTU ${have.mtu}, want ${want.mtu} in ${label}`)
  if (have.master !== BRIDGE) emit(Stage.configureNetworks, ns, 'ip', `link set dev ${have.ifname} master ${BRIDGE}`, `port of task ${want.task} not on the bridge in ${label}`)
  if (!have.up) emit(Stage.configureNetworks, ns, 'ip', `link set dev ${have.ifname} up`, `port of task ${want.task} down in ${label}`)
}

function planTask (want: TaskNamespace, have: TaskNamespace | null, desired: KernelState, observed: KernelState, going: Removals, emit: Emit): void {
  const ns = want.netns
  const label = `task ${want.task}`
  if (!have) emit(Stage.createFromHost, null, 'ip', `netns add ${ns}`, `missing namespace of ${label}`)
  if (!have?.loUp) emit(Stage.configureTasks, ns, 'ip', 'link set dev lo up', `loopback down in ${label}`)
  for (const stray of have?.strayLinks ?? []) {
    emit(Stage.removeObjects, ns, 'ip', `link del dev ${stray}`, `unexpected link ${stray} in ${label}`)
  }

  const namesInUse = new Set<string>()
  for (const [network, iface] of have?.interfaces ?? []) {
    if (!want.interfaces.has(network) && !going.networks.has(network)) {
      emit(Stage.removeObjects, ns, 'ip', `link del dev ${iface.ifname}`, `unexpected interface on network ${network} in ${label}`)
    }
  }

  const toCreate: TaskInterface[] = []
  for (const [network, iface] of want.interfaces) {
    const existing = have?.interfaces.get(network)
    const port = observed.networks.get(network)?.ports.get(want.task)
    const networkRecreated = !observed.networks.has(network)
    if (existing && port && !networkRecreated) {
      namesInUse.add(existing.ifname)
      planInterfaceAttributes(ns, iface, existing, label, emit)
      continue
    }
    // One end of the pair is missing: remove the survivor and create both ends again.
    if (existing) emit(Stage.removeObjects, ns, 'ip', `link del dev ${existing.ifname}`, `interface on network ${network} in ${label} lost its bridge port`)
    if (port) emit(Stage.removeObjects, desired.networks.get(network)!.netns, 'ip', `link del dev ${port.ifname}`, `port of ${label} on network ${network} lost its task interface`)
    toCreate.push(iface)
  }

  for (const iface of toCreate) {
    const ifname = lowestFreeName(namesInUse)
    namesInUse.add(ifname)
    const network = desired.networks.get(iface.network)!
    const port = network.ports.get(want.task)!
    const reason = `missing interface on network ${iface.network} in ${label}`
    emit(Stage.createFromHost, null, 'ip',
      `link add name ${port.ifname} mtu ${port.mtu} netns ${network.netns} type veth peer name ${ifname} mtu ${iface.mtu} address ${iface.mac} netns ${ns}`, reason)
    emit(Stage.configureNetworks, network.netns, 'ip', `link set dev ${port.ifname} alias ${TASK_ALIAS_PREFIX}${want.task} addrgenmode none master ${BRIDGE} up`, reason)
    emit(Stage.configureTasks, ns, 'ip', `link set dev ${ifname} alias ${NETWORK_ALIAS_PREFIX}${iface.network} addrgenmode none`, reason)
    emit(Stage.configureTasks, ns, 'ip', `addr add ${iface.address} dev ${ifname}`, reason)
    emit(Stage.configureTasks, ns, 'ip', `link set dev ${ifname} up`, reason)
  }
  planDefaultRoute(want, have, toCreate, label, emit)
}

function planDefaultRoute (want: TaskNamespace, have: TaskNamespace | null, toCreate: readonly TaskInterface[], label: string, emit: Emit): void {
  const gateway = want.defaultGateway
  if (gateway === null) {
    if (have?.defaultGateway) emit(Stage.configureTasks, want.netns, 'ip', 'route flush exact 0.0.0.0/0', `unexpected default route via ${have.defaultGateway} in ${label}`)
    return
  }
  // A recreated interface takes its routes with it: the route goes in again after the new addresses.
  if (have?.defaultGateway === gateway && toCreate.length === 0) return
  emit(Stage.configureTasks, want.netns, 'ip', `route replace default via ${gateway}`, `missing default route via ${gateway} (the ingress leg) in ${label}`)
}

function planInterfaceAttributes (ns: string, want: TaskInterface, have: TaskInterface, label: string, emit: Emit): void {
  planAddressedLink(ns, have.ifname, `interface ${have.ifname} (network ${want.network}) in ${label}`, want, have, emit)
}

interface AddressedLink { mac: string, mtu: number, address: string | null, up: boolean }

/** MAC, MTU, address and state of a task interface or the ingress leg; ns null is netd's own namespace. */
function planAddressedLink (ns: string | null, ifname: string, at: string, want: AddressedLink, have: AddressedLink, emit: Emit): void {
  if (have.mac !== want.mac) emit(Stage.configureTasks, ns, 'ip', `link set dev ${ifname} address ${want.mac}`, `${at} has MAC ${have.mac}, want ${want.mac}`)
  if (have.mtu !== want.mtu) emit(Stage.configureTasks, ns, 'ip', `link set dev ${ifname} mtu ${want.mtu}`, `${at} has MTU ${have.mtu}, want ${want.mtu}`)
  if (have.address !== want.address) {
    const reason = `${at} has address ${have.address ?? 'none'}, want ${want.address}`
    emit(Stage.configureTasks, ns, 'ip', `addr flush dev ${ifname}`, reason)
    emit(Stage.configureTasks, ns, 'ip', `addr add ${want.address} dev ${ifname}`, reason)
  }
  if (!have.up) emit(Stage.configureTasks, ns, 'ip', `link set dev ${ifname} up`, `${at} is down`)
}

/**
 * The ingress leg: a veth whose host end (in netd's namespace) carries this node's ingress address and
 * whose other end is a port of the ingress network's bridge. Created, repaired and removed like a
 * task's interface, except that its "task namespace" is netd's own.
 */
function planIngressLeg (desired: KernelState, observed: KernelState, emit: Emit): void {
  const want = desired.ingressLeg
  const have = observed.ingressLeg
  if (want === null) {
    if (have !== null) emit(Stage.removeObjects, null, 'ip', `link del dev ${INGRESS_LEG}`, 'unexpected ingress leg')
    return
  }
  const network = desired.networks.get(want.network)!
  const port = observed.networks.get(want.network)?.ports.get(INGRESS_PORT_KEY)
  if (have !== null && have.network === want.network && port !== undefined) {
    planAddressedLink(null, INGRESS_LEG, `ingress leg ${INGRESS_LEG}`, want, have, emit)
    return
  }
  if (have !== null) emit(Stage.removeObjects, null, 'ip', `link del dev ${INGRESS_LEG}`, `ingress leg lost its bridge port or moved to network ${want.network}`)
  if (port !== undefined) emit(Stage.removeObjects, network.netns, 'ip', `link del dev ${port.ifname}`, 'ingress port lost its host end')
  const reason = `missing ingress leg into network ${want.network}`
  const portLink = network.ports.get(INGRESS_PORT_KEY)!
  emit(Stage.createFromHost, null, 'ip',
    `link add name ${portLink.ifname} mtu ${portLink.mtu} netns ${network.netns} type veth peer name ${INGRESS_LEG} mtu ${want.mtu} address ${want.mac}`, reason)
  emit(Stage.configureNetworks, network.netns, 'ip', `link set dev ${portLink.ifname} alias ${TASK_ALIAS_PREFIX}${INGRESS_PORT_KEY} addrgenmode none master ${BRIDGE} up`, reason)
  emit(Stage.configureTasks, null, 'ip', `link set dev ${INGRESS_LEG} alias ${NETWORK_ALIAS_PREFIX}${want.network} addrgenmode none`, reason)
  emit(Stage.configureTasks, null, 'ip', `addr add ${want.address} dev ${INGRESS_LEG}`, reason)
  emit(Stage.configureTasks, null, 'ip', `link set dev ${INGRESS_LEG} up`, reason)
}

function lowestFreeName (inUse: ReadonlySet<string>): string {
  for (let index = 0; ; index++) {
    const name = `eth${index}`
    if (!inUse.has(name)) return name
  }
}
