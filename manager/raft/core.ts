/**
 * The Raft core: leader election, log replication, commitment, membership
 * changes, snapshots and leadership transfer, as a pure state machine. It has
 * no timers, sockets or disk: the caller feeds it logical time (`tick()`) and
 * peers' messages (`step()`), asks `ready()` what must happen next, does that
 * I/O in the documented order (persist, then send, then apply; see Ready in
 * types.ts), and calls `advance()`. Randomness (election timeouts) is injected.
 *
 * Sections cited are from the Raft paper (Ongaro & Ousterhout 2014) and, as
 * "dissertation", Ongaro's thesis (2014).
 *
 * Invariants this module keeps:
 *  - at most one vote per term, persisted before the response leaves (§5.2);
 *  - a leader never overwrites or deletes its own entries (§5.3);
 *  - commit advances by counting replicas only for entries of the current term (§5.4.2);
 *  - the configuration in force is the latest config entry in the log, committed
 *    or not (dissertation §4.1); at most one is uncommitted, and a leader
 *    appends one only after committing an entry of its own term (the no-op it
 *    appends on election), which closes the single-server-change hole of
 *    dissertation §4.1 (the 2015 raft-dev erratum);
 *  - between ready() and advance() the core does not change: every mutating
 *    call throws RAFT_ERR_READY_PENDING.
 */
import { changeConf, decodeConf, encodeConf, quorum } from './conf.ts'
import { NotLeaderError, RaftError } from './errors.ts'
import { RaftLog } from './log.ts'
import { Progress } from './progress.ts'
import type {
  AppendRequest, AppendResponse, ConfChange, ConfState, Entry, HardState, Heartbeat, Message,
  NodeId, PersistedState, Ready, Role, Snapshot, SnapshotRequest, VoteRequest, VoteResponse
} from './types.ts'

export interface RaftCoreOptions {
  readonly id: NodeId
  /** Uniform in [0, 1): draws the randomized election timeout. Seeded in tests. */
  readonly random: () => number
  /** A follower that hears no leader for between this many and twice this many ticks campaigns. Default 10. */
  readonly electionTicks?: number
  /** A leader sends heartbeats every this many ticks. Default 1; must be less than electionTicks. */
  readonly heartbeatTicks?: number
  /** Campaign with a pre-vote first (dissertation §9.6), so a partitioned member rejoining cannot depose a healthy leader. Default true. */
  readonly preVote?: boolean
  /**
   * A leader steps down when it has not heard from a quorum for an election
   * timeout, and a member that heard from a leader within the timeout ignores
   * vote requests (dissertation §4.2.3, §6.2). Default true.
   */
  readonly checkQuorum?: boolean
  /** Entries per AppendEntries message. Default 256. */
  readonly maxEntriesPerMessage?: number
  /** Unacknowledged AppendEntries per follower in the replicate state. Default 64. */
  readonly maxInflight?: number
  /** What this member read back from its disk; absent for a member that never ran (it waits to be contacted). */
  readonly restored?: PersistedState
}

export interface ProgressStatus {
  readonly match: number
  readonly next: number
  readonly state: Progress['state']
}

export interface CoreStatus {
  readonly id: NodeId
  readonly role: Role
  readonly term: number
  readonly vote: NodeId | null
  readonly leaderId: NodeId | null
  readonly commitIndex: number
  readonly appliedIndex: number
  readonly lastIndex: number
  readonly snapshotIndex: number
  readonly voters: readonly NodeId[]
  /** On the leader, each other voter's replication state. */
  readonly progress: Readonly<Record<NodeId, ProgressStatus>> | null
  readonly transferee: NodeId | null
}

const DEFAULTS = {
  electionTicks: 10,
  heartbeatTicks: 1,
  preVote: true,
  checkQuorum: true,
  maxEntriesPerMessage: 256,
  maxInflight: 64
}

const EMPTY = new Uint8Array(0)

/**
 * The state every founding member writes before its first start: the same
 * config entry at index 1, term 1, already committed. Identical on every
 * founder, so it is as good as replicated; a member that joins later starts
 * empty and receives it (or a snapshot) from the leader.
 */
export function bootstrapState (voters: readonly NodeId[]): PersistedState {
  const unique = [...new Set(voters)].sort()
  if (unique.length === 0 || unique.some((v) => typeof v !== 'string' || v === '')) {
    throw new RaftError('RAFT_ERR_CONFIG', 'a group starts with at least one member, each a non-empty id')
  }
  const entry: Entry = { index: 1, term: 1, kind: 'config', data: encodeConf({ voters: unique }, null) }
  return { hardState: { term: 1, vote: null, commit: 1 }, snapshot: null, entries: [entry] }
}

