/**
 * The replicated log as callers use it: `propose(command)` resolves with the
 * state machine's result once the command is committed by the group *and*
 * applied here, so a resolved proposal survives any crash (SIGKILL included)
 * of any minority of members. A group of one takes the same path as a group of
 * five: propose → append + fsync → commit → apply → resolve.
 *
 * It hosts the pure core (core.ts) with the I/O the core asks for, one ready()
 * at a time, in the order that makes acknowledgements honest:
 *   1. persist (wal.ts: snapshot, entries, hard state; fsync);
 *   2. send the messages (votes and acknowledgements only now);
 *   3. apply committed entries to the state machine, resolve their proposals;
 *   4. advance(); compact when enough has been applied since the last snapshot.
 * Everything that reaches the core (ticks, peers' messages, proposals) waits
 * in one queue while a ready is being persisted, and is fed in one go
 * afterwards, so concurrent proposals share one fsync.
 *
 * Commands are JSON. The state machine must be deterministic: every member
 * applies the same commands in the same order and must reach the same state.
 * `apply` reports a command it refuses through its result; a throw is
 * treated as that command's result (the proposer's promise rejects with it)
 * and logged, since every member throws alike.
 */
import { pino, type Logger } from 'pino'
import { z } from 'zod'
import { decodeConf } from './conf.ts'
import { bootstrapState, RaftCore, type CoreStatus } from './core.ts'
import { RaftError } from './errors.ts'
import type { Transport } from './transport.ts'
import type { ConfChange, Entry, Message, NodeId, PersistedState, Role } from './types.ts'
import { Wal } from './wal.ts'

export interface StateMachine<C, R> {
  /** Applies one committed command; `index` is its position in the log (increasing, without gaps except across a restore). */
  apply (command: C, index: number): R
  /** The whole state, to be given to restore() on this or another member. */
  snapshot (): Uint8Array
  /** Replaces the whole state (at open, from the last snapshot; later, from a snapshot the leader sent). */
  restore (data: Uint8Array): void
}

export const replicatedLogOptionsSchema = z.strictObject({
  /** Where the write-ahead log and snapshots live; one directory per member. */
  dir: z.string().min(1),
  id: z.string().min(1).max(128),
  /**
   * The founding members (self included), written to the log on the very
   * first start only; ignored once `dir` holds a log. A member that joins an
   * existing group passes [] and waits to be added (addMember on the leader).
   * Never pass a founding list to a joiner: two different first entries would
   * break Log Matching.
   */
  peers: z.array(z.string().min(1).max(128)),
  stateMachine: z.custom<StateMachine<unknown, unknown>>((v) => v !== null && typeof v === 'object' &&
    ['apply', 'snapshot', 'restore'].every((f) => typeof (v as Record<string, unknown>)[f] === 'function'), 'must have apply, snapshot and restore'),
  /** Needed unless the group is this member alone. */
  transport: z.custom<Transport>((v) => v !== null && typeof v === 'object' &&
    typeof (v as Transport).send === 'function' && typeof (v as Transport).onMessage === 'function', 'must have send and onMessage').optional(),
  log: z.custom<Logger>((v) => v !== null && typeof v === 'object' && typeof (v as Logger).child === 'function', 'must be a pino logger').optional(),
  /** Milliseconds per tick of the core. */
  tickMs: z.number().int().min(1).max(10_000).default(100),
  electionTicks: z.number().int().min(2).max(1000).default(10),
  heartbeatTicks: z.number().int().min(1).max(1000).default(1),
  preVote: z.boolean().default(true),
  checkQuorum: z.boolean().default(true),
  /** Compact once this many entries are applied past the last snapshot; 0 never. */
  snapshotEvery: z.number().int().min(0).default(10_000),
  segmentBytes: z.number().int().min(4096).default(64 << 20),
  /** For election timeouts; seeded in tests. */
  random: z.custom<() => number>((v) => typeof v === 'function', 'must be a function').default(() => Math.random)
}).refine((o) => o.heartbeatTicks < o.electionTicks, { path: ['heartbeatTicks'], message: 'must be less than electionTicks' })

export type ReplicatedLogOptions<C, R> = Omit<z.input<typeof replicatedLogOptionsSchema>, 'stateMachine' | 'peers'> & {
  readonly peers: readonly NodeId[]
  readonly stateMachine: StateMachine<C, R>
}

type ParsedOptions = Readonly<z.output<typeof replicatedLogOptionsSchema>>

