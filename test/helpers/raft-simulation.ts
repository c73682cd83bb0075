/**
 * A deterministic simulation of a Raft group, for tests (the shape of etcd's
 * rafttest): N cores over an in-memory network that drops, delays, reorders
 * and duplicates messages and can be partitioned; each member with a
 * simulated disk (what ready() asked to persist, nothing more) and a state
 * machine that records what it applied. A crash throws away everything but
 * the disk; a restart builds a new core from it. Everything is driven by one
 * seed, so a failing seed replays exactly.
 *
 * While it runs it checks the Raft safety properties (paper figure 3) and
 * records violations rather than throwing, so a test reports all of them:
 *  - Election Safety: at most one leader per term;
 *  - Log Matching: two logs holding an entry with the same index and term
 *    are identical up to it;
 *  - Leader Completeness: a leader of term T holds every entry committed in
 *    a term before T;
 *  - State Machine Safety: no two members apply different entries at one index;
 * and, for the caller to check at the end, the proposals that were
 * acknowledged (applied by the member that took them, in the same life).
 */
import { bootstrapState, RaftCore } from '../../manager/raft/core.ts'
import { RaftError } from '../../manager/raft/errors.ts'
import type { Entry, HardState, Message, NodeId, PersistedState, Snapshot } from '../../manager/raft/types.ts'
import { prng } from './prng.ts'

export { prng }

export interface SimulationOptions {
  readonly seed: number
  /** Every member that may ever run. */
  readonly nodes: readonly NodeId[]
  /** The founding voters (bootstrapped on disk); default all nodes. The others start empty. */
  readonly voters?: readonly NodeId[]
  readonly electionTicks?: number
  readonly preVote?: boolean
  readonly checkQuorum?: boolean
  readonly maxEntriesPerMessage?: number
  /** A member compacts its log once this many entries are applied past its snapshot; 0 never. */
  readonly snapshotEvery?: number
}

export interface Faults {
  /** Probability that a message is lost. */
  drop: number
  /** Probability that a message is delivered twice. */
  duplicate: number
  /** Delivery takes 1..maxDelay steps, drawn per message: later messages may overtake earlier ones. */
  maxDelay: number
  /** Probability that a member crashes right after persisting a ready, before sending or applying it. */
  crashAfterPersist: number
  /**
   * Probability that a member crashes while persisting a ready: a torn write keeps a prefix of what
   * the WAL writes (snapshot, entries in order, then the hard state). Default 0.
   */
  crashDuringPersist?: number
}

export interface AppliedEntry {
  readonly index: number
  readonly term: number
  readonly kind: Entry['kind']
  readonly data: string
}

export interface Acknowledged {
  readonly node: NodeId
  readonly index: number
  readonly term: number
  readonly data: string
}

interface Disk {
  hardState: HardState
  snapshot: Snapshot | null
  entries: Entry[]
}

interface Member {
  readonly id: NodeId
  readonly random: () => number
  core: RaftCore | null
  disk: Disk
  /** The state machine: every entry applied, in order (restored from snapshots). */
  applied: AppliedEntry[]
  /** Proposals this life of the member took and has not applied yet, by index. */
  pending: Map<number, { term: number, data: string }>
  /** The term in which this member last became leader, to see each election once. */
  ledTerm: number
}

interface InFlight {
  readonly at: number
  readonly seq: number
  readonly message: Message
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export class Simulation {
  readonly #options: SimulationOptions
  readonly #random: () => number
  readonly members = new Map<NodeId, Member>()
  faults: Faults = { drop: 0, duplicate: 0, maxDelay: 1, crashAfterPersist: 0 }
  /** Members are grouped; messages only flow within a group. Null: fully connected. */
  #partition: Map<NodeId, number> | null = null
  #inFlight: InFlight[] = []
  #seq = 0
  now = 0

  readonly violations: string[] = []
  readonly acknowledged: Acknowledged[] = []
  /** term → the member that led it. */
  readonly leaders = new Map<number, NodeId>()
  /** index → the entry applied there, by whoever applied it first. */
  readonly #appliedAt = new Map<number, AppliedEntry>()
  /** index → the entry's term and the first leader term in which it was seen committed. */
  readonly #committedIn = new Map<number, { term: number, inTerm: number }>()

  constructor (options: SimulationOptions) {
    this.#options = options
    this.#random = prng(options.seed)
    const voters = options.voters ?? options.nodes
    const founders = bootstrapState(voters)
    options.nodes.forEach((id, k) => {
      const disk: Disk = voters.includes(id)
        ? { hardState: founders.hardState, snapshot: null, entries: [...founders.entries] }
        : { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] }
      const member: Member = { id, random: prng(options.seed * 31 + k + 1), core: null, disk, applied: [], pending: new Map(), ledTerm: 0 }
      this.members.set(id, member)
      this.#start(member)
    })
  }

