/**
 * Reads what the kernel holds in netd's namespaces into a KernelState. The
 * parsers are pure (iproute2 JSON in, state out); `observeKernel` is the thin
 * I/O around them, a handful of batched dumps per namespace.
 */
import {
  BRIDGE, BRIDGE_NETFILTER_SYSCTLS, HOST_VXLAN_PREFIX, INGRESS_LEG, NETWORK_ALIAS_PREFIX, TASK_ALIAS_PREFIX, VXLAN, emptyKernelState,
  type IngressLeg, type KernelState, type NetworkNamespace, type PortLink, type TaskNamespace
} from './kernel-state.ts'
import type { IprouteRunner } from './iproute.ts'

/** The fields of `ip -json -details addr show` that netd reads. */
interface IpLink {
  ifname: string
  flags?: string[]
  mtu: number
  address?: string
  master?: string
  ifalias?: string
  linkinfo?: { info_kind?: string, info_data?: Record<string, unknown> }
  addr_info?: Array<{ family: string, local: string, prefixlen: number }>
}

interface FdbEntry { mac: string, ifname?: string, dst?: string, flags?: string[], state?: string }
interface NeighbourEntry { dst: string, dev: string, lladdr?: string, state?: string[] }
interface RouteEntry { dst: string, gateway?: string }

const isUp = (link: IpLink): boolean => link.flags?.includes('UP') ?? false

export function parseNetworkNamespace (
  netns: string, network: string, links: IpLink[], neighbours: NeighbourEntry[], fdb: FdbEntry[], sysctls: ReadonlyMap<string, string>
): NetworkNamespace {
  const switches = BRIDGE_NETFILTER_SYSCTLS.flatMap((name) => sysctls.has(name) ? [sysctls.get(name) !== '0'] : [])
  const state: NetworkNamespace = {
    netns, network, loUp: false, bridgeNetfilter: switches.length === 0 ? null : switches.includes(true), bridge: null, vxlan: null, strayLinks: [], ports: new Map(), fdb: new Map(), neighbours: new Map()
  }
  for (const link of links) {
    const kind = link.linkinfo?.info_kind
    const data = link.linkinfo?.info_data ?? {}
    if (link.ifname === 'lo') {
      state.loUp = isUp(link)
    } else if (link.ifname === BRIDGE && kind === 'bridge') {
      state.bridge = { ifname: link.ifname, mtu: link.mtu, up: isUp(link) }
    } else if (link.ifname === VXLAN && kind === 'vxlan') {
      state.vxlan = {
        ifname: link.ifname,
        mtu: link.mtu,
        up: isUp(link),
        vni: Number(data.id),
        local: String(data.local ?? ''),
        port: Number(data.port),
        learning: data.learning === true,
        proxy: data.proxy === true,
        master: link.master ?? null
      }
    } else if (kind === 'veth' && link.ifalias?.startsWith(TASK_ALIAS_PREFIX)) {
      const port: PortLink = {
        ifname: link.ifname, task: link.ifalias.slice(TASK_ALIAS_PREFIX.length), mtu: link.mtu, up: isUp(link), master: link.master ?? null
      }
      state.ports.set(port.task, port)
    } else {
      state.strayLinks.push(link.ifname)
    }
  }
  for (const entry of fdb) {
    if (entry.ifname === VXLAN && entry.dst && entry.flags?.includes('self') && entry.state === 'permanent') state.fdb.set(entry.mac, entry.dst)
  }
  for (const entry of neighbours) {
    if (entry.dev === VXLAN && entry.lladdr && entry.state?.includes('PERMANENT')) state.neighbours.set(entry.dst, entry.lladdr)
  }
  return state
}

/** One address as "ip/prefix"; several read as a mismatch (drift that gets flushed); none is null. */
function ipv4Address (link: IpLink): string | null {
  const inet = link.addr_info?.filter((a) => a.family === 'inet') ?? []
  return inet.length === 0 ? null : inet.map((a) => `${a.local}/${a.prefixlen}`).join(',')
}

