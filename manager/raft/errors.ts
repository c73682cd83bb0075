/**
 * The replicated log's error registry: one class, stable codes. Programs (and
 * tests) match on `code`; people read the one-line message. Add codes here,
 * never reuse one for a different meaning.
 */
import type { NodeId } from './types.ts'

export type RaftErrorCode =
  | 'RAFT_ERR_CONFIG' // options that fail validation
  | 'RAFT_ERR_NOT_LEADER' // a proposal or membership change made on a node that is not the leader (see NotLeaderError)
  | 'RAFT_ERR_TRANSFERRING' // the leader is handing leadership over and takes no proposal meanwhile
  | 'RAFT_ERR_CONF_PENDING' // a membership change while another is uncommitted, or before the leader committed in its term
  | 'RAFT_ERR_CONF_INVALID' // adding a member twice, removing a non-member or the last one
  | 'RAFT_ERR_COMPACT' // compact() at an index that is not applied, or already compacted
  | 'RAFT_ERR_READY_PENDING' // step/tick/propose/compact between ready() and advance()
  | 'RAFT_ERR_STATE' // a restored state that contradicts itself (gap in the log, commit beyond it)
  | 'RAFT_ERR_WAL_CORRUPT' // a record or snapshot whose checksum or shape is wrong, not at the torn tail
  | 'RAFT_ERR_STORAGE' // the write-ahead log failed (EIO, ENOSPC): the log stops, nothing more is acknowledged
  | 'RAFT_ERR_DROPPED' // the proposal's entry was replaced by another leader's: it will never be applied
  | 'RAFT_ERR_OUTCOME_UNKNOWN' // the entry may have been applied, but inside a snapshot from the leader: its result is not known here
  | 'RAFT_ERR_CLOSED' // the replicated log was closed before the proposal was applied
  | 'RAFT_ERR_DECODE' // a command or message that cannot be decoded

export class RaftError extends Error {
  readonly code: RaftErrorCode
  readonly details: readonly string[]

  constructor (code: RaftErrorCode, message: string, details: readonly string[] = []) {
    super(message)
    this.name = 'RaftError'
    this.code = code
    this.details = details
  }
}

/** A proposal made on a follower or candidate: retry on `leaderId` when it is known. */
export class NotLeaderError extends RaftError {
  /** The leader this node last heard from in its current term; null when none is known. */
  readonly leaderId: NodeId | null

  constructor (self: NodeId, leaderId: NodeId | null) {
    super('RAFT_ERR_NOT_LEADER', leaderId === null
      ? `${self} is not the leader and knows of no leader yet`
      : `${self} is not the leader; the leader is ${leaderId}`)
    this.name = 'NotLeaderError'
    this.leaderId = leaderId
  }
}
