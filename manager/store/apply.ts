/**
 * apply(state, command, now): the replicated state machine's transition
 * function. Pure and deterministic: the same state, command and time give the
 * same outcome on every replica and on every replay.
 *
 *  - It never throws. A command that fails its schema, names something that
 *    does not exist, or cannot be carried out (overlapping subnet, exhausted
 *    pool, port in use, …) returns the state it was given, unchanged, and an
 *    error { code, message } for the proposer.
 *  - It never changes its input: the new state shares what did not change.
 *  - A command that changes nothing (a repeated report) returns the same state
 *    object, with `changed: false`; `state.index` counts only changes.
 *  - `now` must be the time recorded with the command in the log entry (the
 *    proposer's clock), never the applying replica's clock.
 *  - Ids of new objects come inside the command (ids.ts).
 */
import { safeParseCommand, type Command } from './commands.ts'
import { StoreError, type StoreErrorInfo } from './errors.ts'
import type { ClusterState } from './state.ts'
import { Tx } from './tx.ts'
import { clusterInit, nodeJoin, nodeLeader, nodeRemove, nodeStatus, nodeUpdate } from './apply-nodes.ts'
import { networkCreate, networkRemove } from './apply-networks.ts'
import { serviceCreate, serviceRemove, serviceRollback, serviceScale, serviceUpdate, serviceUpdateState } from './apply-services.ts'
import { taskAllocate, taskAssign, taskCreate, taskHealth, taskRemove, taskShutdown, taskStatus } from './apply-tasks.ts'

/** What a handler tells the proposer, besides success. */
export interface CommandResult {
  /** The object created or changed. */
  readonly id?: string
  /** Facts the proposer may show: a network's subnet, a service's VIPs, … */
  readonly detail?: Readonly<Record<string, unknown>>
}

export type ApplyOutcome =
  /** `changed` is false for a command that changed nothing (a repeated report): `state` is then the one passed in. */
  | { readonly state: ClusterState, readonly result: CommandResult & { readonly changed: boolean }, readonly error?: undefined }
  | { readonly state: ClusterState, readonly error: StoreErrorInfo, readonly result?: undefined }

type Handler = (tx: Tx, command: never) => CommandResult

const HANDLERS: { readonly [K in Command['type']]: (tx: Tx, command: Extract<Command, { type: K }>) => CommandResult } = {
  'cluster.init': clusterInit,
  'node.join': nodeJoin,
  'node.update': nodeUpdate,
  'node.status': nodeStatus,
  'node.leader': nodeLeader,
  'node.remove': nodeRemove,
  'network.create': networkCreate,
  'network.remove': networkRemove,
  'service.create': serviceCreate,
  'service.update': serviceUpdate,
  'service.scale': serviceScale,
  'service.rollback': serviceRollback,
  'service.update-state': serviceUpdateState,
  'service.remove': serviceRemove,
  'task.create': taskCreate,
  'task.allocate': taskAllocate,
  'task.assign': taskAssign,
  'task.status': taskStatus,
  'task.shutdown': taskShutdown,
  'task.remove': taskRemove,
  'task.health': taskHealth
}

export function apply (state: ClusterState, command: unknown, now: number): ApplyOutcome {
  if (typeof now !== 'number' || !Number.isFinite(now)) {
    return { state, error: { code: 'STORE_ERR_INVALID_COMMAND', message: `the command's time ${String(now)} is not a time` } }
  }
  const parsed = safeParseCommand(command)
  if (!parsed.ok) return { state, error: { code: parsed.code, message: parsed.message } }
  const cmd = parsed.command
  if (state.cluster === null && cmd.type !== 'cluster.init') {
    return { state, error: { code: 'STORE_ERR_NOT_INITIALIZED', message: 'this node is not part of a cluster: initialise one first' } }
  }
  const tx = new Tx(state, now)
  try {
    const handler = HANDLERS[cmd.type] as Handler
    const result = handler(tx, cmd as never)
    return { state: tx.commit(), result: { ...result, changed: tx.changed } }
  } catch (error) {
    if (error instanceof StoreError) return { state, error: { code: error.code, message: error.message } }
    return { state, error: { code: 'STORE_ERR_INTERNAL', message: `internal error applying ${cmd.type}: ${error instanceof Error ? error.message : String(error)}` } }
  }
}

/** Applies commands in order, as the log would; stops at nothing (refused commands are skipped), and returns the outcomes. */
export function applyAll (state: ClusterState, commands: readonly unknown[], now: number): { state: ClusterState, outcomes: ApplyOutcome[] } {
  const outcomes: ApplyOutcome[] = []
  for (const command of commands) {
    const outcome = apply(state, command, now)
    outcomes.push(outcome)
    state = outcome.state
  }
  return { state, outcomes }
}
