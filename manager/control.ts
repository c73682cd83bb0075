/**
 * The control API: what a user (the `weft` CLI, through a manager's netd)
 * may ask of the manager. Pure checks, made before anything reaches the log:
 *
 *  - only the commands users send (node update/rm, network and service
 *    commands) are accepted; the dispatcher's and the orchestrator's are not;
 *  - the command is validated (STORE_ERR_INVALID_COMMAND) and tried against
 *    the current state: a command the store would refuse is refused here
 *    with the store's own code and message, and never written to the log.
 *    (The store decides again when the entry is applied: the state may have
 *    changed in between.)
 *  - promoting a worker is refused: weft runs one manager for now.
 */
import { z } from 'zod'
import { apply } from './store/apply.ts'
import { parseCommand, type Command } from './store/commands.ts'
import { StoreError } from './store/errors.ts'
import { findNode } from './store/queries.ts'
import type { ClusterState } from './store/state.ts'
import { ManagerError } from './errors.ts'

export const USER_COMMANDS: ReadonlySet<Command['type']> = new Set([
  'node.update', 'node.remove',
  'network.create', 'network.remove',
  'service.create', 'service.update', 'service.scale', 'service.rollback', 'service.remove'
])

/** What a node reports about itself when it registers (kept in the manager's memory, shown by `node inspect`). */
export const nodeDescriptionSchema = z.strictObject({
  hostname: z.string().min(1).max(253),
  platform: z.strictObject({ architecture: z.string().max(64), os: z.string().max(64) }),
  resources: z.strictObject({ nanoCPUs: z.number().int().min(0), memoryBytes: z.number().int().min(0) }),
  engineVersion: z.string().max(64)
})

export type NodeDescription = z.infer<typeof nodeDescriptionSchema>

export const controlRequestSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('propose'), command: z.unknown() }),
  z.strictObject({ op: z.literal('state') }),
  z.strictObject({ op: z.literal('join-token'), role: z.enum(['worker', 'manager']), rotate: z.boolean().default(false) }),
  /** The output of these tasks (ids), each from its node: `service logs`. */
  z.strictObject({ op: z.literal('logs'), tasks: z.array(z.string().min(1).max(64)).max(1000), tail: z.int().min(0).optional() })
])

export type ControlRequest = z.input<typeof controlRequestSchema>

/** What `op: state` answers: the whole cluster state and what only the manager's memory holds. */
export interface ClusterSnapshot {
  readonly state: ClusterState
  readonly descriptions: Readonly<Record<string, NodeDescription>>
  /** `host:port` other nodes join and connect to. */
  readonly managerAddr: string
  /** The node id of the manager that answered. */
  readonly manager: string
}

export function parseControlRequest (input: unknown): z.output<typeof controlRequestSchema> {
  const parsed = controlRequestSchema.safeParse(input)
  if (!parsed.success) {
    throw new ManagerError('MANAGER_ERR_INVALID_REQUEST', `invalid control request: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ')}`)
  }
  return parsed.data
}

/** The command, validated and checked against `state` at `now`; throws the reason it would be refused. */
export function checkUserCommand (state: ClusterState, input: unknown, now: number): Command {
  const command = parseCommand(input)
  if (!USER_COMMANDS.has(command.type)) {
    throw new ManagerError('MANAGER_ERR_INVALID_REQUEST', `${command.type} is not a command users send`)
  }
  if (command.type === 'node.update' && command.role === 'manager') {
    const node = findNode(state, command.node)
    if (node.role !== 'manager') {
      throw new ManagerError('MANAGER_ERR_UNSUPPORTED', `node ${node.hostname} cannot be promoted: weft runs a single manager for now (multi-manager swarms are not supported yet)`)
    }
  }
  const outcome = apply(state, command, now)
  if (outcome.error !== undefined) throw new StoreError(outcome.error.code, outcome.error.message)
  return command
}
