/**
 * What `weft node|network|service ls/ps/inspect` print, as pure functions of
 * the cluster snapshot the manager answers (manager/control.ts) and the time:
 * table rows in Docker's columns and words, and inspect documents in the
 * shape of Docker's API objects (IDs, Spec, Status, …).
 */
import type { ClusterSnapshot } from '../manager/control.ts'
import { serviceNetworkIds } from '../manager/store/spec.ts'
import { isTerminal, type ClusterState, type NetworkRecord, type NodeRecord, type ServiceRecord, type TaskRecord } from '../manager/store/state.ts'
import { capitalize, stateSince } from './durations.ts'
import { CliError } from './errors.ts'

export const SHORT_ID = 12

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString())
const ns = (ms: number): number => ms * 1_000_000
const short = (id: string, noTrunc: boolean): string => (noTrunc ? id : id.slice(0, SHORT_ID))
const byName = <T>(name: (x: T) => string, id: (x: T) => string) => (a: T, b: T): number =>
  name(a).localeCompare(name(b)) || id(a).localeCompare(id(b))

/**
 * An object by id, name, or unique id prefix, as docker resolves references. Throws
 * WEFT_ERR_NOT_FOUND naming what was asked for.
 */
export function resolve<T extends { id: string }> (items: readonly T[], ref: string, nameOf: (item: T) => string, kind: string): T {
  const exact = items.find((i) => i.id === ref) ?? items.find((i) => nameOf(i) === ref)
  if (exact !== undefined) return exact
  const prefixed = items.filter((i) => i.id.startsWith(ref))
  if (prefixed.length === 1) return prefixed[0]!
  if (prefixed.length > 1) throw new CliError('WEFT_ERR_NOT_FOUND', `${kind} ${ref} is ambiguous (${prefixed.length} matches)`)
  throw new CliError('WEFT_ERR_NOT_FOUND', `No such ${kind}: ${ref}`)
}

export const findNodeIn = (state: ClusterState, ref: string, self: string | null): NodeRecord =>
  resolve(Object.values(state.nodes), ref === 'self' && self !== null ? self : ref, (n) => n.hostname, 'node')
export const findServiceIn = (state: ClusterState, ref: string): ServiceRecord =>
  resolve(Object.values(state.services), ref, (s) => s.spec.name, 'service')
export const findNetworkIn = (state: ClusterState, ref: string): NetworkRecord =>
  resolve(Object.values(state.networks), ref, (n) => n.name, 'network')

// ---- nodes ----------------------------------------------------------------------------------

export const NODE_COLUMNS = ['ID', 'HOSTNAME', 'STATUS', 'AVAILABILITY', 'MANAGER STATUS'] as const

export interface NodeRow { ID: string, Self: boolean, Hostname: string, Status: string, Availability: string, ManagerStatus: string }

export function managerStatusOf (node: NodeRecord): string {
  if (node.managerStatus === null) return ''
  if (node.managerStatus.leader) return 'Leader'
  return capitalize(node.managerStatus.reachability)
}

export function nodeRows (state: ClusterState, self: string | null): NodeRow[] {
  return Object.values(state.nodes).sort(byName((n) => n.hostname, (n) => n.id)).map((n) => ({
    ID: n.id, Self: n.id === self, Hostname: n.hostname, Status: capitalize(n.status), Availability: capitalize(n.availability), ManagerStatus: managerStatusOf(n)
  }))
}

export function nodeTable (rows: readonly NodeRow[]): string[][] {
  return rows.map((r) => [`${r.ID}${r.Self ? ' *' : ''}`, r.Hostname, r.Status, r.Availability, r.ManagerStatus])
}

