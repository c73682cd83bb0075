/**
 * The node's desired-state document: what one node must build. The manager
 * streams it (netd/cluster); `netd apply -f` feeds it by hand.
 *
 * Shape is checked by a zod schema (types are derived from it); the rules that
 * span entries (duplicate VNI, IP outside subnet, duplicate IP or MAC within a
 * network) are checked afterwards, and every violation is reported with the
 * path of the offending field, so one error message lists everything wrong.
 */
import { z } from 'zod'
import { Address4 } from 'ip-address'
import { NetdError } from './errors.ts'
import { healthcheckSchema } from './health/health-spec.ts'
import { parseIpv4 } from './ipv4.ts'

const ID_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,31}$/
const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/

const id = z.string().regex(ID_PATTERN, 'must be 1-32 characters of a-z, 0-9, _ . - starting with a letter or digit')

const ipv4 = z.string().refine((s) => parseIpv4(s) !== null, 'must be an IPv4 address')

const cidr = z.string().refine((s) => {
  if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(s) || !Address4.isValid(s)) return false
  const prefix = Number(s.split('/')[1])
  return prefix >= 8 && prefix <= 30
}, 'must be an IPv4 CIDR with a prefix length from /8 to /30')

const mac = z.string()
  .transform((s) => s.toLowerCase())
  .refine((s) => MAC_PATTERN.test(s), 'must be a MAC address like 02:42:0a:00:01:02')
  .refine((s) => (parseInt(s.slice(0, 2), 16) & 1) === 0, 'must be a unicast MAC address')

export const networkSchema = z.strictObject({
  id,
  name: z.string().min(1).max(64),
  subnet: cidr,
  gateway: ipv4,
  vni: z.int().min(1).max(16_777_215),
  /** The routing mesh's network (Swarm's `ingress`): published ports are balanced over it. At most one. */
  ingress: z.boolean().default(false)
})

/** A DNS label-based name: lower-case letters, digits, dashes and dots (compared case-insensitively). */
const dnsName = z.string()
  .transform((s) => s.toLowerCase())
  .refine((s) => s.length <= 253 && s.split('.').every((label) => /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/.test(label)),
    'must be a DNS name: labels of letters, digits and dashes, separated by dots')

const port = z.int().min(1).max(65535)

/**
 * What the task runtime and DNS need to know of an endpoint's task, on top of
 * its address: the service it belongs to, its task name
 * (`<service>.<slot>.<task-id>`, resolvable by DNS), and whether it is healthy.
 */
const taskIdentity = {
  service: id.optional(),
  name: dnsName.optional(),
  healthy: z.boolean().default(true)
}

export const endpointSchema = z.strictObject({
  task: id,
  network: id,
  ip: ipv4,
  mac,
  ...taskIdentity
})

export const remoteEndpointSchema = z.strictObject({
  network: id,
  ip: ipv4,
  mac,
  node: ipv4,
  task: id.optional(),
  ...taskIdentity
})

export const servicePortSchema = z.strictObject({
  /** Named ports are published in DNS as SRV `_<name>._<protocol>.<service>`. */
  name: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/, 'must be a port name of up to 15 lower-case letters, digits and dashes').optional(),
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
  target: port,
  published: port.optional(),
  /**
   * ingress: every node accepts the published port and balances over the ingress network (source NATed);
   * host: only nodes running a task accept it, straight to the local task, client address kept.
   */
  mode: z.enum(['ingress', 'host']).default('ingress')
})

export const serviceSchema = z.strictObject({
  id,
  name: dnsName,
  endpointMode: z.enum(['vip', 'dnsrr']).default('vip'),
  /** How a VIP or published port picks a task per connection, named as ipvsadm names them: rr round robin, sh source-address hashing (client-IP affinity). */
  scheduler: z.enum(['rr', 'sh']).default('rr'),
  /** The networks the service is attached to on this node's view, its VIP on each (VIP mode) and its aliases there. */
  networks: z.array(z.strictObject({
    network: id,
    vip: ipv4.optional(),
    aliases: z.array(dnsName).default([])
  })),
  ports: z.array(servicePortSchema).default([])
})

/** Twice the TTL of task answers (dnsd/records.ts): a client's cached `tasks.<service>` answer is gone by then. */
export const DEFAULT_DRAIN_DELAY_MS = 2000
export const DEFAULT_STOP_GRACE_MS = 10_000

