/**
 * The user-facing specs the store keeps (a service's spec, and the part of it
 * each task carries), as zod schemas: the command schemas in commands.ts are
 * built from these, and the stored types are derived from them.
 *
 * Durations are milliseconds. Fields with defaults may be left out by the
 * proposer; the log holds the parsed, complete form, so a replay parses to
 * the same value.
 */
import { z } from 'zod'
import { Address4 } from 'ip-address'
import { ID_PATTERN } from './ids.ts'
import { DEFAULT_DRAIN_DELAY_MS, DEFAULT_STOP_GRACE_MS, servicePortSchema } from '../../netd/desired-state.ts'
import { healthcheckSchema, type Healthcheck } from '../../netd/health/health-spec.ts'

export const idSchema = z.string().regex(ID_PATTERN, 'must be 1-32 characters of a-z, 0-9, _ . - starting with a letter or digit')

/** A reference to an object by id or by name (hostname for nodes); resolved inside apply. */
export const refSchema = z.string().min(1).max(253)

export const ipv4Schema = z.string().refine((s) => /^\d+\.\d+\.\d+\.\d+$/.test(s) && Address4.isValid(s), 'must be an IPv4 address')

/** Any IPv4 CIDR; the rules for a network's subnet (prefix length, host bits) are checked by IPAM, with clearer messages. */
export const cidrSchema = z.string().refine((s) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(s) && Address4.isValid(s), 'must be an IPv4 CIDR like 10.0.0.0/8')

export const labelsSchema = z.record(z.string().min(1).max(128), z.string().max(1024))

/** Swarm's rule for service names: a DNS label, which is also how tasks find the service. */
export const serviceNameSchema = z.string().min(1).max(63)
  .regex(/^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$/, 'must be a DNS label: letters, digits, dashes and underscores, starting and ending with a letter or digit')

export const networkNameSchema = z.string().min(1).max(64)
  .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, 'must be letters, digits, _ . - starting with a letter or digit')

const dnsNameSchema = z.string().max(253)
  .refine((s) => s.split('.').every((label) => /^[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?$/.test(label)),
    'must be a DNS name: labels of letters, digits and dashes, separated by dots')

/** A service's ports are the ones each node's document carries: one schema for both. */
export const portConfigSchema = servicePortSchema

export const restartPolicySchema = z.strictObject({
  condition: z.enum(['none', 'on-failure', 'any']).default('any'),
  /** Wait this long after a task ends before starting its replacement. */
  delay: z.int().min(0).default(5000),
  /** Restarts of one slot before giving up; 0 is no limit. */
  maxAttempts: z.int().min(0).default(0),
  /** A task that ran at least this long resets the slot's restart count; 0 never resets. */
  window: z.int().min(0).default(0)
})

export const updateConfigSchema = z.strictObject({
  /** Tasks replaced at a time; 0 replaces all at once. */
  parallelism: z.int().min(0).default(1),
  /** Wait between batches, from the moment the last batch's tasks are all running. */
  delay: z.int().min(0).default(0),
  failureAction: z.enum(['pause', 'continue', 'rollback']).default('pause'),
  /** A new task that ends within this long of running, or is not running this long after it was created, failed. */
  monitor: z.int().min(0).default(5000),
  /** Failures tolerated, as a fraction of the service's tasks, before the failure action. */
  maxFailureRatio: z.number().min(0).max(1).default(0)
})

export const serviceModeSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('replicated'), replicas: z.int().min(0).max(100_000) }),
  z.strictObject({ kind: z.literal('global') })
])