export function inspectNode (snapshot: ClusterSnapshot, node: NodeRecord): Record<string, unknown> {
  const description = snapshot.descriptions[node.id]
  return {
    ID: node.id,
    Version: { Index: node.version },
    CreatedAt: iso(node.createdAt),
    UpdatedAt: iso(node.updatedAt),
    Spec: { Labels: node.labels, Role: node.role, Availability: node.availability },
    Description: {
      Hostname: node.hostname,
      ...(description === undefined
        ? {}
        : {
            Platform: { Architecture: description.platform.architecture, OS: description.platform.os },
            Resources: { NanoCPUs: description.resources.nanoCPUs, MemoryBytes: description.resources.memoryBytes },
            Engine: { EngineVersion: description.engineVersion, Plugins: [{ Type: 'Network', Name: 'overlay' }] }
          })
    },
    Status: { State: node.status, ...(node.statusMessage === '' ? {} : { Message: node.statusMessage }), Addr: node.addr },
    ...(node.managerStatus === null
      ? {}
      : { ManagerStatus: { Leader: node.managerStatus.leader, Reachability: node.managerStatus.reachability, Addr: node.id === snapshot.manager ? snapshot.managerAddr : `${node.addr}:2377` } })
  }
}

// ---- networks -------------------------------------------------------------------------------

export const NETWORK_COLUMNS = ['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE'] as const

export interface NetworkRow { ID: string, Name: string, Driver: string, Scope: string }

export function networkRows (state: ClusterState, noTrunc = false): NetworkRow[] {
  return Object.values(state.networks).sort(byName((n) => n.name, (n) => n.id))
    .map((n) => ({ ID: short(n.id, noTrunc), Name: n.name, Driver: n.driver, Scope: 'swarm' }))
}

export function inspectNetwork (state: ClusterState, network: NetworkRecord): Record<string, unknown> {
  const services = Object.values(state.services).filter((s) => serviceNetworkIds(s.spec, state.cluster?.ingressNetwork ?? '').includes(network.id))
  return {
    Name: network.name,
    Id: network.id,
    Created: iso(network.createdAt),
    Scope: 'swarm',
    Driver: network.driver,
    EnableIPv6: false,
    IPAM: { Driver: 'default', Options: null, Config: [{ Subnet: network.subnet, Gateway: network.gateway }] },
    Internal: false,
    Attachable: network.attachable,
    Ingress: network.ingress,
    Services: Object.fromEntries(services.map((s) => [s.spec.name, { ID: s.id, VIP: s.vips.find((v) => v.network === network.id)?.ip ?? null }])),
    Options: { 'com.docker.network.driver.overlay.vxlanid_list': String(network.vni) },
    Labels: network.labels
  }
}

// ---- services -------------------------------------------------------------------------------

export const SERVICE_COLUMNS = ['ID', 'NAME', 'MODE', 'REPLICAS', 'IMAGE', 'PORTS'] as const

export interface ServiceRow { ID: string, Name: string, Mode: string, Replicas: string, Image: string, Ports: string }

const activeTasks = (state: ClusterState, service: ServiceRecord): TaskRecord[] =>
  Object.values(state.tasks).filter((t) => t.service === service.id && t.desiredState === 'running')

export function portsText (ports: ServiceRecord['spec']['ports'], mode?: 'host' | 'ingress'): string {
  return ports.filter((p) => p.published !== undefined && (mode === undefined || p.mode === mode))
    .map((p) => `*:${p.published}->${p.target}/${p.protocol}`).join(', ')
}

export function serviceRows (state: ClusterState, noTrunc = false): ServiceRow[] {
  return Object.values(state.services).sort(byName((s) => s.spec.name, (s) => s.id)).map((s) => {
    const tasks = activeTasks(state, s)
    const running = tasks.filter((t) => t.state === 'running').length
    const desired = s.spec.mode.kind === 'replicated' ? s.spec.mode.replicas : tasks.length
    return {
      ID: short(s.id, noTrunc),
      Name: s.spec.name,
      Mode: s.spec.mode.kind,
      Replicas: `${running}/${desired}`,
      Image: s.spec.image,
      Ports: portsText(s.spec.ports)
    }
  })
}

export const TASK_COLUMNS = ['ID', 'NAME', 'IMAGE', 'NODE', 'DESIRED STATE', 'CURRENT STATE', 'ERROR', 'PORTS'] as const

export interface TaskRow {
  ID: string, Name: string, Image: string, Node: string, DesiredState: string, CurrentState: string, Error: string, Ports: string, Health: string
  /** Not shown: for --format json and tests. */
  Slot: number | null, State: string, Service: string, CreatedAt: string | null, StatusAt: string | null
}

export interface TaskFilter { desiredState?: 'running' | 'shutdown' | 'accepted', node?: string }