/**
 * A task this node runs: what the task runtime starts (netd/runtime) once the task's namespace
 * exists. A task told to stop stays listed, desired `shutdown`, until its node has stopped it, so
 * its namespace outlives its process; its endpoints leave the document at once.
 */
export const taskSchema = z.strictObject({
  id,
  /** `<service>.<slot>.<task-id>`: the runtime's task name and default hostname. */
  name: z.string().min(1).max(255).regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'must be letters, digits, _ . - starting with a letter or digit'),
  service: id,
  image: z.string().min(1).max(255),
  /** argv; empty runs the image's default command. */
  command: z.array(z.string()).default([]),
  /** `KEY=value`, as `service create --env` takes them. */
  env: z.array(z.string().min(1)).default([]),
  workdir: z.string().min(1).optional(),
  user: z.string().min(1).optional(),
  hostname: z.string().min(1).max(64).optional(),
  /** Run by netd while the task runs; without one, a running task is healthy. */
  healthcheck: healthcheckSchema.optional(),
  /** Between leaving DNS and every load balancer and SIGTERM: in-flight work and cached answers run out. */
  drainDelay: z.int().min(0).max(3_600_000).default(DEFAULT_DRAIN_DELAY_MS),
  /** Between SIGTERM and SIGKILL (`--stop-grace-period`, Docker's default 10 s). */
  stopGracePeriod: z.int().min(0).max(3_600_000).default(DEFAULT_STOP_GRACE_MS),
  desiredState: z.enum(['running', 'shutdown']).default('running')
})

export const desiredStateSchema = z.strictObject({
  version: z.literal(1),
  revision: z.int().min(0),
  networks: z.array(networkSchema),
  endpoints: z.array(endpointSchema),
  remoteEndpoints: z.array(remoteEndpointSchema),
  services: z.array(serviceSchema).default([]),
  /** This node's endpoint on the ingress network: the routing mesh's leg from the host namespace into it. */
  ingress: z.strictObject({ network: id, ip: ipv4, mac }).optional(),
  /** The tasks this node runs (from a manager); a hand-written document may leave it out. */
  tasks: z.array(taskSchema).optional()
})

export type Network = z.infer<typeof networkSchema>
export type Endpoint = z.infer<typeof endpointSchema>
export type RemoteEndpoint = z.infer<typeof remoteEndpointSchema>
export type Service = z.infer<typeof serviceSchema>
export type ServicePort = z.infer<typeof servicePortSchema>
export type Task = z.infer<typeof taskSchema>
export type DesiredState = z.infer<typeof desiredStateSchema>
/** The document as written by hand or by the manager: fields with defaults may be left out. */
export type DesiredStateInput = z.input<typeof desiredStateSchema>
export type NetworkInput = z.input<typeof networkSchema>
export type ServiceInput = z.input<typeof serviceSchema>

export const EMPTY_STATE: DesiredState = Object.freeze({
  version: 1,
  revision: 0,
  networks: [],
  endpoints: [],
  remoteEndpoints: [],
  services: []
}) as DesiredState

function formatPath (path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, key) =>
    typeof key === 'number' ? `${out}[${key}]` : out === '' ? String(key) : `${out}.${String(key)}`, '')
}