export function parseTaskNamespace (netns: string, task: string, links: IpLink[], defaultRoutes: RouteEntry[] = []): TaskNamespace {
  const gateways = defaultRoutes.filter((route) => route.dst === 'default' && route.gateway !== undefined)
  const state: TaskNamespace = {
    netns, task, loUp: false, interfaces: new Map(), strayLinks: [], defaultGateway: gateways.length === 1 ? gateways[0]!.gateway! : null
  }
  for (const link of links) {
    if (link.ifname === 'lo') {
      state.loUp = isUp(link)
      continue
    }
    if (link.linkinfo?.info_kind !== 'veth' || !link.ifalias?.startsWith(NETWORK_ALIAS_PREFIX)) {
      state.strayLinks.push(link.ifname)
      continue
    }
    const network = link.ifalias.slice(NETWORK_ALIAS_PREFIX.length)
    state.interfaces.set(network, { ifname: link.ifname, network, mac: link.address ?? '', mtu: link.mtu, up: isUp(link), address: ipv4Address(link) })
  }
  return state
}

/** The host end of the ingress leg, recognised by name and veth kind; its alias names the network. */
export function parseIngressLeg (links: IpLink[]): IngressLeg | null {
  const link = links.find((l) => l.ifname === INGRESS_LEG && l.linkinfo?.info_kind === 'veth')
  if (!link) return null
  const network = link.ifalias?.startsWith(NETWORK_ALIAS_PREFIX) ? link.ifalias.slice(NETWORK_ALIAS_PREFIX.length) : ''
  return { ifname: link.ifname, network, mac: link.address ?? '', mtu: link.mtu, up: isUp(link), address: ipv4Address(link) }
}

export function strayHostLinks (links: IpLink[]): string[] {
  return links
    .filter((link) => link.ifname.startsWith(HOST_VXLAN_PREFIX) && link.linkinfo?.info_kind === 'vxlan')
    .map((link) => link.ifname)
}

/** Classifies a namespace name under the prefix: `n-<network>` or `t-<task>`. */
export function classifyNamespace (prefix: string, netns: string): { kind: 'network' | 'task', id: string } | { kind: 'stray' } | null {
  if (!netns.startsWith(prefix)) return null
  const rest = netns.slice(prefix.length)
  if (rest.startsWith('n-') && rest.length > 2) return { kind: 'network', id: rest.slice(2) }
  if (rest.startsWith('t-') && rest.length > 2) return { kind: 'task', id: rest.slice(2) }
  return { kind: 'stray' }
}

const DUMP_CONCURRENCY = 8

export async function observeKernel (runner: IprouteRunner, prefix: string): Promise<KernelState> {
  const state = emptyKernelState()
  const [hostLinks] = await runner.dump('ip', null, ['addr show'])
  state.strayHostLinks = strayHostLinks(hostLinks as IpLink[])
  state.ingressLeg = parseIngressLeg(hostLinks as IpLink[])

  const owned = (await runner.namespaces()).flatMap((netns) => {
    const kind = classifyNamespace(prefix, netns)
    return kind ? [{ netns, kind }] : []
  })
  const readOne = async ({ netns, kind }: typeof owned[number]): Promise<void> => {
    if (kind.kind === 'stray') {
      state.strayNamespaces.push(netns)
    } else if (kind.kind === 'network') {
      const [[links, neighbours], [fdb], sysctls] = await Promise.all([
        runner.dump('ip', netns, ['addr show', 'neigh show nud permanent']),
        runner.dump('bridge', netns, ['fdb show']),
        runner.sysctls(netns, BRIDGE_NETFILTER_SYSCTLS)
      ])
      state.networks.set(kind.id, parseNetworkNamespace(netns, kind.id, links as IpLink[], neighbours as NeighbourEntry[], fdb as FdbEntry[], sysctls))
    } else {
      const [links, routes] = await runner.dump('ip', netns, ['addr show', 'route show default'])
      state.tasks.set(kind.id, parseTaskNamespace(netns, kind.id, links as IpLink[], routes as RouteEntry[]))
    }
  }
  for (let start = 0; start < owned.length; start += DUMP_CONCURRENCY) {
    await Promise.all(owned.slice(start, start + DUMP_CONCURRENCY).map(readOne))
  }
  return state
}