/**
 * `service ps`: per slot (or node, for global services), the current task and then its history
 * (`\_ name.1`), newest first, as docker prints them.
 */
export function taskRows (state: ClusterState, services: readonly ServiceRecord[], now: number, options: { noTrunc?: boolean, filter?: TaskFilter } = {}): TaskRow[] {
  const rows: TaskRow[] = []
  for (const service of services) {
    const tasks = Object.values(state.tasks).filter((t) => t.service === service.id).filter((t) => {
      const f = options.filter
      if (f?.desiredState !== undefined && f.desiredState !== 'accepted' && t.desiredState !== f.desiredState) return false
      if (f?.desiredState === 'accepted' && isTerminal(t.state)) return false
      if (f?.node !== undefined && t.node !== f.node && state.nodes[t.node ?? '']?.hostname !== f.node) return false
      return true
    })
    const place = (t: TaskRecord): string => (t.slot !== null ? String(t.slot).padStart(8, '0') : t.node ?? '')
    tasks.sort((a, b) => place(a).localeCompare(place(b)) || (a.desiredState === 'running' ? 0 : 1) - (b.desiredState === 'running' ? 0 : 1) || b.createdAt - a.createdAt)
    let last: string | null = null
    for (const t of tasks) {
      const head = `${service.spec.name}.${t.slot ?? t.node}`
      const node = t.node === null ? '' : state.nodes[t.node]?.hostname ?? t.node
      rows.push({
        ID: short(t.id, options.noTrunc === true),
        Name: place(t) === last ? ` \\_ ${head}` : head,
        Image: t.spec.image,
        Node: node,
        DesiredState: capitalize(t.desiredState),
        CurrentState: `${stateSince(t.state, t.statusAt, now)}${healthSuffix(t)}`,
        Error: t.error === null ? '' : `"${options.noTrunc === true ? t.error : truncate(t.error, 40)}"`,
        Ports: t.desiredState === 'running' && !isTerminal(t.state) ? portsText(service.spec.ports, 'host') : '',
        Slot: t.slot,
        State: t.state,
        Service: service.spec.name,
        CreatedAt: iso(t.createdAt),
        StatusAt: iso(t.statusAt),
        Health: t.health?.status ?? (t.spec.healthcheck === undefined || isTerminal(t.state) ? '' : 'starting')
      })
      last = place(t)
    }
  }
  return rows
}

/** `docker ps` shows health after the state, as `Up 5 minutes (healthy)`; ended tasks have none. */
function healthSuffix (task: TaskRecord): string {
  if (task.spec.healthcheck === undefined || isTerminal(task.state) || task.state !== 'running') return ''
  return ` (${task.health?.status ?? 'starting'})`
}

export function taskTable (rows: readonly TaskRow[]): string[][] {
  return rows.map((r) => [r.ID, r.Name, r.Image, r.Node, r.DesiredState, r.CurrentState, r.Error, r.Ports])
}

function truncate (text: string, length: number): string {
  return text.length <= length ? text : `${text.slice(0, length - 1)}…`
}

function specDocument (state: ClusterState, spec: ServiceRecord['spec']): Record<string, unknown> {
  const networkName = (id: string): string => state.networks[id]?.name ?? id
  return {
    Name: spec.name,
    Labels: spec.labels,
    TaskTemplate: {
      ContainerSpec: {
        Image: spec.image,
        ...(spec.args.length === 0 ? {} : { Args: spec.args }),
        ...(spec.env.length === 0 ? {} : { Env: spec.env }),
        ...(spec.workdir === undefined ? {} : { Dir: spec.workdir }),
        ...(spec.user === undefined ? {} : { User: spec.user }),
        ...(spec.healthcheck === undefined ? {} : { Healthcheck: healthcheckDocument(spec.healthcheck) }),
        StopGracePeriod: ns(spec.stopGracePeriod),
        DrainDelay: ns(spec.drainDelay)
      },
      RestartPolicy: { Condition: spec.restart.condition, Delay: ns(spec.restart.delay), MaxAttempts: spec.restart.maxAttempts, ...(spec.restart.window === 0 ? {} : { Window: ns(spec.restart.window) }) },
      Placement: spec.constraints.length === 0 ? {} : { Constraints: spec.constraints },
      ...(spec.networks.length === 0 ? {} : { Networks: spec.networks.map((n) => ({ Target: n.network, Name: networkName(n.network), ...(n.aliases.length === 0 ? {} : { Aliases: n.aliases }) })) })
    },
    Mode: spec.mode.kind === 'replicated' ? { Replicated: { Replicas: spec.mode.replicas } } : { Global: {} },
    UpdateConfig: updateDocument(spec.update),
    RollbackConfig: updateDocument(spec.rollback),
    EndpointSpec: { Mode: spec.endpointMode, ...(spec.ports.length === 0 ? {} : { Ports: spec.ports.map(portDocument) }) }
  }
}