/** Returns the violations of the rules that span entries; empty when the document is coherent. */
export function crossCheck (doc: DesiredState): string[] {
  const problems: string[] = []
  const networks = new Map<string, { index: number, subnet: SubnetRange, network: Network }>()
  const vnis = new Map<number, number>()
  const names = new Map<string, number>()

  doc.networks.forEach((network, index) => {
    const at = `networks[${index}]`
    const parsed = new Address4(network.subnet)
    const subnet = { start: Number(parsed.startAddress().bigInt()), end: Number(parsed.endAddress().bigInt()) }
    if (networks.has(network.id)) problems.push(`${at}.id: duplicate network id "${network.id}" (also networks[${networks.get(network.id)!.index}])`)
    else networks.set(network.id, { index, subnet, network })
    const vniOwner = vnis.get(network.vni)
    if (vniOwner !== undefined) problems.push(`${at}.vni: duplicate VNI ${network.vni} (also networks[${vniOwner}])`)
    else vnis.set(network.vni, index)
    const nameOwner = names.get(network.name)
    if (nameOwner !== undefined) problems.push(`${at}.name: duplicate network name "${network.name}" (also networks[${nameOwner}])`)
    else names.set(network.name, index)
    if (parsed.startAddress().correctForm() !== parsed.correctForm()) {
      problems.push(`${at}.subnet: ${network.subnet} has host bits set (network address is ${parsed.startAddress().correctForm()}/${parsed.subnetMask})`)
    }
    const gatewayProblem = addressProblem(network.gateway, subnet, network.subnet)
    if (gatewayProblem) problems.push(`${at}.gateway: ${gatewayProblem}`)
  })

  // Per network: every address and MAC is claimed once, by the gateway or one endpoint.
  const ipOwners = new Map<string, string>()
  const macOwners = new Map<string, string>()
  for (const [networkId, { index }] of networks) ipOwners.set(`${networkId}/${doc.networks[index]!.gateway}`, `networks[${index}].gateway`)
  const taskNetworks = new Map<string, string>()

  const claim = (at: string, entry: { network: string, ip: string, mac: string }): void => {
    const owner = networks.get(entry.network)
    if (!owner) {
      problems.push(`${at}.network: unknown network "${entry.network}"`)
      return
    }
    const outside = addressProblem(entry.ip, owner.subnet, owner.network.subnet)
    if (outside) problems.push(`${at}.ip: ${outside}`)
    const ipKey = `${entry.network}/${entry.ip}`
    const ipOwner = ipOwners.get(ipKey)
    if (ipOwner) problems.push(`${at}.ip: duplicate IP ${entry.ip} on network "${entry.network}" (also ${ipOwner})`)
    else ipOwners.set(ipKey, at)
    const macKey = `${entry.network}/${entry.mac}`
    const macOwner = macOwners.get(macKey)
    if (macOwner) problems.push(`${at}.mac: duplicate MAC ${entry.mac} on network "${entry.network}" (also ${macOwner})`)
    else macOwners.set(macKey, at)
  }

  doc.endpoints.forEach((endpoint, index) => {
    const at = `endpoints[${index}]`
    claim(at, endpoint)
    const attachment = `${endpoint.task}/${endpoint.network}`
    const previous = taskNetworks.get(attachment)
    if (previous) problems.push(`${at}: task "${endpoint.task}" is attached to network "${endpoint.network}" twice (also ${previous})`)
    else taskNetworks.set(attachment, at)
  })
  doc.remoteEndpoints.forEach((remote, index) => claim(`remoteEndpoints[${index}]`, remote))
  problems.push(...checkIngress(doc, networks, claim))
  problems.push(...checkServices(doc, networks, ipOwners))
  const taskIds = new Map<string, number>()
  doc.tasks?.forEach((task, index) => {
    const owner = taskIds.get(task.id)
    if (owner !== undefined) problems.push(`tasks[${index}].id: duplicate task id "${task.id}" (also tasks[${owner}])`)
    else taskIds.set(task.id, index)
  })
  return problems
}

function checkIngress (
  doc: DesiredState, networks: ReadonlyMap<string, { index: number }>, claim: (at: string, entry: { network: string, ip: string, mac: string }) => void
): string[] {
  const problems: string[] = []
  const ingressNetworks = doc.networks.filter((n) => n.ingress)
  if (ingressNetworks.length > 1) problems.push(`networks: more than one ingress network (${ingressNetworks.map((n) => `"${n.id}"`).join(', ')})`)
  if (doc.ingress !== undefined) {
    const owner = networks.get(doc.ingress.network)
    if (owner !== undefined && !doc.networks[owner.index]!.ingress) problems.push(`ingress.network: "${doc.ingress.network}" is not the ingress network`)
    claim('ingress', doc.ingress)
  }
  return problems
}

