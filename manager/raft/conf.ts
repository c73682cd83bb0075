/**
 * Membership: the voters of a group and how a change is carried in the log.
 *
 * Changes are single-server (Raft dissertation §4.1): each adds or removes one
 * voter, so any majority of the old configuration overlaps any majority of the
 * new one and no joint consensus is needed. A config entry carries the whole
 * new voter list (not only the change), so a member finds the configuration in
 * force by reading the latest config entry in its log, and a truncated config
 * entry reverts to the one before it without any undo logic.
 */
import { RaftError } from './errors.ts'
import type { ConfChange, ConfState, Entry, NodeId } from './types.ts'

interface ConfEntryData {
  readonly voters: readonly NodeId[]
  /** The change that produced this configuration; null for the bootstrap entry. */
  readonly change: ConfChange | null
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export function encodeConf (conf: ConfState, change: ConfChange | null): Uint8Array {
  const data: ConfEntryData = { voters: [...conf.voters].sort(), change }
  return encoder.encode(JSON.stringify(data))
}

export function decodeConf (entry: Entry): { conf: ConfState, change: ConfChange | null } {
  let parsed: unknown
  try {
    parsed = JSON.parse(decoder.decode(entry.data))
  } catch {
    throw new RaftError('RAFT_ERR_DECODE', `config entry ${entry.index} is not JSON`)
  }
  const data = parsed as Partial<ConfEntryData> | null
  if (data === null || typeof data !== 'object' || !Array.isArray(data.voters) || !data.voters.every((v) => typeof v === 'string')) {
    throw new RaftError('RAFT_ERR_DECODE', `config entry ${entry.index} has no voter list`)
  }
  return { conf: { voters: [...data.voters].sort() }, change: data.change ?? null }
}

/** The configuration after `change`, or a RAFT_ERR_CONF_INVALID error saying why it cannot be made. */
export function changeConf (conf: ConfState, change: ConfChange): ConfState {
  const voters = new Set(conf.voters)
  if (typeof change.node !== 'string' || change.node === '') throw new RaftError('RAFT_ERR_CONF_INVALID', 'a member id must be a non-empty string')
  if (change.type === 'add') {
    if (voters.has(change.node)) throw new RaftError('RAFT_ERR_CONF_INVALID', `${change.node} is already a member`)
    voters.add(change.node)
  } else if (change.type === 'remove') {
    if (!voters.has(change.node)) throw new RaftError('RAFT_ERR_CONF_INVALID', `${change.node} is not a member`)
    if (voters.size === 1) throw new RaftError('RAFT_ERR_CONF_INVALID', `${change.node} is the last member and cannot be removed`)
    voters.delete(change.node)
  } else {
    throw new RaftError('RAFT_ERR_CONF_INVALID', `unknown membership change ${String((change as { type: unknown }).type)}`)
  }
  return { voters: [...voters].sort() }
}

/** Votes (or acknowledgements) that make a majority of `size` voters. */
export function quorum (size: number): number {
  return Math.floor(size / 2) + 1
}