/** Docker's Healthcheck shape (Test as argv), with weft's TCP and HTTP checks as `TCP PORT` and `HTTP PATH:PORT`. */
function healthcheckDocument (check: NonNullable<ServiceRecord['spec']['healthcheck']>): Record<string, unknown> {
  const test = check.test.kind === 'cmd' ? ['CMD-SHELL', check.test.command] : check.test.kind === 'tcp' ? ['TCP', String(check.test.port)] : ['HTTP', `${check.test.path}:${check.test.port}`]
  return { Test: test, Interval: ns(check.interval), Timeout: ns(check.timeout), Retries: check.retries, StartPeriod: ns(check.startPeriod) }
}

/** Each running task's health as Docker's State.Health shows it: status, failing streak, the last results. */
function taskHealthDocuments (state: ClusterState, service: ServiceRecord): Array<Record<string, unknown>> {
  return Object.values(state.tasks)
    .filter((t) => t.service === service.id && t.spec.healthcheck !== undefined && !isTerminal(t.state))
    .sort((a, b) => (a.slot ?? 0) - (b.slot ?? 0) || (a.id < b.id ? -1 : 1))
    .map((t) => ({
      ID: t.id,
      Status: t.health?.status ?? 'starting',
      FailingStreak: t.health?.failingStreak ?? 0,
      Log: (t.health?.log ?? []).map((r) => ({ Start: r.start, End: r.end, ExitCode: r.exitCode, Output: r.output }))
    }))
}

function updateDocument (config: ServiceRecord['spec']['update']): Record<string, unknown> {
  return { Parallelism: config.parallelism, Delay: ns(config.delay), FailureAction: config.failureAction, Monitor: ns(config.monitor), MaxFailureRatio: config.maxFailureRatio, Order: 'stop-first' }
}

function portDocument (p: ServiceRecord['spec']['ports'][number]): Record<string, unknown> {
  return { ...(p.name === undefined ? {} : { Name: p.name }), Protocol: p.protocol, TargetPort: p.target, ...(p.published === undefined ? {} : { PublishedPort: p.published }), PublishMode: p.mode }
}

export function inspectService (state: ClusterState, service: ServiceRecord): Record<string, unknown> {
  const status = service.updateStatus
  return {
    ID: service.id,
    Version: { Index: service.version },
    CreatedAt: iso(service.createdAt),
    UpdatedAt: iso(service.updatedAt),
    Spec: specDocument(state, service.spec),
    ...(service.previousSpec === null ? {} : { PreviousSpec: specDocument(state, service.previousSpec) }),
    Endpoint: {
      Spec: { Mode: service.spec.endpointMode, ...(service.spec.ports.length === 0 ? {} : { Ports: service.spec.ports.map(portDocument) }) },
      ...(service.spec.ports.length === 0 ? {} : { Ports: service.spec.ports.map(portDocument) }),
      ...(service.vips.length === 0 ? {} : { VirtualIPs: service.vips.map((v) => ({ NetworkID: v.network, Addr: `${v.ip}/${state.networks[v.network]?.subnet.split('/')[1] ?? '32'}` })) })
    },
    ...(status === null ? {} : { UpdateStatus: { State: status.state, StartedAt: iso(status.startedAt), ...(status.completedAt === null ? {} : { CompletedAt: iso(status.completedAt) }), Message: status.message } }),
    ...(service.allocationError === null ? {} : { AllocationError: service.allocationError }),
    ...(service.spec.healthcheck === undefined ? {} : { TaskHealth: taskHealthDocuments(state, service) })
  }
}
