/**
 * The commands of the replicated log: every change to the cluster state is
 * one of these, validated against its schema at the API edge
 * (`parseCommand`) and again inside apply (a log entry is never trusted).
 *
 * Ids of new objects are in the command, chosen by the proposer (ids.ts).
 * References to existing objects take an id or a name. Heartbeats are not
 * commands: the leader keeps liveness in memory and logs only the
 * transitions (`node.status`).
 *
 * Who proposes what:
 *  - users, through the control API: cluster.init, node.update, node.remove,
 *    network.*, service.create/update/scale/rollback/remove;
 *  - the dispatcher: node.join, task.status (a node's report), task.health;
 *  - the orchestrator: node.status, node.leader, task.create/allocate/assign/
 *    shutdown/remove, service.update-state, service.rollback (automatic).
 */
import { z } from 'zod'
import { StoreError } from './errors.ts'
import {
  cidrSchema, idSchema, ipv4Schema, labelsSchema, networkNameSchema, refSchema, serviceSpecSchema
} from './spec.ts'
import { TASK_STATES } from './state.ts'
import { healthReportSchema } from '../../netd/health/health-spec.ts'

const joiningNode = z.strictObject({
  id: idSchema,
  hostname: z.string().min(1).max(253),
  /** Underlay address. */
  addr: ipv4Schema,
  role: z.enum(['worker', 'manager']).default('worker'),
  labels: labelsSchema.default({})
})

export const commandSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('cluster.init'),
    clusterId: idSchema,
    /** The first node: a manager, and the leader. */
    node: joiningNode.omit({ role: true }),
    ingressNetworkId: idSchema,
    /** `--default-addr-pool` (Swarm's default 10.0.0.0/8) and `--default-addr-pool-mask-length` (24). */
    defaultAddrPool: z.array(cidrSchema).min(1).default(['10.0.0.0/8']),
    subnetSize: z.int().min(8).max(30).default(24),
    /** Routed on the underlay: default-pool subnets that overlap these are skipped. */
    avoid: z.array(cidrSchema).default([]),
    /** The ingress network's subnet; by default the first free one of the pools (10.0.0.0/24). */
    ingressSubnet: cidrSchema.optional(),
    ingressGateway: ipv4Schema.optional(),
    taskHistoryLimit: z.int().min(1).max(100).default(5)
  }),
  z.strictObject({ type: z.literal('node.join'), node: joiningNode }),
  z.strictObject({
    type: z.literal('node.update'),
    node: refSchema,
    availability: z.enum(['active', 'pause', 'drain']).optional(),
    role: z.enum(['worker', 'manager']).optional(),
    labelsAdd: labelsSchema.default({}),
    labelsRemove: z.array(z.string().min(1)).default([]),
    version: z.int().min(0).optional()
  }),
  z.strictObject({ type: z.literal('node.status'), node: refSchema, status: z.enum(['ready', 'down']), message: z.string().max(1024).default('') }),
  /** Which manager leads the Raft group (proposed by a new leader). */
  z.strictObject({ type: z.literal('node.leader'), node: refSchema }),
  z.strictObject({ type: z.literal('node.remove'), node: refSchema, force: z.boolean().default(false) }),
  z.strictObject({
    type: z.literal('network.create'),
    id: idSchema,
    name: networkNameSchema,
    driver: z.literal('overlay').default('overlay'),
    subnet: cidrSchema.optional(),
    gateway: ipv4Schema.optional(),
    attachable: z.boolean().default(false),
    labels: labelsSchema.default({})
  }),
  z.strictObject({ type: z.literal('network.remove'), network: refSchema }),
  z.strictObject({ type: z.literal('service.create'), id: idSchema, spec: serviceSpecSchema }),
  z.strictObject({
    type: z.literal('service.update'),
    service: refSchema,
    spec: serviceSpecSchema,
    /** The version the change was made against: refused if the service changed since. */
    version: z.int().min(0).optional()
  }),
  z.strictObject({ type: z.literal('service.scale'), service: refSchema, replicas: z.int().min(0).max(100_000) }),
  z.strictObject({
    type: z.literal('service.rollback'),
    service: refSchema,
    /** Started by the orchestrator because an update failed (failure action rollback). */
    automatic: z.boolean().default(false),
    message: z.string().max(1024).optional()
  }),
  z.strictObject({
    type: z.literal('service.update-state'),
    service: refSchema,
    state: z.enum(['paused', 'completed', 'rollback_paused', 'rollback_completed']),
    message: z.string().max(1024).default('')
  }),
  z.strictObject({ type: z.literal('service.remove'), service: refSchema }),
  z.strictObject({
    type: z.literal('task.create'),
    id: idSchema,
    service: idSchema,
    /** Replicated services. */
    slot: z.int().min(1).optional(),
    /** Global services: the node it is for. */
    node: idSchema.optional(),
    /** The task this one replaces (same slot or node): told to shut down in the same step. */
    replaces: idSchema.optional(),
    /** Restarts of this slot before this task (restart policy's max attempts count these). */
    restarts: z.int().min(0).default(0)
  }),
  /** Retry a task's address allocation after it failed. */
  z.strictObject({ type: z.literal('task.allocate'), task: idSchema }),
  z.strictObject({ type: z.literal('task.assign'), task: idSchema, node: idSchema }),
  z.strictObject({
    type: z.literal('task.status'),
    task: idSchema,
    state: z.enum(TASK_STATES),
    message: z.string().max(1024).default(''),
    error: z.string().max(4096).nullable().default(null),
    /** The reporting node: refused unless the task is assigned to it. Left out by the manager itself. */
    node: idSchema.optional()
  }),
  z.strictObject({ type: z.literal('task.shutdown'), task: idSchema, message: z.string().max(1024).default('') }),
  z.strictObject({ type: z.literal('task.remove'), task: idSchema }),
  z.strictObject({ type: z.literal('task.health'), task: idSchema, report: healthReportSchema, node: idSchema.optional() })
])

/** A validated command, as the log holds it (defaults filled in). */
export type Command = z.output<typeof commandSchema>
/** A command as a proposer may write it: fields with defaults may be left out. */
export type CommandInput = z.input<typeof commandSchema>
export type CommandType = Command['type']
export type CommandOf<T extends CommandType> = Extract<Command, { type: T }>

export const COMMAND_TYPES: readonly CommandType[] = commandSchema.options.map((o) => o.shape.type.value)

function formatPath (path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, key) =>
    typeof key === 'number' ? `${out}[${key}]` : out === '' ? String(key) : `${out}.${String(key)}`, '')
}

export type CommandParse = { ok: true, command: Command } | { ok: false, code: 'STORE_ERR_INVALID_COMMAND', message: string, details: string[] }

export function safeParseCommand (input: unknown): CommandParse {
  const parsed = commandSchema.safeParse(input)
  if (parsed.success) return { ok: true, command: parsed.data }
  const details = parsed.error.issues.map((issue) => `${formatPath(issue.path) || '(command)'}: ${issue.message}`)
  const type = typeof input === 'object' && input !== null && typeof (input as { type?: unknown }).type === 'string' ? (input as { type: string }).type : 'command'
  return { ok: false, code: 'STORE_ERR_INVALID_COMMAND', message: `invalid ${type}: ${details.join('; ')}`, details }
}

/** For the API edge: validates a command, throwing STORE_ERR_INVALID_COMMAND with every problem by field path. */
export function parseCommand (input: unknown): Command {
  const parsed = safeParseCommand(input)
  if (!parsed.ok) throw new StoreError(parsed.code, parsed.message)
  return parsed.command
}