export class RaftCore {
  readonly #id: NodeId
  readonly #random: () => number
  readonly #electionTicks: number
  readonly #heartbeatTicks: number
  readonly #preVote: boolean
  readonly #checkQuorum: boolean
  readonly #maxEntries: number
  readonly #maxInflight: number

  #term = 0
  #vote: NodeId | null = null
  #lead: NodeId | null = null
  #role: Role = 'follower'
  readonly #log: RaftLog
  /** The latest snapshot (made here or received), sent to followers that need compacted entries. */
  #snapshot: Snapshot | null
  /** A snapshot received from the leader, not yet handed out by ready(). */
  #pendingSnapshot: Snapshot | null = null

  #voters = new Set<NodeId>()
  /** Index of the config entry in force; 0 (bootstrap-less) or the snapshot index when it came from a snapshot. */
  #confIndex = 0

  #electionElapsed = 0
  #heartbeatElapsed = 0
  #randomizedElectionTimeout = 0

  // Leader only.
  readonly #progress = new Map<NodeId, Progress>()
  /** Index of the no-op this leader appended on election: once committed, every earlier entry is too. */
  #termStart = 0
  #transferee: NodeId | null = null
  /** New entries or a new commit index await a broadcast, batched until ready(). */
  #broadcastPending = false

  // Candidate and pre-candidate only.
  readonly #votes = new Map<NodeId, boolean>()

  #messages: Message[] = []
  #persistedHardState: HardState
  #inReady: { lastIndex: number, hardState: HardState, appliedTo: number, snapshot: Snapshot | null } | null = null