function checkServices (
  doc: DesiredState, networks: ReadonlyMap<string, { index: number, subnet: SubnetRange, network: Network }>, ipOwners: Map<string, string>
): string[] {
  const problems: string[] = []
  const ids = new Map<string, number>()
  const names = new Map<string, string>()
  const published = new Map<string, string>()
  doc.services.forEach((service, index) => {
    const at = `services[${index}]`
    const idOwner = ids.get(service.id)
    if (idOwner !== undefined) problems.push(`${at}.id: duplicate service id "${service.id}" (also services[${idOwner}])`)
    else ids.set(service.id, index)
    const nameOwner = names.get(service.name)
    if (nameOwner !== undefined) problems.push(`${at}.name: duplicate service name "${service.name}" (also ${nameOwner})`)
    else names.set(service.name, `${at}.name`)
    const seen = new Set<string>()
    service.networks.forEach((attachment, n) => {
      const where = `${at}.networks[${n}]`
      const owner = networks.get(attachment.network)
      if (!owner) {
        problems.push(`${where}.network: unknown network "${attachment.network}"`)
        return
      }
      if (seen.has(attachment.network)) problems.push(`${where}.network: service attached to network "${attachment.network}" twice`)
      seen.add(attachment.network)
      if (service.endpointMode === 'vip' && attachment.vip === undefined) problems.push(`${where}.vip: required in VIP endpoint mode`)
      if (service.endpointMode === 'dnsrr' && attachment.vip !== undefined) problems.push(`${where}.vip: a dnsrr service has no VIP`)
      if (attachment.vip !== undefined) {
        const outside = addressProblem(attachment.vip, owner.subnet, owner.network.subnet)
        if (outside) problems.push(`${where}.vip: ${outside}`)
        const key = `${attachment.network}/${attachment.vip}`
        const ipOwner = ipOwners.get(key)
        if (ipOwner) problems.push(`${where}.vip: duplicate IP ${attachment.vip} on network "${attachment.network}" (also ${ipOwner})`)
        else ipOwners.set(key, `${where}.vip`)
      }
    })
    const ports = new Set<string>()
    service.ports.forEach((p, n) => {
      if (p.published !== undefined) {
        const key = `${p.published}/${p.protocol}`
        const publisher = published.get(key)
        if (publisher !== undefined) problems.push(`${at}.ports[${n}].published: port ${p.published}/${p.protocol} is already published (also ${publisher})`)
        else published.set(key, `${at}.ports[${n}]`)
      }
      if (p.name === undefined) return
      const key = `${p.name}/${p.protocol}`
      if (ports.has(key)) problems.push(`${at}.ports[${n}].name: duplicate port name "${p.name}" for ${p.protocol}`)
      ports.add(key)
    })
  })
  const checkReference = (at: string, entry: { service?: string | undefined }): void => {
    if (entry.service !== undefined && !ids.has(entry.service)) problems.push(`${at}.service: unknown service "${entry.service}"`)
  }
  doc.endpoints.forEach((e, index) => checkReference(`endpoints[${index}]`, e))
  doc.remoteEndpoints.forEach((e, index) => checkReference(`remoteEndpoints[${index}]`, e))
  return problems
}

/** A subnet's first (network) and last (broadcast) addresses, as numbers. */
interface SubnetRange { readonly start: number, readonly end: number }

/** `ip` has passed the schema, so it parses. */
function addressProblem (ip: string, subnet: SubnetRange, subnetText: string): string | undefined {
  const address = parseIpv4(ip)!
  if (address < subnet.start || address > subnet.end) return `${ip} is outside subnet ${subnetText}`
  if (address === subnet.start) return `${ip} is the network address of ${subnetText}`
  if (address === subnet.end) return `${ip} is the broadcast address of ${subnetText}`
  return undefined
}

/**
 * Validates an untrusted document. Throws NETD_ERR_INVALID_DOCUMENT listing
 * every problem by field path; returns a frozen, normalised document.
 */
export function parseDesiredState (input: unknown): DesiredState {
  const parsed = desiredStateSchema.safeParse(input)
  if (!parsed.success) {
    const details = parsed.error.issues.map((issue) => `${formatPath(issue.path) || '(document)'}: ${issue.message}`)
    throw new NetdError('NETD_ERR_INVALID_DOCUMENT', `invalid desired-state document: ${details.join('; ')}`, details)
  }
  const problems = crossCheck(parsed.data)
  if (problems.length > 0) {
    throw new NetdError('NETD_ERR_INVALID_DOCUMENT', `invalid desired-state document: ${problems.join('; ')}`, problems)
  }
  return deepFreeze(parsed.data)
}

function deepFreeze<T> (value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner)
    Object.freeze(value)
  }
  return value
}
