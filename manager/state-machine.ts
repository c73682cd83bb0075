/**
 * The manager's replicated state machine: the store's `apply` behind the
 * interface ReplicatedLog drives (manager/raft/replicated-log.ts).
 *
 * A log entry is `{command, now}`: the command and the proposer's clock when
 * it proposed it. Every member applies `apply(state, command, now)` with that
 * recorded time, never its own clock, so replicas and replays stamp the same
 * times (manager/store/README.md, "Contract with the Raft layer").
 *
 * `apply` never throws and a refused command leaves the state as it was: the
 * refusal is this entry's outcome, returned to the proposer. A snapshot is the
 * state as JSON. Listeners hear of every change after it is applied, in log
 * order; they must not throw (a throw is logged by the caller's wrapper).
 */
import { apply, type CommandResult } from './store/apply.ts'
import type { StoreErrorInfo } from './store/errors.ts'
import { emptyState, STATE_FORMAT, type ClusterState } from './store/state.ts'
import type { StateMachine } from './raft/replicated-log.ts'

export interface LogEntry {
  readonly command: unknown
  /** The proposer's clock (ms since the epoch) when it proposed the command. */
  readonly now: number
}

export type EntryOutcome =
  | { readonly ok: true, readonly result: CommandResult & { readonly changed: boolean } }
  | { readonly ok: false, readonly error: StoreErrorInfo }

export type StateListener = (state: ClusterState) => void

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export class StoreStateMachine implements StateMachine<LogEntry, EntryOutcome> {
  #state: ClusterState = emptyState()
  readonly #listeners = new Set<StateListener>()

  get state (): ClusterState {
    return this.#state
  }

  /** Called after each change (and after a restore). Returns the unsubscribe. */
  onChange (listener: StateListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  apply (entry: LogEntry): EntryOutcome {
    const now = typeof entry === 'object' && entry !== null ? entry.now : Number.NaN
    const command = typeof entry === 'object' && entry !== null ? entry.command : entry
    const outcome = apply(this.#state, command, now)
    if (outcome.error !== undefined) return { ok: false, error: outcome.error }
    if (outcome.result.changed) {
      this.#state = outcome.state
      this.#notify()
    }
    return { ok: true, result: outcome.result }
  }

  snapshot (): Uint8Array {
    return encoder.encode(JSON.stringify(this.#state))
  }

  restore (data: Uint8Array): void {
    const state = JSON.parse(decoder.decode(data)) as ClusterState
    if (state?.format !== STATE_FORMAT) throw new Error(`snapshot holds state format ${String(state?.format)}, this manager reads ${STATE_FORMAT}`)
    this.#state = state
    this.#notify()
  }

  #notify (): void {
    for (const listener of this.#listeners) listener(this.#state)
  }
}