  /** A uniform draw from the simulation's own generator (for tests choosing what to do next). */
  random (): number {
    return this.#random()
  }

  member (id: NodeId): Member {
    const member = this.members.get(id)
    if (member === undefined) throw new Error(`no member ${id}`)
    return member
  }

  core (id: NodeId): RaftCore | null {
    return this.member(id).core
  }

  /** The live members that think they lead, highest term first. */
  leaderIds (): NodeId[] {
    return [...this.members.values()]
      .filter((m) => m.core?.role === 'leader')
      .sort((a, b) => b.core!.term - a.core!.term)
      .map((m) => m.id)
  }

  // ── Faults ────────────────────────────────────────────────────────────────

  partition (groups: ReadonlyArray<readonly NodeId[]>): void {
    this.#partition = new Map()
    groups.forEach((group, k) => { for (const id of group) this.#partition!.set(id, k) })
  }

  heal (): void {
    this.#partition = null
  }

  #connected (a: NodeId, b: NodeId): boolean {
    if (this.#partition === null) return true
    return (this.#partition.get(a) ?? -1) === (this.#partition.get(b) ?? -2)
  }

  crash (id: NodeId): void {
    const member = this.member(id)
    member.core = null
    member.applied = []
    member.pending.clear()
  }

  restart (id: NodeId): void {
    const member = this.member(id)
    if (member.core === null) this.#start(member)
  }

  #start (member: Member): void {
    const restored: PersistedState = { hardState: member.disk.hardState, snapshot: member.disk.snapshot, entries: [...member.disk.entries] }
    member.core = new RaftCore({
      id: member.id,
      random: member.random,
      restored,
      electionTicks: this.#options.electionTicks ?? 10,
      heartbeatTicks: 1,
      preVote: this.#options.preVote ?? true,
      checkQuorum: this.#options.checkQuorum ?? true,
      maxEntriesPerMessage: this.#options.maxEntriesPerMessage ?? 8
    })
    member.applied = member.disk.snapshot === null ? [] : decodeApplied(member.disk.snapshot.data)
    member.ledTerm = 0
    this.#process(member)
  }

  // ── Driving ───────────────────────────────────────────────────────────────

  /** Proposes on `id`: the entry's index and term, or the error the core refused it with. */
  propose (id: NodeId, data: string): { index: number, term: number } | RaftError {
    const member = this.member(id)
    if (member.core === null) return new RaftError('RAFT_ERR_CLOSED', `${id} is down`)
    try {
      const proposal = member.core.propose(encoder.encode(data))
      member.pending.set(proposal.index, { term: proposal.term, data })
      this.#process(member)
      return proposal
    } catch (error) {
      if (error instanceof RaftError) return error
      throw error
    }
  }

  proposeConfChange (id: NodeId, type: 'add' | 'remove', node: NodeId): { index: number, term: number } | RaftError {
    const member = this.member(id)
    if (member.core === null) return new RaftError('RAFT_ERR_CLOSED', `${id} is down`)
    try {
      const proposal = member.core.proposeConfChange({ type, node })
      this.#process(member)
      return proposal
    } catch (error) {
      if (error instanceof RaftError) return error
      throw error
    }
  }

  /** Runs `fn` on a live member's core, then does what it made ready. */
  act (id: NodeId, fn: (core: RaftCore) => void): void {
    const member = this.member(id)
    if (member.core === null) return
    fn(member.core)
    this.#process(member)
  }

  /** One unit of time: deliver what is due, then tick every live member. */
  step (): void {
    this.now++
    const due = this.#inFlight.filter((f) => f.at <= this.now).sort((a, b) => a.at - b.at || a.seq - b.seq)
    this.#inFlight = this.#inFlight.filter((f) => f.at > this.now)
    for (const { message } of due) this.deliver(message)
    for (const member of this.members.values()) {
      if (member.core === null) continue
      member.core.tick()
      this.#process(member)
    }
  }

  /** Hands a message to its destination now, if it is up and reachable. */
  deliver (message: Message): void {
    const member = this.members.get(message.to)
    if (member?.core == null || !this.#connected(message.from, message.to)) return
    member.core.step(message)
    this.#process(member)
  }

  /** Messages sent and not yet delivered. */
  get inFlight (): readonly Message[] {
    return this.#inFlight.map((f) => f.message)
  }

  /** Takes the in-flight messages matching `predicate` off the network (to drop, inspect, or deliver altered). */
  intercept (predicate: (message: Message) => boolean): Message[] {
    const taken = this.#inFlight.filter((f) => predicate(f.message))
    this.#inFlight = this.#inFlight.filter((f) => !predicate(f.message))
    return taken.map((f) => f.message)
  }

  /**
   * Delivers everything in flight, and everything that causes, in send order
   * and without time passing (no tick), until the network is quiet. Faults
   * still apply to what is sent meanwhile. Returns the messages delivered.
   */
  flush (limit = 100_000): number {
    let delivered = 0
    while (this.#inFlight.length > 0) {
      const batch = this.#inFlight.sort((a, b) => a.seq - b.seq)
      this.#inFlight = []
      for (const { message } of batch) {
        if (++delivered > limit) throw new Error(`flush: more than ${limit} messages, the group does not settle`)
        this.deliver(message)
      }
    }
    return delivered
  }

  #send (message: Message): void {
    if (!this.#connected(message.from, message.to)) return
    if (this.#random() < this.faults.drop) return
    const copies = this.#random() < this.faults.duplicate ? 2 : 1
    for (let c = 0; c < copies; c++) {
      this.#inFlight.push({ at: this.now + 1 + Math.floor(this.#random() * this.faults.maxDelay), seq: this.#seq++, message })
    }
  }

  /** Does everything the member's core has ready, as a correct host would (persist, send, apply, advance). */
  #process (member: Member): void {
    const core = member.core!
    this.#observe(member, false)
    while (core.hasReady()) {
      const ready = core.ready()
      // 1. Persist (or tear the write: keep a prefix of the records, in the WAL's order, and die).
      const disk = member.disk
      const torn = this.#random() < (this.faults.crashDuringPersist ?? 0)
      const kept = torn ? Math.floor(this.#random() * (ready.entries.length + 1)) : ready.entries.length
      if (ready.snapshot !== null) {
        disk.snapshot = ready.snapshot
        disk.entries = []
      }
      if (kept > 0) {
        const first = ready.entries[0]!.index
        disk.entries = disk.entries.filter((e) => e.index < first).concat(ready.entries.slice(0, kept))
      }
      if (torn) {
        if (kept === ready.entries.length && ready.hardState !== null && this.#random() < 0.5) disk.hardState = ready.hardState
        this.crash(member.id)
        return
      }
      if (ready.hardState !== null) disk.hardState = ready.hardState
      if (this.#random() < this.faults.crashAfterPersist) {
        this.crash(member.id)
        return
      }
      // 2. Send.
      for (const message of ready.messages) this.#send(message)
      // 3. Apply.
      if (ready.snapshot !== null) {
        member.applied = decodeApplied(ready.snapshot.data)
        for (const entry of member.applied) this.#checkApplied(member, entry)
      }
      for (const entry of ready.committed) {
        const applied: AppliedEntry = { index: entry.index, term: entry.term, kind: entry.kind, data: decoder.decode(entry.data) }
        const last = member.applied.at(-1)?.index ?? 0
        if (entry.index !== last + 1) this.violations.push(`t${this.now} ${member.id} applied ${entry.index} after ${last}`)
        member.applied.push(applied)
        this.#checkApplied(member, applied)
        const pending = member.pending.get(entry.index)
        if (pending !== undefined) {
          member.pending.delete(entry.index)
          if (pending.term === entry.term) this.acknowledged.push({ node: member.id, index: entry.index, term: entry.term, data: pending.data })
        }
      }
      core.advance()
      // 4. Compact now and then, persisting the snapshot as the host would.
      const every = this.#options.snapshotEvery ?? 0
      if (every > 0 && core.appliedIndex - core.snapshotIndex >= every) {
        const snapshot = core.compact(core.appliedIndex, encodeApplied(member.applied))
        disk.snapshot = snapshot
        disk.entries = disk.entries.filter((e) => e.index > snapshot.index)
      }
      this.#observe(member, true)
    }
  }

  // ── Invariants ────────────────────────────────────────────────────────────

  #observe (member: Member, persisted: boolean): void {
    const core = member.core!
    if (core.role !== 'leader') return
    const term = core.term
    if (member.ledTerm !== term) {
      member.ledTerm = term
      const other = this.leaders.get(term)
      if (other !== undefined && other !== member.id) this.violations.push(`t${this.now} election safety: ${member.id} and ${other} both lead term ${term}`)
      this.leaders.set(term, member.id)
      // Leader Completeness (§5.4.3).
      for (const [index, { term: entryTerm, inTerm }] of this.#committedIn) {
        if (inTerm >= term) continue
        const held = index <= core.snapshotIndex || core.termOf(index) === entryTerm
        if (!held) this.violations.push(`t${this.now} leader completeness: ${member.id} leads term ${term} without entry ${index} (term ${entryTerm}) committed in term ${inTerm}`)
      }
    }
    // Recorded only once the leader's own log is on disk (after advance): a leader alone in its
    // configuration counts itself at once, but its entries are committed only when persisted.
    if (!persisted) return
    for (let index = core.commitIndex; index > core.snapshotIndex && !this.#committedIn.has(index); index--) {
      this.#committedIn.set(index, { term: core.termOf(index)!, inTerm: term })
    }
  }

  #checkApplied (member: Member, entry: AppliedEntry): void {
    const first = this.#appliedAt.get(entry.index)
    if (first === undefined) {
      this.#appliedAt.set(entry.index, entry)
    } else if (first.term !== entry.term || first.kind !== entry.kind || first.data !== entry.data) {
      this.violations.push(`t${this.now} state machine safety: ${member.id} applied ${JSON.stringify(entry)} where another applied ${JSON.stringify(first)}`)
    }
  }

  /** Log Matching (§5.3) across every pair of live members; expensive, call now and then. */
  checkLogMatching (): void {
    const live = [...this.members.values()].filter((m) => m.core !== null)
    for (let a = 0; a < live.length; a++) {
      for (let b = a + 1; b < live.length; b++) {
        const x = live[a]!.core!
        const y = live[b]!.core!
        const low = Math.max(x.snapshotIndex, y.snapshotIndex) + 1
        let matched = false
        for (let index = Math.min(x.lastIndex, y.lastIndex); index >= low; index--) {
          const ex = x.entries(index, index + 1)[0]!
          const ey = y.entries(index, index + 1)[0]!
          if (!matched && ex.term === ey.term) matched = true
          if (matched && (ex.term !== ey.term || ex.kind !== ey.kind || !sameBytes(ex.data, ey.data))) {
            this.violations.push(`t${this.now} log matching: ${x.id} and ${y.id} agree on a later entry but differ at ${index}`)
            return
          }
        }
      }
    }
  }

  /** A proposal acknowledged to a client that is not in `id`'s state machine. */
  lostAcknowledged (id: NodeId): Acknowledged[] {
    const applied = this.member(id).applied
    return this.acknowledged.filter((a) => {
      const entry = applied[a.index - 1]
      return entry === undefined || entry.index !== a.index || entry.term !== a.term || entry.data !== a.data
    })
  }
}

function encodeApplied (applied: readonly AppliedEntry[]): Uint8Array {
  return encoder.encode(JSON.stringify(applied))
}

function decodeApplied (data: Uint8Array): AppliedEntry[] {
  return JSON.parse(decoder.decode(data)) as AppliedEntry[]
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