export interface ReplicatedLogStatus extends CoreStatus {
  /** Proposals and membership changes waiting to be applied. */
  readonly pending: number
  /** Set once the write-ahead log failed: nothing more is acknowledged. */
  readonly failed: string | null
}

interface Waiter {
  readonly term: number
  readonly resolve: (result: unknown) => void
  readonly reject: (error: Error) => void
}

type Work =
  | { readonly kind: 'tick' }
  | { readonly kind: 'message', readonly message: Message }
  | { readonly kind: 'propose', readonly data: Uint8Array, readonly resolve: (r: unknown) => void, readonly reject: (e: Error) => void }
  | { readonly kind: 'conf', readonly change: ConfChange, readonly resolve: (r: unknown) => void, readonly reject: (e: Error) => void }
  | { readonly kind: 'transfer', readonly to: NodeId, readonly resolve: (r: unknown) => void, readonly reject: (e: Error) => void }

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export function parseReplicatedLogOptions (input: unknown): ParsedOptions {
  const parsed = replicatedLogOptionsSchema.safeParse(input)
  if (!parsed.success) {
    const details = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`)
    throw new RaftError('RAFT_ERR_CONFIG', `invalid replicated log options: ${details.join('; ')}`, details)
  }
  return Object.freeze(parsed.data)
}

export class ReplicatedLog<C, R> {
  readonly #options: ParsedOptions
  readonly #core: RaftCore
  readonly #wal: Wal
  readonly #machine: StateMachine<C, R>
  readonly #transport: Transport | null
  readonly #log: Logger
  #inbox: Work[] = []
  readonly #waiters = new Map<number, Waiter>()
  #running: Promise<void> | null = null
  #timer: NodeJS.Timeout | null = null
  #closed = false
  #failed: RaftError | null = null
  #lastRole: Role
  #lastLeader: NodeId | null

  private constructor (options: ParsedOptions, core: RaftCore, wal: Wal, log: Logger) {
    this.#options = options
    this.#core = core
    this.#wal = wal
    this.#machine = options.stateMachine as StateMachine<C, R>
    this.#transport = options.transport ?? null
    this.#log = log
    this.#lastRole = core.role
    this.#lastLeader = core.leaderId
  }

  /**
   * Opens the member's log in `dir` (recovering it, or founding the group with
   * `peers` on a first start), restores the state machine from the last
   * snapshot and re-applies the committed entries after it, and starts the
   * clock. Resolves once the state machine has caught up with what was
   * committed before the last stop.
   */
  static async open<C, R> (input: ReplicatedLogOptions<C, R>): Promise<ReplicatedLog<C, R>> {
    const options = parseReplicatedLogOptions(input)
    const log = (options.log ?? pino({ level: 'silent' })).child({ component: 'raft', member: options.id })
    const { wal, recovered } = await Wal.open(options.dir, { segmentBytes: options.segmentBytes })
    if (recovered.tornBytes > 0) log.warn({ tornBytes: recovered.tornBytes }, 'dropped a torn write at the end of the log')
    if (recovered.removedFiles.length > 0) log.info({ files: recovered.removedFiles }, 'removed files left by an interrupted compaction')
    let state: PersistedState = recovered
    try {
      const fresh = state.hardState.term === 0 && state.entries.length === 0 && state.snapshot === null
      if (fresh && options.peers.length > 0) {
        state = bootstrapState(options.peers)
        await wal.save({ entries: state.entries, hardState: state.hardState })
        log.info({ peers: options.peers }, 'founded the group')
      }
      const core = new RaftCore({
        id: options.id,
        random: options.random,
        restored: state,
        electionTicks: options.electionTicks,
        heartbeatTicks: options.heartbeatTicks,
        preVote: options.preVote,
        checkQuorum: options.checkQuorum
      })
      const others = core.voters.filter((v) => v !== options.id)
      if (others.length > 0 && options.transport === undefined) throw new RaftError('RAFT_ERR_CONFIG', `transport: needed to reach ${others.join(', ')}`)
      if (state.snapshot !== null) options.stateMachine.restore(state.snapshot.data)
      const replicated = new ReplicatedLog<C, R>(options, core, wal, log)
      options.transport?.onMessage((message) => { replicated.#receive(message) })
      // Alone in the group: no one to wait for, lead now rather than after an election timeout.
      if (core.voters.length === 1 && core.voters[0] === options.id) core.campaign()
      replicated.#timer = setInterval(() => { replicated.#enqueue({ kind: 'tick' }) }, options.tickMs)
      await replicated.#kick()
      if (replicated.#failed !== null) throw replicated.#failed
      log.info({ term: core.term, commit: core.commitIndex, applied: core.appliedIndex, snapshot: core.snapshotIndex, voters: core.voters }, 'opened')
      return replicated
    } catch (error) {
      await wal.close()
      throw error
    }
  }

  get id (): NodeId { return this.#options.id }
  get isLeader (): boolean { return this.#core.isLeader }
  get leaderId (): NodeId | null { return this.#core.leaderId }

  status (): ReplicatedLogStatus {
    return { ...this.#core.status(), pending: this.#waiters.size, failed: this.#failed?.message ?? null }
  }

  /**
   * Replicates `command`; resolves with apply()'s result once it is committed
   * and applied on this member. Rejects with NotLeaderError (carrying the
   * leader's id when known) on a member that does not lead, RAFT_ERR_DROPPED
   * when a new leader replaced the entry, RAFT_ERR_CLOSED or RAFT_ERR_STORAGE.
   */
  propose (command: C): Promise<R> {
    const text = JSON.stringify(command)
    if (text === undefined) return Promise.reject(new RaftError('RAFT_ERR_DECODE', 'a command must be JSON-serialisable'))
    return new Promise<R>((resolve, reject) => {
      this.#enqueue({ kind: 'propose', data: encoder.encode(text), resolve: resolve as (r: unknown) => void, reject })
    })
  }

  /** Adds a voter (on the leader); resolves once the change is committed and applied here. */
  addMember (id: NodeId): Promise<void> {
    return this.#changeMembership({ type: 'add', node: id })
  }

  /** Removes a voter (on the leader); a leader removing itself steps down once the change commits. */
  removeMember (id: NodeId): Promise<void> {
    return this.#changeMembership({ type: 'remove', node: id })
  }

  /** Asks the leader to hand over to `id` (e.g. before demoting itself); resolves once asked, not once done. */
  transferLeadership (id: NodeId): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#enqueue({ kind: 'transfer', to: id, resolve: resolve as (r: unknown) => void, reject })
    })
  }

  /** Stops the clock and the transport handler, waits for the write in progress, and rejects what is pending. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#timer !== null) clearInterval(this.#timer)
    await this.#running
    this.#abandonAll(new RaftError('RAFT_ERR_CLOSED', 'the replicated log is closed'))
    await this.#wal.close()
    this.#log.info('closed')
  }

  #changeMembership (change: ConfChange): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#enqueue({ kind: 'conf', change, resolve: resolve as (r: unknown) => void, reject })
    })
  }

  #receive (message: Message): void {
    if (message.to !== this.#options.id) return
    this.#enqueue({ kind: 'message', message })
  }

  #enqueue (work: Work): void {
    if (this.#closed || this.#failed !== null) {
      if (work.kind === 'propose' || work.kind === 'conf' || work.kind === 'transfer') {
        work.reject(this.#failed ?? new RaftError('RAFT_ERR_CLOSED', 'the replicated log is closed'))
      }
      return
    }
    this.#inbox.push(work)
    void this.#kick()
  }

  /** Starts the loop unless it runs; resolves when it has nothing left to do. Never rejects. */
  #kick (): Promise<void> {
    this.#running ??= this.#loop()
    return this.#running
  }

  async #loop (): Promise<void> {
    // Yield once, so #running is assigned before the loop can finish and clear it.
    await undefined
    try {
      while (this.#failed === null) {
        const work = this.#inbox
        this.#inbox = []
        for (const item of work) this.#feed(item)
        if (!this.#core.hasReady()) {
          if (this.#inbox.length === 0) return
          continue
        }
        await this.#handleReady()
        if (this.#closed) return
      }
    } catch (error) {
      this.#fail(error)
    } finally {
      // Cleared in the same turn as the loop decides it is idle: work enqueued after this starts a new loop.
      this.#running = null
    }
  }

  #feed (work: Work): void {
    const core = this.#core
    switch (work.kind) {
      case 'tick': core.tick(); return
      case 'message': core.step(work.message); return
      case 'transfer':
        try { core.transferLeadership(work.to); work.resolve(undefined) } catch (error) { work.reject(error as Error) }
        return
      case 'propose':
      case 'conf':
        try {
          const { index, term } = work.kind === 'propose' ? core.propose(work.data) : core.proposeConfChange(work.change)
          this.#waiters.set(index, { term, resolve: work.resolve, reject: work.reject })
        } catch (error) {
          work.reject(error as Error)
        }
    }
  }

  async #handleReady (): Promise<void> {
    const core = this.#core
    const ready = core.ready()
    await this.#wal.save({ snapshot: ready.snapshot, entries: ready.entries, hardState: ready.hardState })
    for (const message of ready.messages) {
      try {
        this.#transport?.send(message.to, message)
      } catch (error) {
        this.#log.debug({ err: error, to: message.to, type: message.type }, 'send failed')
      }
    }
    if (ready.snapshot !== null) {
      this.#machine.restore(ready.snapshot.data)
      this.#log.info({ index: ready.snapshot.index, term: ready.snapshot.term }, 'restored a snapshot from the leader')
      // Proposals at or below the snapshot's index: every entry the snapshot covers has a term ≤ its
      // term, so a newer proposal was certainly replaced; an older one may have been applied, with a
      // result this member never computed.
      for (const [index, waiter] of this.#waiters) {
        if (index > ready.snapshot.index) continue
        this.#waiters.delete(index)
        waiter.reject(waiter.term > ready.snapshot.term
          ? new RaftError('RAFT_ERR_DROPPED', `entry ${index} was replaced by a leader of a later term`)
          : new RaftError('RAFT_ERR_OUTCOME_UNKNOWN', `entry ${index} arrived inside a snapshot; its result is unknown`))
      }
    }
    for (const entry of ready.committed) this.#apply(entry)
    core.advance()
    this.#noteLeadership()
    const every = this.#options.snapshotEvery
    if (every > 0 && core.appliedIndex - core.snapshotIndex >= every) {
      const snapshot = core.compact(core.appliedIndex, this.#machine.snapshot())
      await this.#wal.compact(snapshot, core.entries(snapshot.index + 1))
      this.#log.debug({ index: snapshot.index, bytes: snapshot.data.length }, 'compacted the log')
    }
  }

  #apply (entry: Entry): void {
    const waiter = this.#waiters.get(entry.index)
    if (waiter !== undefined) this.#waiters.delete(entry.index)
    // A different entry at the proposal's index means a new leader replaced it: it will never be applied.
    const ours = waiter !== undefined && waiter.term === entry.term
    if (waiter !== undefined && !ours) waiter.reject(new RaftError('RAFT_ERR_DROPPED', `entry ${entry.index} was replaced by a leader of term ${entry.term}`))
    switch (entry.kind) {
      case 'normal': {
        let outcome: { ok: true, result: R } | { ok: false, error: Error }
        try {
          const command = JSON.parse(decoder.decode(entry.data)) as C
          outcome = { ok: true, result: this.#machine.apply(command, entry.index) }
        } catch (error) {
          this.#log.error({ err: error, index: entry.index }, 'the state machine threw while applying a command')
          outcome = { ok: false, error: error as Error }
        }
        if (ours) {
          if (outcome.ok) waiter.resolve(outcome.result)
          else waiter.reject(outcome.error)
        }
        return
      }
      case 'config': {
        const { conf, change } = decodeConf(entry)
        this.#log.info({ index: entry.index, voters: conf.voters, change }, 'membership committed')
        if (ours) waiter.resolve(undefined)
        return
      }
      case 'noop':
    }
  }

  #noteLeadership (): void {
    const core = this.#core
    if (core.role === this.#lastRole && core.leaderId === this.#lastLeader) return
    this.#lastRole = core.role
    this.#lastLeader = core.leaderId
    this.#log.info({ term: core.term, role: core.role, leader: core.leaderId }, 'leadership changed')
  }

  #fail (error: unknown): void {
    this.#failed = error instanceof RaftError && error.code === 'RAFT_ERR_STORAGE'
      ? error
      : new RaftError('RAFT_ERR_STORAGE', `the replicated log stopped: ${(error as Error).message}`)
    if (this.#failed !== error) this.#failed.cause = error
    this.#log.error({ err: error }, 'the replicated log stopped; nothing more will be acknowledged')
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#abandonAll(this.#failed)
  }

  #abandonAll (error: RaftError): void {
    for (const work of this.#inbox) {
      if (work.kind === 'propose' || work.kind === 'conf' || work.kind === 'transfer') work.reject(error)
    }
    this.#inbox = []
    for (const waiter of this.#waiters.values()) waiter.reject(error)
    this.#waiters.clear()
  }
}
