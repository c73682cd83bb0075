/**
 * The data the Raft core takes and returns: log entries, the hard state that
 * must survive a crash, snapshots, membership, and the messages peers
 * exchange. Plain data only, so the core stays pure and a transport or the WAL
 * can encode any of it.
 */

/** A member's name; stable for its life (the manager uses the node id). */
export type NodeId = string

/**
 * `normal` carries a command of the state machine; `config` a membership
 * (see encodeConf); `noop` is the empty entry a new leader appends so that it
 * commits an entry of its own term (Raft §5.4.2, §8).
 */
export type EntryKind = 'normal' | 'config' | 'noop'

export interface Entry {
  readonly index: number
  readonly term: number
  readonly kind: EntryKind
  readonly data: Uint8Array
}

/** What a member must have on disk before it sends any message (Raft figure 2: currentTerm, votedFor; commit for a fast restart). */
export interface HardState {
  readonly term: number
  readonly vote: NodeId | null
  readonly commit: number
}

/** The voting members. Sorted; a group of one is `[self]`. */
export interface ConfState {
  readonly voters: readonly NodeId[]
}

export interface ConfChange {
  readonly type: 'add' | 'remove'
  readonly node: NodeId
}

/** The state machine as of `index` (whose entry had `term`), with the membership in force there. */
export interface Snapshot {
  readonly index: number
  readonly term: number
  readonly conf: ConfState
  readonly data: Uint8Array
}

/** What a restarted member reads back from its disk (see wal.ts). */
export interface PersistedState {
  readonly hardState: HardState
  readonly snapshot: Snapshot | null
  /** Contiguous, starting right after the snapshot (or at 1). */
  readonly entries: readonly Entry[]
}

interface Envelope {
  readonly from: NodeId
  readonly to: NodeId
  readonly term: number
}

/**
 * RequestVote (§5.2). A pre-vote (dissertation §9.6) asks "would you vote for
 * me at `term`?" without anyone changing term; `transfer` marks a campaign
 * started by the leader's TimeoutNow, which voters honour even while they
 * still hear from that leader.
 */
export interface VoteRequest extends Envelope {
  readonly type: 'vote'
  readonly preVote: boolean
  readonly transfer: boolean
  readonly lastIndex: number
  readonly lastTerm: number
}

export interface VoteResponse extends Envelope {
  readonly type: 'voteResponse'
  readonly preVote: boolean
  readonly granted: boolean
}

/** AppendEntries (§5.3). */
export interface AppendRequest extends Envelope {
  readonly type: 'append'
  readonly prevIndex: number
  readonly prevTerm: number
  readonly entries: readonly Entry[]
  readonly commit: number
}

/**
 * On success `index` is the last index known to match the leader's log. On a
 * rejection `index` is the `prevIndex` refused, and the hint lets the leader
 * skip a whole term per round trip: the follower's term at `prevIndex`
 * (`hintTerm`, 0 when its log is shorter) and the first index it holds of that
 * term (or its last index + 1).
 */
export interface AppendResponse extends Envelope {
  readonly type: 'appendResponse'
  readonly success: boolean
  readonly index: number
  readonly hintIndex: number
  readonly hintTerm: number
}

/** Keeps followers from campaigning; `commit` is capped at what the follower is known to hold. */
export interface Heartbeat extends Envelope {
  readonly type: 'heartbeat'
  readonly commit: number
}

export interface HeartbeatResponse extends Envelope {
  readonly type: 'heartbeatResponse'
}

/** InstallSnapshot (§7), whole: the state machine is small enough to send in one message. Answered by an AppendResponse. */
export interface SnapshotRequest extends Envelope {
  readonly type: 'snapshot'
  readonly snapshot: Snapshot
}

/** Leadership transfer (dissertation §3.10): "your log is as long as mine, campaign now". */
export interface TimeoutNow extends Envelope {
  readonly type: 'timeoutNow'
}

export type Message =
  | VoteRequest | VoteResponse
  | AppendRequest | AppendResponse
  | Heartbeat | HeartbeatResponse
  | SnapshotRequest | TimeoutNow

export type MessageType = Message['type']

export type Role = 'follower' | 'precandidate' | 'candidate' | 'leader'

/**
 * What the caller must do next, in this order:
 *  1. persist `snapshot` (if any), then `entries` (the first one's index
 *     truncates whatever the log held from there on), then `hardState`, durably;
 *  2. send `messages` (only now: a vote or an acknowledgement must not outrun the disk);
 *  3. restore the state machine from `snapshot` (if any), then apply `committed` in order;
 *  4. call advance().
 */
export interface Ready {
  readonly hardState: HardState | null
  readonly entries: readonly Entry[]
  readonly snapshot: Snapshot | null
  readonly messages: readonly Message[]
  readonly committed: readonly Entry[]
}