  constructor (options: RaftCoreOptions) {
    const o = { ...DEFAULTS, ...definedOnly(options), id: options.id, random: options.random }
    const problems: string[] = []
    if (typeof o.id !== 'string' || o.id === '') problems.push('id: must be a non-empty string')
    if (typeof o.random !== 'function') problems.push('random: must be a function returning [0, 1)')
    if (!(Number.isInteger(o.electionTicks) && o.electionTicks >= 2)) problems.push('electionTicks: must be an integer ≥ 2')
    if (!(Number.isInteger(o.heartbeatTicks) && o.heartbeatTicks >= 1 && o.heartbeatTicks < o.electionTicks)) problems.push('heartbeatTicks: must be an integer ≥ 1 and < electionTicks')
    if (!(Number.isInteger(o.maxEntriesPerMessage) && o.maxEntriesPerMessage >= 1)) problems.push('maxEntriesPerMessage: must be an integer ≥ 1')
    if (!(Number.isInteger(o.maxInflight) && o.maxInflight >= 1)) problems.push('maxInflight: must be an integer ≥ 1')
    if (problems.length > 0) throw new RaftError('RAFT_ERR_CONFIG', `invalid raft options: ${problems.join('; ')}`, problems)
    this.#id = o.id
    this.#random = o.random
    this.#electionTicks = o.electionTicks
    this.#heartbeatTicks = o.heartbeatTicks
    this.#preVote = o.preVote
    this.#checkQuorum = o.checkQuorum
    this.#maxEntries = o.maxEntriesPerMessage
    this.#maxInflight = o.maxInflight

    const restored = options.restored ?? { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] }
    const snapshot = restored.snapshot
    this.#log = new RaftLog(snapshot?.index ?? 0, snapshot?.term ?? 0, restored.entries, restored.hardState.commit)
    this.#snapshot = snapshot
    // A torn write can keep a batch's entries and lose the hard state written after them: the
    // entries' term is then newer than the recorded one, and the recorded vote belongs to an older term.
    if (this.#log.lastTerm > restored.hardState.term) {
      this.#term = this.#log.lastTerm
    } else {
      this.#term = restored.hardState.term
      this.#vote = restored.hardState.vote
    }
    this.#persistedHardState = restored.hardState
    this.#recomputeConf()
    this.#resetElectionTimeout()
  }

  // ── Observers ──────────────────────────────────────────────────────────────

  get id (): NodeId { return this.#id }
  get term (): number { return this.#term }
  get role (): Role { return this.#role }
  get leaderId (): NodeId | null { return this.#lead }
  get isLeader (): boolean { return this.#role === 'leader' }
  get commitIndex (): number { return this.#log.committed }
  get appliedIndex (): number { return this.#log.applied }
  get lastIndex (): number { return this.#log.lastIndex }
  get snapshotIndex (): number { return this.#log.snapshotIndex }
  get voters (): readonly NodeId[] { return [...this.#voters].sort() }

  /** Entries held with index ≥ from (those not compacted away), e.g. to rewrite after a snapshot. */
  entries (from: number, to = this.#log.lastIndex + 1): Entry[] {
    return this.#log.slice(from, to)
  }

  /** The term of entry `index`, when held (or it is the snapshot's). */
  termOf (index: number): number | undefined {
    return this.#log.term(index)
  }

  status (): CoreStatus {
    let progress: Record<NodeId, ProgressStatus> | null = null
    if (this.#role === 'leader') {
      progress = {}
      for (const [id, pr] of this.#progress) progress[id] = { match: pr.match, next: pr.next, state: pr.state }
    }
    return {
      id: this.#id,
      role: this.#role,
      term: this.#term,
      vote: this.#vote,
      leaderId: this.#lead,
      commitIndex: this.#log.committed,
      appliedIndex: this.#log.applied,
      lastIndex: this.#log.lastIndex,
      snapshotIndex: this.#log.snapshotIndex,
      voters: this.voters,
      progress,
      transferee: this.#transferee
    }
  }

  // ── Inputs ────────────────────────────────────────────────────────────────

  /** One unit of logical time. */
  tick (): void {
    this.#assertNoReady()
    if (this.#role === 'leader') this.#tickLeader()
    else this.#tickElection()
  }

  /** Campaigns now, as if the election timeout had passed (a group of one does so at start). */
  campaign (): void {
    this.#assertNoReady()
    this.#hup(false)
  }

  /**
   * Appends a command to the log. Only the leader takes proposals; the entry is
   * committed once a quorum has persisted it, and comes back in ready().committed.
   * The returned index and term identify it: if a different entry is applied at
   * that index, the proposal was lost to a leader change.
   */
  propose (data: Uint8Array): { index: number, term: number } {
    this.#assertNoReady()
    this.#assertCanPropose()
    return this.#appendLocal('normal', data)
  }

  /**
   * Adds or removes one voter. The new configuration takes effect on every
   * member as soon as the entry reaches its log; it is refused while another
   * change is uncommitted or before this leader has committed in its term.
   */
  proposeConfChange (change: ConfChange): { index: number, term: number } {
    this.#assertNoReady()
    this.#assertCanPropose()
    if (this.#confIndex > this.#log.committed) {
      throw new RaftError('RAFT_ERR_CONF_PENDING', `the membership change at index ${this.#confIndex} is not committed yet`)
    }
    if (this.#log.committed < this.#termStart) {
      throw new RaftError('RAFT_ERR_CONF_PENDING', 'the leader has not yet committed an entry of its term')
    }
    const next = changeConf({ voters: [...this.#voters] }, change)
    // The new configuration counts from the moment the entry is in the log, including for committing the entry itself.
    const proposal = this.#appendLocal('config', encodeConf(next, { type: change.type, node: change.node }), false)
    this.#setConf(next.voters, proposal.index)
    this.#maybeCommit()
    return proposal
  }

  /** Hands leadership to `to` once its log matches ours (dissertation §3.10); aborted after an election timeout. */
  transferLeadership (to: NodeId): void {
    this.#assertNoReady()
    if (this.#role !== 'leader') throw new NotLeaderError(this.#id, this.#lead)
    if (to === this.#id) return
    const pr = this.#progress.get(to)
    if (pr === undefined) throw new RaftError('RAFT_ERR_CONF_INVALID', `${to} is not a voter`)
    this.#transferee = to
    this.#electionElapsed = 0
    if (pr.match === this.#log.lastIndex) this.#send({ type: 'timeoutNow', to, term: this.#term })
    else this.#sendAppend(to, true)
  }

  /**
   * Replaces the log up to `index` (applied already) by a snapshot of the state
   * machine taken at that index. Returns the snapshot, for the caller to persist.
   */
  compact (index: number, data: Uint8Array): Snapshot {
    this.#assertNoReady()
    if (index > this.#log.applied) throw new RaftError('RAFT_ERR_COMPACT', `cannot compact at ${index}: only ${this.#log.applied} is applied`)
    if (index <= this.#log.snapshotIndex) throw new RaftError('RAFT_ERR_COMPACT', `cannot compact at ${index}: already compacted to ${this.#log.snapshotIndex}`)
    const snapshot: Snapshot = { index, term: this.#log.term(index)!, conf: this.#confAt(index), data }
    this.#log.compact(index)
    this.#snapshot = snapshot
    return snapshot
  }

  step (m: Message): void {
    this.#assertNoReady()
    if (m.to !== this.#id || m.from === this.#id) return

    if (m.term > this.#term) {
      if (m.type === 'vote') {
        // §4.2.3 of the dissertation: a member that heard from a leader within the election timeout
        // ignores a vote request, so a removed or partitioned member cannot depose a healthy leader.
        const inLease = this.#checkQuorum && this.#lead !== null && this.#electionElapsed < this.#electionTicks
        if (inLease && !m.transfer) return
      }
      if (m.type === 'vote' && m.preVote) {
        // A pre-vote changes nobody's term.
      } else if (m.type === 'voteResponse' && m.preVote && m.granted) {
        // Granted pre-votes carry the term we would campaign in, not a newer one we missed.
      } else {
        const fromLeader = m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot'
        this.#becomeFollower(m.term, fromLeader ? m.from : null)
      }
    } else if (m.term < this.#term) {
      if (m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot') {
        // A deposed leader: tell it the current term so it steps down (§5.1).
        this.#send({ type: 'appendResponse', to: m.from, term: this.#term, success: false, index: 0, hintIndex: 0, hintTerm: 0 })
      } else if (m.type === 'vote') {
        // §5.1: the candidate learns the newer term and stops campaigning in a stale one.
        this.#send({ type: 'voteResponse', to: m.from, term: this.#term, preVote: m.preVote, granted: false })
      }
      return
    }

    if (m.type === 'vote') {
      this.#handleVote(m)
      return
    }
    switch (this.#role) {
      case 'leader': this.#stepLeader(m); break
      case 'candidate':
      case 'precandidate': this.#stepCandidate(m); break
      case 'follower': this.#stepFollower(m); break
    }
  }

  // ── Output ────────────────────────────────────────────────────────────────

  hasReady (): boolean {
    if (this.#inReady !== null) return false
    return this.#broadcastPending ||
      this.#messages.length > 0 ||
      this.#pendingSnapshot !== null ||
      this.#log.unstable().length > 0 ||
      this.#log.committed > this.#log.applied ||
      !sameHardState(this.#hardState(), this.#persistedHardState)
  }

  ready (): Ready {
    this.#assertNoReady()
    this.#flushBroadcast()
    const hardState = this.#hardState()
    const snapshot = this.#pendingSnapshot
    const applyFrom = (snapshot?.index ?? this.#log.applied) + 1
    const committed = this.#log.slice(applyFrom, this.#log.committed + 1)
    const ready: Ready = {
      hardState: sameHardState(hardState, this.#persistedHardState) ? null : hardState,
      entries: this.#log.unstable(),
      snapshot,
      messages: this.#messages,
      committed
    }
    this.#messages = []
    this.#inReady = {
      lastIndex: this.#log.lastIndex,
      hardState,
      appliedTo: committed.length > 0 ? committed.at(-1)!.index : applyFrom - 1,
      snapshot
    }
    return ready
  }

  /** The last ready() was carried out: its entries and hard state are durable, its committed entries applied. */
  advance (): void {
    const done = this.#inReady
    if (done === null) throw new RaftError('RAFT_ERR_READY_PENDING', 'advance() without a ready()')
    this.#inReady = null
    this.#persistedHardState = done.hardState
    this.#log.stableTo(done.lastIndex)
    if (done.snapshot !== null) this.#pendingSnapshot = null
    this.#log.applied = Math.max(this.#log.applied, done.appliedTo)
  }

  // ── Roles ─────────────────────────────────────────────────────────────────

  #reset (term: number): void {
    if (term !== this.#term) {
      this.#term = term
      this.#vote = null
    }
    this.#lead = null
    this.#electionElapsed = 0
    this.#heartbeatElapsed = 0
    this.#resetElectionTimeout()
    this.#votes.clear()
    this.#progress.clear()
    this.#transferee = null
    this.#broadcastPending = false
  }

  #becomeFollower (term: number, lead: NodeId | null): void {
    this.#reset(term)
    this.#lead = lead
    this.#role = 'follower'
  }

  #becomePreCandidate (): void {
    // Neither the term nor the vote changes: a failed pre-vote leaves no trace (dissertation §9.6).
    this.#votes.clear()
    this.#progress.clear()
    this.#lead = null
    this.#role = 'precandidate'
  }

  #becomeCandidate (): void {
    this.#reset(this.#term + 1)
    this.#vote = this.#id
    this.#role = 'candidate'
  }

  #becomeLeader (): void {
    this.#reset(this.#term)
    this.#lead = this.#id
    this.#role = 'leader'
    for (const voter of this.#voters) {
      if (voter !== this.#id) this.#progress.set(voter, new Progress(this.#log.lastIndex + 1))
    }
    // §8: a new leader commits a blank entry of its own term, which commits everything before it (§5.4.2)
    // and tells the leader what is committed; it also gates membership changes (see proposeConfChange).
    this.#termStart = this.#appendLocal('noop', EMPTY).index
  }

  // ── Elections ─────────────────────────────────────────────────────────────

  #tickElection (): void {
    this.#electionElapsed++
    if (this.#electionElapsed >= this.#randomizedElectionTimeout) {
      this.#electionElapsed = 0
      this.#resetElectionTimeout()
      this.#hup(false)
    }
  }

  /** Starts an election, with a pre-vote round first unless configured off or asked by the leader. */
  #hup (transfer: boolean): void {
    if (this.#role === 'leader' || !this.#promotable()) return
    if (this.#preVote && !transfer) this.#campaign('pre', false)
    else this.#campaign('real', transfer)
  }

  #campaign (kind: 'pre' | 'real', transfer: boolean): void {
    let voteTerm: number
    if (kind === 'pre') {
      this.#becomePreCandidate()
      voteTerm = this.#term + 1
    } else {
      this.#becomeCandidate()
      voteTerm = this.#term
    }
    this.#votes.set(this.#id, true)
    if (this.#tally().granted >= quorum(this.#voters.size)) {
      if (kind === 'pre') this.#campaign('real', transfer)
      else this.#becomeLeader()
      return
    }
    for (const voter of this.#voters) {
      if (voter === this.#id) continue
      this.#send({ type: 'vote', to: voter, term: voteTerm, preVote: kind === 'pre', transfer, lastIndex: this.#log.lastIndex, lastTerm: this.#log.lastTerm })
    }
  }

  /**
   * Whether this member may campaign: when it is a voter, and also when the
   * latest configuration removes it but is not known to be committed: the
   * group may still need it to commit that very entry (dissertation §4.2.2;
   * its own vote does not count then, see #tally). A member that knows its
   * removal is committed, or that has no configuration yet (a joiner waiting
   * for the leader), never campaigns.
   */
  #promotable (): boolean {
    return this.#voters.has(this.#id) || (this.#confIndex > this.#log.committed && this.#voters.size > 0)
  }

  #tally (): { granted: number, rejected: number } {
    let granted = 0
    let rejected = 0
    for (const [voter, vote] of this.#votes) {
      if (!this.#voters.has(voter)) continue
      if (vote) granted++
      else rejected++
    }
    return { granted, rejected }
  }

  #handleVote (m: VoteRequest): void {
    // Here m.term ≥ our term (a real vote at a higher term already made us a follower of that term).
    const canVote = this.#vote === m.from ||
      (this.#vote === null && this.#lead === null) ||
      (m.preVote && m.term > this.#term)
    if (canVote && this.#log.isUpToDate(m.lastIndex, m.lastTerm)) {
      this.#send({ type: 'voteResponse', to: m.from, term: m.term, preVote: m.preVote, granted: true })
      if (!m.preVote) {
        this.#vote = m.from
        this.#electionElapsed = 0
      }
    } else {
      this.#send({ type: 'voteResponse', to: m.from, term: this.#term, preVote: m.preVote, granted: false })
    }
  }

  #stepCandidate (m: Exclude<Message, VoteRequest>): void {
    switch (m.type) {
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        // A leader of this term exists (§5.2): follow it.
        this.#becomeFollower(this.#term, m.from)
        this.#stepFollower(m)
        return
      case 'voteResponse':
        this.#handleVoteResponse(m)
        return
      default:
    }
  }

  #handleVoteResponse (m: VoteResponse): void {
    const pre = this.#role === 'precandidate'
    if (m.preVote !== pre) return
    if (pre ? (m.granted && m.term !== this.#term + 1) : m.term !== this.#term) return
    this.#votes.set(m.from, m.granted)
    const { granted, rejected } = this.#tally()
    const needed = quorum(this.#voters.size)
    if (granted >= needed) {
      if (pre) this.#campaign('real', false)
      else this.#becomeLeader()
    } else if (rejected >= needed) {
      this.#becomeFollower(this.#term, null)
    }
  }

  // ── Follower ──────────────────────────────────────────────────────────────

  #stepFollower (m: Exclude<Message, VoteRequest>): void {
    switch (m.type) {
      case 'append':
        this.#heardFromLeader(m.from)
        this.#handleAppend(m)
        return
      case 'heartbeat':
        this.#heardFromLeader(m.from)
        this.#handleHeartbeat(m)
        return
      case 'snapshot':
        this.#heardFromLeader(m.from)
        this.#handleSnapshot(m)
        return
      case 'timeoutNow':
        // The leader asks us to take over: campaign now, skipping the pre-vote (dissertation §3.10).
        this.#hup(true)
        return
      default:
    }
  }

  #heardFromLeader (leader: NodeId): void {
    this.#electionElapsed = 0
    this.#lead = leader
  }

  #handleAppend (m: AppendRequest): void {
    const log = this.#log
    let prevIndex = m.prevIndex
    let prevTerm = m.prevTerm
    let entries = m.entries
    // Entries up to our commit index are known to match the leader's (Log Matching, Leader
    // Completeness): skip them, and check consistency at the commit index instead.
    if (prevIndex < log.committed) {
      const skip = log.committed - prevIndex
      if (skip >= entries.length) {
        this.#respondAppend(m.from, true, log.committed)
        return
      }
      entries = entries.slice(skip)
      prevIndex = log.committed
      prevTerm = log.term(prevIndex)!
    }
    const term = log.term(prevIndex)
    if (term !== prevTerm) {
      // §5.3 consistency check failed. Hint the largest index whose term is at most the leader's
      // term at prevIndex, so the leader can skip every entry of a conflicting term in one round.
      const hintIndex = log.lastIndexWithTermAtMost(prevTerm, Math.min(prevIndex, log.lastIndex))
      const hintTerm = log.term(hintIndex) ?? 0
      this.#send({ type: 'appendResponse', to: m.from, term: this.#term, success: false, index: m.prevIndex, hintIndex, hintTerm })
      return
    }
    const { truncated, added } = log.merge(entries)
    if (truncated || (added && entries.some((e) => e.kind === 'config'))) this.#recomputeConf()
    const lastNew = prevIndex + entries.length
    log.commitTo(Math.min(m.commit, lastNew))
    this.#respondAppend(m.from, true, lastNew)
  }

  #respondAppend (to: NodeId, success: boolean, index: number): void {
    this.#send({ type: 'appendResponse', to, term: this.#term, success, index, hintIndex: 0, hintTerm: 0 })
  }

  #handleHeartbeat (m: Heartbeat): void {
    // The leader caps `commit` at what it knows we hold; we hold at least that (acknowledged only once persisted).
    this.#log.commitTo(Math.min(m.commit, this.#log.lastIndex))
    this.#send({ type: 'heartbeatResponse', to: m.from, term: this.#term })
  }

  #handleSnapshot (m: SnapshotRequest): void {
    const s = m.snapshot
    const log = this.#log
    if (s.index <= log.committed) {
      this.#respondAppend(m.from, true, log.committed)
      return
    }
    if (log.term(s.index) === s.term) {
      // We hold the snapshot's last entry: what follows may still be good; only the commit index moves.
      log.commitTo(s.index)
      this.#respondAppend(m.from, true, s.index)
      return
    }
    // Our log diverges before the snapshot's end (or stops short of it): replace it whole (§7).
    log.restore(s.index, s.term)
    this.#snapshot = s
    this.#pendingSnapshot = s
    this.#recomputeConf()
    this.#respondAppend(m.from, true, s.index)
  }

  // ── Leader ────────────────────────────────────────────────────────────────

  #tickLeader (): void {
    this.#heartbeatElapsed++
    this.#electionElapsed++
    if (this.#electionElapsed >= this.#electionTicks) {
      this.#electionElapsed = 0
      if (this.#checkQuorum && !this.#quorumActive()) {
        this.#becomeFollower(this.#term, null)
        return
      }
      for (const pr of this.#progress.values()) pr.recentActive = false
      this.#transferee = null // a transfer that has not happened within an election timeout is abandoned
    }
    for (const [id, pr] of this.#progress) {
      if (pr.state === 'snapshot' && ++pr.snapshotTicks > this.#electionTicks) {
        // The snapshot or its acknowledgement was lost: probe again, which resends it if still needed.
        pr.becomeProbe()
        this.#sendAppend(id, true)
      }
    }
    if (this.#heartbeatElapsed >= this.#heartbeatTicks) {
      this.#heartbeatElapsed = 0
      for (const [id, pr] of this.#progress) {
        this.#send({ type: 'heartbeat', to: id, term: this.#term, commit: Math.min(pr.match, this.#log.committed) })
      }
    }
  }

  #quorumActive (): boolean {
    let active = 0
    for (const voter of this.#voters) {
      if (voter === this.#id || this.#progress.get(voter)?.recentActive === true) active++
    }
    return active >= quorum(this.#voters.size)
  }

  #stepLeader (m: Exclude<Message, VoteRequest>): void {
    const pr = this.#progress.get(m.from)
    if (pr === undefined) return
    switch (m.type) {
      case 'appendResponse':
        pr.recentActive = true
        this.#handleAppendResponse(m, pr)
        return
      case 'heartbeatResponse':
        pr.recentActive = true
        pr.probeSent = false
        // A full window may be full of lost messages: free a slot so replication can probe again.
        if (pr.state === 'replicate' && pr.inflight.length >= this.#maxInflight) pr.inflight.shift()
        if (pr.match < this.#log.lastIndex) this.#sendAppend(m.from, true)
        return
      default:
    }
  }

  #handleAppendResponse (m: AppendResponse, pr: Progress): void {
    if (!m.success) {
      // Stale rejections (of a message older than the latest probe, or below what matched since) are ignored.
      if (pr.state === 'snapshot') return
      if (pr.state === 'replicate' && m.index <= pr.match) return
      if (pr.state === 'probe' && m.index !== pr.next - 1) return
      const probe = m.hintTerm > 0 ? this.#log.lastIndexWithTermAtMost(m.hintTerm, m.hintIndex) : m.hintIndex
      pr.becomeProbe()
      // Progress is guaranteed: the next probe is strictly below the refused one, and never below a match.
      pr.next = Math.max(pr.match + 1, Math.min(probe + 1, m.index))
      this.#sendAppend(m.from, true)
      return
    }
    const moved = pr.acknowledge(m.index)
    if (pr.state === 'probe' && moved) pr.becomeReplicate()
    else if (pr.state === 'probe') pr.probeSent = false
    else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
      pr.becomeProbe()
      pr.becomeReplicate()
    }
    if (moved && this.#maybeCommit()) this.#broadcastPending = true
    if (this.#role !== 'leader') return // the commit removed us from the group
    while (this.#sendAppend(m.from, false)) { /* fill the window */ }
    if (m.from === this.#transferee && pr.match === this.#log.lastIndex) {
      this.#send({ type: 'timeoutNow', to: m.from, term: this.#term })
    }
  }

  /**
   * §5.3, §5.4.2: the highest index held by a quorum of voters becomes
   * committed, but only if its entry is of the current term; earlier entries
   * are committed indirectly through it. Returns whether commit moved.
   */
  #maybeCommit (): boolean {
    if (this.#role !== 'leader') return false
    const matches: number[] = []
    for (const voter of this.#voters) {
      matches.push(voter === this.#id ? this.#log.lastIndex : this.#progress.get(voter)?.match ?? 0)
    }
    matches.sort((a, b) => b - a)
    const candidate = matches[quorum(this.#voters.size) - 1] ?? 0
    if (candidate <= this.#log.committed || this.#log.term(candidate) !== this.#term) return false
    this.#log.commitTo(candidate)
    if (!this.#voters.has(this.#id) && this.#log.committed >= this.#confIndex) {
      // Our own removal is committed: step down and let the remaining members elect (dissertation §4.2.2).
      this.#becomeFollower(this.#term, null)
    }
    return true
  }

  /**
   * Sends `to` what it lacks: entries from `next`, or the snapshot when they are
   * compacted away. `allowEmpty` lets an empty AppendEntries carry a new commit
   * index or probe. Returns whether entries were sent.
   */
  #sendAppend (to: NodeId, allowEmpty: boolean): boolean {
    const pr = this.#progress.get(to)
    if (pr === undefined || pr.isPaused(this.#maxInflight)) return false
    const prevIndex = pr.next - 1
    const prevTerm = this.#log.term(prevIndex)
    if (prevTerm === undefined) {
      const snapshot = this.#snapshot
      if (snapshot === null) throw new RaftError('RAFT_ERR_STATE', `entry ${prevIndex} is compacted but no snapshot is held`)
      pr.becomeSnapshot(snapshot.index)
      this.#send({ type: 'snapshot', to, term: this.#term, snapshot })
      return false
    }
    const entries = this.#log.slice(pr.next, pr.next + this.#maxEntries)
    if (entries.length === 0 && !allowEmpty) return false
    this.#send({ type: 'append', to, term: this.#term, prevIndex, prevTerm, entries, commit: this.#log.committed })
    if (pr.state === 'replicate') {
      if (entries.length > 0) {
        const last = entries.at(-1)!.index
        pr.next = last + 1
        pr.inflight.push(last)
      }
    } else {
      pr.probeSent = true
    }
    return entries.length > 0
  }

  /** New entries or a new commit index reach every follower, once per ready() however many proposals came. */
  #flushBroadcast (): void {
    if (!this.#broadcastPending) return
    this.#broadcastPending = false
    if (this.#role !== 'leader') return
    for (const [id, pr] of this.#progress) {
      // An empty message to a follower with appends in flight would only race them; the next
      // heartbeat carries the commit index to it instead.
      const idle = pr.state === 'probe' || pr.next - 1 === pr.match
      let sent = false
      while (this.#sendAppend(id, false)) sent = true
      if (!sent && idle) this.#sendAppend(id, true)
    }
  }

  #assertCanPropose (): void {
    if (this.#role !== 'leader') throw new NotLeaderError(this.#id, this.#lead)
    if (this.#transferee !== null) throw new RaftError('RAFT_ERR_TRANSFERRING', `leadership is being transferred to ${this.#transferee}`)
  }

  #appendLocal (kind: Entry['kind'], data: Uint8Array, commit = true): { index: number, term: number } {
    const entry: Entry = { index: this.#log.lastIndex + 1, term: this.#term, kind, data }
    this.#log.append(entry)
    this.#broadcastPending = true
    if (commit) this.#maybeCommit() // a group of one commits on its own vote
    return { index: entry.index, term: entry.term }
  }

  // ── Membership ────────────────────────────────────────────────────────────

  /** The configuration in force is the latest config entry in the log, else the snapshot's. */
  #recomputeConf (): void {
    for (let i = this.#log.lastIndex; i > this.#log.snapshotIndex; i--) {
      const entry = this.#log.entry(i)!
      if (entry.kind === 'config') {
        this.#setConf(decodeConf(entry).conf.voters, i)
        return
      }
    }
    this.#setConf(this.#snapshot?.conf.voters ?? [], this.#log.snapshotIndex)
  }

  #confAt (index: number): ConfState {
    for (let i = index; i > this.#log.snapshotIndex; i--) {
      const entry = this.#log.entry(i)!
      if (entry.kind === 'config') return decodeConf(entry).conf
    }
    return { voters: [...(this.#snapshot?.conf.voters ?? [])] }
  }

  #setConf (voters: readonly NodeId[], index: number): void {
    this.#voters = new Set(voters)
    this.#confIndex = index
    if (this.#role !== 'leader') return
    for (const id of [...this.#progress.keys()]) {
      if (!this.#voters.has(id)) this.#progress.delete(id)
    }
    if (this.#transferee !== null && !this.#voters.has(this.#transferee)) this.#transferee = null
    for (const voter of this.#voters) {
      // A new member is probed from our last entry; the hints walk it back to where its log stops.
      if (voter !== this.#id && !this.#progress.has(voter)) this.#progress.set(voter, new Progress(this.#log.lastIndex))
    }
  }

  // ── Plumbing ──────────────────────────────────────────────────────────────

  #send (m: DistributiveOmit<Message, 'from'>): void {
    this.#messages.push({ ...m, from: this.#id } as Message)
  }

  #hardState (): HardState {
    return { term: this.#term, vote: this.#vote, commit: this.#log.committed }
  }

  #resetElectionTimeout (): void {
    this.#randomizedElectionTimeout = this.#electionTicks + Math.floor(this.#random() * this.#electionTicks)
  }

  #assertNoReady (): void {
    if (this.#inReady !== null) throw new RaftError('RAFT_ERR_READY_PENDING', 'the last ready() has not been advanced')
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

function sameHardState (a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit
}

function definedOnly<T extends object> (value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}
