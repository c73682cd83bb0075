/**
 * Drives the pure orchestrator (orchestrator/orchestrator.ts) on the leader,
 * as its README says: a round after each applied change (coalesced), at the
 * round's `wakeAt`, and at least every `tickMs` (so heartbeat deadlines are
 * noticed); the round's commands are proposed in order, and the next round
 * starts only once they are applied.
 *
 * A round first makes sure the state names this manager as the leader
 * (node.leader), then proposes what `plan` returns. A command the store
 * refuses when it is applied (the state moved on since the round was
 * planned) is dropped; the next round plans again from the new state.
 */
import type { Logger } from 'pino'
import { plan, type Liveness } from './orchestrator/orchestrator.ts'
import type { CommandInput } from './store/commands.ts'
import type { StoreStateMachine } from './state-machine.ts'

export interface OrchestratorLoopOptions {
  readonly machine: StoreStateMachine
  readonly nodeId: string
  readonly isLeader: () => boolean
  readonly propose: (command: CommandInput) => Promise<unknown>
  /** Heartbeats by node, on this manager's clock. */
  readonly lastSeen: Map<string, number>
  readonly gracePeriodMs: number
  readonly tickMs: number
  /** Default RECONNECT_ALLOWANCE_MS. */
  readonly reconnectAllowanceMs?: number
  readonly log: Logger
  readonly now?: () => number
}

/** After a change, wait this long for more before planning: one round for a burst. */
const COALESCE_MS = 5
/**
 * A node whose session broke while this manager was away retries with backoff (at most 5 s,
 * netd/cluster/agent.ts): it gets that long, on top of the grace period, once this manager
 * starts counting, before it can be marked down.
 */
export const RECONNECT_ALLOWANCE_MS = 5000

export class OrchestratorLoop {
  readonly #options: OrchestratorLoopOptions
  readonly #log: Logger
  readonly #now: () => number
  readonly #since: number
  #running: Promise<void> | null = null
  #again = false
  #soon: NodeJS.Timeout | null = null
  #wake: NodeJS.Timeout | null = null
  readonly #tick: NodeJS.Timeout
  readonly #unsubscribe: () => void
  #closed = false

  constructor (options: OrchestratorLoopOptions) {
    this.#options = options
    this.#log = options.log.child({ component: 'orchestrator' })
    this.#now = options.now ?? Date.now
    this.#since = this.#now() + (options.reconnectAllowanceMs ?? RECONNECT_ALLOWANCE_MS)
    this.#unsubscribe = options.machine.onChange(() => this.kick())
    this.#tick = setInterval(() => this.kick(0), options.tickMs)
    this.#tick.unref()
  }

  /** Asks for a round soon. */
  kick (delayMs = COALESCE_MS): void {
    if (this.#closed) return
    if (this.#running !== null) {
      this.#again = true
      return
    }
    if (this.#soon !== null) return
    this.#soon = setTimeout(() => {
      this.#soon = null
      this.#start()
    }, delayMs)
  }

  /** Resolves when no round is in progress (tests, shutdown). */
  async idle (): Promise<void> {
    while (this.#running !== null) await this.#running
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#unsubscribe()
    clearInterval(this.#tick)
    if (this.#soon !== null) clearTimeout(this.#soon)
    if (this.#wake !== null) clearTimeout(this.#wake)
    await this.idle()
  }

  #start (): void {
    if (this.#closed || this.#running !== null) return
    this.#running = this.#round()
      .catch((error: unknown) => this.#log.error({ err: error }, 'orchestrator round failed'))
      .finally(() => {
        this.#running = null
        if (this.#again) {
          this.#again = false
          this.kick()
        }
      })
  }

  async #round (): Promise<void> {
    const { machine, nodeId, isLeader, propose, lastSeen } = this.#options
    if (!isLeader()) return
    const state = machine.state
    if (state.cluster === null) return
    const now = this.#now()
    // The leader's own node is heard from as long as it leads.
    lastSeen.set(nodeId, now)
    const self = state.nodes[nodeId]
    if (self !== undefined && self.managerStatus !== null && !self.managerStatus.leader) {
      await propose({ type: 'node.leader', node: nodeId }).catch((error: unknown) => this.#log.warn({ err: error }, 'could not record the leader'))
      return // the change starts the next round
    }
    const liveness: Liveness = { lastSeen, since: this.#since, gracePeriod: this.#options.gracePeriodMs }
    const round = plan(state, now, liveness)
    for (const { command, error } of round.rejected) this.#log.error({ command: command.type, code: error.code, reason: error.message }, 'the orchestrator planned a command the store refuses (a bug)')
    // A silent node is Down the moment its grace period ends, not at the next tick after it.
    const deadlines = Object.values(state.nodes)
      .filter((node) => node.status === 'ready')
      .map((node) => Math.max(lastSeen.get(node.id) ?? this.#since, this.#since) + this.#options.gracePeriodMs + 1)
    const wakeAt = Math.min(round.wakeAt ?? Infinity, ...deadlines)
    if (wakeAt !== Infinity) this.#wakeAt(wakeAt)
    if (round.commands.length === 0) return
    this.#log.debug({ commands: round.commands.map((c) => c.type) }, 'orchestrator round')
    const results = await Promise.allSettled(round.commands.map(async (command) => await propose(command)))
    for (const [i, result] of results.entries()) {
      if (result.status === 'rejected') this.#log.debug({ command: round.commands[i]!.type, err: result.reason }, 'a planned command was refused when applied')
    }
  }

  #wakeAt (at: number): void {
    if (this.#wake !== null) clearTimeout(this.#wake)
    this.#wake = setTimeout(() => {
      this.#wake = null
      this.kick(0)
    }, Math.max(0, at - this.#now()) + 1)
    this.#wake.unref()
  }
}