export const serviceSpecSchema = z.strictObject({
  name: serviceNameSchema,
  labels: labelsSchema.default({}),
  image: z.string().min(1).max(1024),
  args: z.array(z.string()).default([]),
  /** `KEY=value` (or `KEY`, passed through from the node), as `docker service create --env`. */
  env: z.array(z.string().min(1)).default([]),
  workdir: z.string().optional(),
  user: z.string().optional(),
  mode: serviceModeSchema.default({ kind: 'replicated', replicas: 1 }),
  /** By network id or name in a command; the store keeps ids. The ingress network is joined implicitly, never named. */
  networks: z.array(z.strictObject({
    network: refSchema,
    aliases: z.array(dnsNameSchema).default([])
  })).default([]),
  /** `node.hostname==h1`, `node.role!=manager`, `node.id==…`, `node.labels.KEY==value`. */
  constraints: z.array(z.string().max(1024)).default([]),
  endpointMode: z.enum(['vip', 'dnsrr']).default('vip'),
  /** How a VIP or published port picks a task: rr round robin, sh source hashing (client affinity). */
  scheduler: z.enum(['rr', 'sh']).default('rr'),
  ports: z.array(portConfigSchema).default([]),
  restart: restartPolicySchema.prefault({}),
  update: updateConfigSchema.prefault({}),
  rollback: updateConfigSchema.prefault({}),
  /** Run by each task's node; the store only needs to know there is one (a task with one is ready once healthy). */
  healthcheck: healthcheckSchema.optional(),
  /** A stopping task's time out of DNS and load balancing before SIGTERM. */
  drainDelay: z.int().min(0).max(3_600_000).default(DEFAULT_DRAIN_DELAY_MS),
  /** Between SIGTERM and SIGKILL. */
  stopGracePeriod: z.int().min(0).max(3_600_000).default(DEFAULT_STOP_GRACE_MS)
})

export type PortConfig = z.output<typeof portConfigSchema>
export type RestartPolicy = z.output<typeof restartPolicySchema>
export type UpdateConfig = z.output<typeof updateConfigSchema>
export type ServiceMode = z.output<typeof serviceModeSchema>
export type ServiceSpec = z.output<typeof serviceSpecSchema>
export type ServiceSpecInput = z.input<typeof serviceSpecSchema>

/**
 * What a task runs: the part of its service's spec that a change of requires
 * new tasks (a rolling update). Replicas, update and rollback config, restart
 * policy, labels, scheduler and ports are not in it: changing them updates the
 * service in place. The ingress network is in `networks` when the service
 * publishes ports, so starting or stopping publishing replaces the tasks.
 */
export interface TaskSpec {
  image: string
  args: string[]
  env: string[]
  workdir?: string
  user?: string
  healthcheck?: Healthcheck
  drainDelay: number
  stopGracePeriod: number
  constraints: string[]
  networks: Array<{ network: string, aliases: string[] }>
}

export function publishesPorts (spec: ServiceSpec): boolean {
  return spec.ports.some((p) => p.published !== undefined)
}

/** The networks a service (and each of its tasks) is on: its own, then ingress when it publishes ports. */
export function serviceNetworkIds (spec: ServiceSpec, ingressNetwork: string): string[] {
  const own = spec.networks.map((n) => n.network)
  return publishesPorts(spec) ? [...own, ingressNetwork] : own
}

export function taskSpecOf (spec: ServiceSpec, ingressNetwork: string): TaskSpec {
  return {
    image: spec.image,
    args: spec.args,
    env: spec.env,
    ...(spec.workdir === undefined ? {} : { workdir: spec.workdir }),
    ...(spec.user === undefined ? {} : { user: spec.user }),
    ...(spec.healthcheck === undefined ? {} : { healthcheck: spec.healthcheck }),
    drainDelay: spec.drainDelay,
    stopGracePeriod: spec.stopGracePeriod,
    constraints: spec.constraints,
    networks: [
      ...spec.networks.map((n) => ({ network: n.network, aliases: n.aliases })),
      ...(publishesPorts(spec) ? [{ network: ingressNetwork, aliases: [] }] : [])
    ]
  }
}

/** JSON with object keys sorted: equal values give equal strings, whatever order their keys were written in. */
export function canonicalJson (value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null'
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
}

const specKeys = new WeakMap<object, string>()

/** canonicalJson, remembered per object: stored task specs are immutable and shared, so this is computed once each. */
export function specKey (spec: TaskSpec): string {
  let key = specKeys.get(spec)
  if (key === undefined) specKeys.set(spec, key = canonicalJson(spec))
  return key
}
