/**
 * What lb must build on one node, computed from the node's desired-state
 * document: the frontends (a VIP, a published port) each namespace balances,
 * with every backend the document knows (healthy or not: health is shown by
 * `netd lb`, and a backend turning unhealthy is treated differently from one
 * that is removed, see conntrack.ts).
 *
 * Scoping (Docker's): a task namespace gets the VIPs of the services on the
 * networks that task is attached to, and nothing else; a VIP's backends are
 * the service's tasks on the VIP's network (local and remote). The host
 * namespace gets the published ports: `ingress` mode on every node, over the
 * service's tasks on the ingress network; `host` mode only on a node that
 * runs a task of the service, over the local tasks only.
 *
 * Tasks attached to the same set of networks see the same VIPs: they share one
 * frontends array (as dnsd shares record tables), so the compiler does the work
 * once per distinct set, not once per task.
 */
import type { DesiredState, Endpoint, RemoteEndpoint } from '../netd/desired-state.ts'
import { parseIpv4 } from '../netd/ipv4.ts'

export type Scheduler = 'rr' | 'sh'
export type Protocol = 'tcp' | 'udp'

export interface Backend {
  readonly ip: string
  /** The task id, when the document names it (remote endpoints may not). */
  readonly task: string | null
  readonly healthy: boolean
  /** A task of this node. */
  readonly local: boolean
}

export interface VipFrontend {
  readonly kind: 'vip'
  /** The VIP: unique within a task namespace (a service has one VIP per network). */
  readonly key: string
  readonly vip: string
  readonly service: string
  readonly serviceName: string
  readonly network: string
  readonly scheduler: Scheduler
  /** Sorted by address; the healthy ones, in this order, take the slots 0..N-1. */
  readonly backends: readonly Backend[]
}

export interface PortFrontend {
  /** ingress: balanced over the ingress network and masqueraded; host: local tasks only, client address kept. */
  readonly kind: 'ingress' | 'host'
  /** `tcp . 8080`: the nft key of the published port. */
  readonly key: string
  readonly protocol: Protocol
  readonly published: number
  readonly target: number
  readonly service: string
  readonly serviceName: string
  readonly network: string
  readonly scheduler: Scheduler
  readonly backends: readonly Backend[]
}

export type Frontend = VipFrontend | PortFrontend

export interface TaskLbSpec {
  readonly task: string
  /** Sorted network ids the task is attached to. */
  readonly networks: readonly string[]
  /** Sorted by key; shared by every task attached to the same networks. */
  readonly frontends: readonly VipFrontend[]
}

export interface IngressLeg {
  /** The veth end in the host namespace, into the ingress network (netd creates it). */
  readonly ifname: string
  readonly ip: string
}

export interface HostLbSpec {
  /** null: this node has no leg into the ingress network, so no routing mesh. */
  readonly leg: IngressLeg | null
  /** Sorted by key. */
  readonly frontends: readonly PortFrontend[]
}

export interface LbSpec {
  readonly revision: number
  /** Task namespace name → what it balances. Every local task has an entry, with or without VIPs. */
  readonly tasks: ReadonlyMap<string, TaskLbSpec>
  readonly host: HostLbSpec
  /** Published ports that cannot be built on this node, one line each (reported by netd, never fatal). */
  readonly problems: readonly string[]
}

export interface LbSpecOptions {
  /** The task's namespace name (netd: `taskNamespaceName(prefix, task)`). */
  readonly taskNetns: (task: string) => string
  readonly ingressLeg: IngressLeg | null
}

function byKey (x: { key: string }, y: { key: string }): number {
  return x.key < y.key ? -1 : x.key > y.key ? 1 : 0
}

export function lbSpec (doc: DesiredState, options: LbSpecOptions): LbSpec {
  // Members per service, per network: every endpoint of the document, local or remote.
  const members = new Map<string, Map<string, Array<{ n: number, backend: Backend }>>>()
  const add = (e: Endpoint | RemoteEndpoint, local: boolean): void => {
    if (e.service === undefined) return
    let byNetwork = members.get(e.service)
    if (byNetwork === undefined) members.set(e.service, byNetwork = new Map())
    let list = byNetwork.get(e.network)
    if (list === undefined) byNetwork.set(e.network, list = [])
    // The document is validated: every address parses.
    list.push({ n: parseIpv4(e.ip)!, backend: { ip: e.ip, task: e.task ?? null, healthy: e.healthy, local } })
  }
  for (const e of doc.endpoints) add(e, true)
  for (const e of doc.remoteEndpoints) add(e, false)
  const sorted = new Map<string, Map<string, readonly Backend[]>>()
  for (const [service, byNetwork] of members) {
    const out = new Map<string, readonly Backend[]>()
    for (const [network, list] of byNetwork) out.set(network, list.length === 1 ? [list[0]!.backend] : list.sort((x, y) => x.n - y.n).map((m) => m.backend))
    sorted.set(service, out)
  }
  const membersOf = (service: string, network: string): readonly Backend[] => sorted.get(service)?.get(network) ?? []

  // VIP frontends per network.
  const vipsByNetwork = new Map<string, VipFrontend[]>()
  for (const service of doc.services) {
    if (service.endpointMode !== 'vip') continue
    for (const attachment of service.networks) {
      if (attachment.vip === undefined) continue
      let list = vipsByNetwork.get(attachment.network)
      if (list === undefined) vipsByNetwork.set(attachment.network, list = [])
      list.push({
        kind: 'vip',
        key: attachment.vip,
        vip: attachment.vip,
        service: service.id,
        serviceName: service.name,
        network: attachment.network,
        scheduler: service.scheduler,
        backends: membersOf(service.id, attachment.network)
      })
    }
  }

  // Task namespaces, folded per distinct set of networks.
  const taskNetworks = new Map<string, Set<string>>()
  for (const e of doc.endpoints) {
    let set = taskNetworks.get(e.task)
    if (set === undefined) taskNetworks.set(e.task, set = new Set())
    set.add(e.network)
  }
  const shared = new Map<string, readonly VipFrontend[]>()
  const tasks = new Map<string, TaskLbSpec>()
  for (const [task, set] of taskNetworks) {
    const networks = [...set].sort()
    const foldKey = networks.join('\u0000')
    let frontends = shared.get(foldKey)
    if (frontends === undefined) {
      frontends = networks.flatMap((n) => vipsByNetwork.get(n) ?? []).sort(byKey)
      shared.set(foldKey, frontends)
    }
    tasks.set(options.taskNetns(task), { task, networks, frontends })
  }

  const { frontends, problems } = publishedPorts(doc, options.ingressLeg, membersOf)
  return { revision: doc.revision, tasks, host: { leg: options.ingressLeg, frontends }, problems }
}

function publishedPorts (
  doc: DesiredState, leg: IngressLeg | null, membersOf: (service: string, network: string) => readonly Backend[]
): { frontends: PortFrontend[], problems: string[] } {
  const frontends: PortFrontend[] = []
  const problems: string[] = []
  const ingress = doc.networks.find((n) => n.ingress)
  for (const service of doc.services) {
    for (const port of service.ports) {
      if (port.published === undefined) continue
      const at = `service ${service.name} port ${port.published}/${port.protocol}`
      const members = ingress === undefined ? [] : membersOf(service.id, ingress.id)
      const backends = port.mode === 'host' ? members.filter((b) => b.local) : members
      // host mode publishes only where a task of the service runs; nothing to report elsewhere.
      if (port.mode === 'host' && backends.length === 0) continue
      if (ingress === undefined) {
        problems.push(`${at}: no ingress network in the document`)
        continue
      }
      if (leg === null) {
        problems.push(`${at}: this node has no ingress leg`)
        continue
      }
      frontends.push({
        kind: port.mode,
        key: `${port.protocol} . ${port.published}`,
        protocol: port.protocol,
        published: port.published,
        target: port.target,
        service: service.id,
        serviceName: service.name,
        network: ingress.id,
        scheduler: service.scheduler,
        backends
      })
    }
  }
  return { frontends: frontends.sort(byKey), problems }
}
