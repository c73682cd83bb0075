/**
 * One member's view of the log: the entries after its latest snapshot, the
 * commit and applied indexes, and which suffix has not been handed out for
 * persistence yet.
 *
 * Invariants (checked where they could break, never silently repaired):
 *  - entries are contiguous: entries[k].index === snapshotIndex + 1 + k;
 *  - terms never decrease along the log;
 *  - snapshotIndex ≤ applied ≤ committed ≤ lastIndex;
 *  - nothing at or below `committed` is ever truncated (State Machine Safety
 *    rests on it; a request to do so means a bug or a corrupted peer, and throws).
 */
import { RaftError } from './errors.ts'
import type { Entry } from './types.ts'

export class RaftLog {
  #snapshotIndex: number
  #snapshotTerm: number
  #entries: Entry[]
  /** Lowest index whose entry has not been returned by unstable() since it last changed. */
  #unstableFrom: number
  committed: number
  applied: number

  constructor (snapshotIndex: number, snapshotTerm: number, entries: readonly Entry[], committed: number) {
    this.#snapshotIndex = snapshotIndex
    this.#snapshotTerm = snapshotTerm
    this.#entries = [...entries]
    entries.forEach((entry, k) => {
      if (entry.index !== snapshotIndex + 1 + k) throw new RaftError('RAFT_ERR_STATE', `restored log has a gap: entry ${k} has index ${entry.index}, expected ${snapshotIndex + 1 + k}`)
      const before = k === 0 ? snapshotTerm : entries[k - 1]!.term
      if (entry.term < before) throw new RaftError('RAFT_ERR_STATE', `restored log goes back in term at index ${entry.index}`)
    })
    this.#unstableFrom = this.lastIndex + 1
    this.committed = Math.max(committed, snapshotIndex)
    if (this.committed > this.lastIndex) throw new RaftError('RAFT_ERR_STATE', `restored commit index ${committed} is beyond the last entry ${this.lastIndex}`)
    this.applied = snapshotIndex
  }

  get snapshotIndex (): number { return this.#snapshotIndex }
  get snapshotTerm (): number { return this.#snapshotTerm }
  get lastIndex (): number { return this.#snapshotIndex + this.#entries.length }
  get lastTerm (): number { return this.term(this.lastIndex)! }

  /** The term of entry `index`; undefined when compacted away or beyond the end. Index 0 has term 0. */
  term (index: number): number | undefined {
    if (index === this.#snapshotIndex) return this.#snapshotTerm
    if (index < this.#snapshotIndex || index > this.lastIndex) return undefined
    return this.#entries[index - this.#snapshotIndex - 1]!.term
  }

  entry (index: number): Entry | undefined {
    if (index <= this.#snapshotIndex) return undefined
    return this.#entries[index - this.#snapshotIndex - 1]
  }

  /** Entries with lo ≤ index < hi, clamped to what is held. */
  slice (lo: number, hi: number): Entry[] {
    const from = Math.max(lo, this.#snapshotIndex + 1) - this.#snapshotIndex - 1
    const to = Math.min(hi, this.lastIndex + 1) - this.#snapshotIndex - 1
    return from >= to ? [] : this.#entries.slice(from, to)
  }

  /** §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate (lastIndex: number, lastTerm: number): boolean {
    return lastTerm > this.lastTerm || (lastTerm === this.lastTerm && lastIndex >= this.lastIndex)
  }

  /** Appends after the last entry (a leader's own proposals). */
  append (entry: Entry): void {
    if (entry.index !== this.lastIndex + 1) throw new RaftError('RAFT_ERR_STATE', `append at ${entry.index} after last index ${this.lastIndex}`)
    this.#entries.push(entry)
  }

  /**
   * Merges a leader's entries that follow an index already known to match:
   * entries already present with the same term are kept (a duplicate or
   * reordered message must not truncate what a later one appended), the first
   * conflicting one and everything after it are replaced (§5.3).
   * Returns whether anything was truncated or added.
   */
  merge (entries: readonly Entry[]): { truncated: boolean, added: boolean } {
    let k = 0
    while (k < entries.length && this.term(entries[k]!.index) === entries[k]!.term) k++
    if (k === entries.length) return { truncated: false, added: false }
    const first = entries[k]!
    if (first.index <= this.#snapshotIndex) throw new RaftError('RAFT_ERR_STATE', `entry ${first.index} conflicts with the snapshot at ${this.#snapshotIndex}`)
    if (first.index > this.lastIndex + 1) throw new RaftError('RAFT_ERR_STATE', `entry ${first.index} would leave a gap after ${this.lastIndex}`)
    const truncated = first.index <= this.lastIndex
    if (truncated) {
      if (first.index <= this.committed) throw new RaftError('RAFT_ERR_STATE', `refusing to truncate committed entry ${first.index} (commit ${this.committed})`)
      this.#entries.length = first.index - this.#snapshotIndex - 1
      this.#unstableFrom = Math.min(this.#unstableFrom, first.index)
    }
    for (let j = k; j < entries.length; j++) this.#entries.push(entries[j]!)
    return { truncated, added: true }
  }

  commitTo (index: number): boolean {
    if (index <= this.committed) return false
    if (index > this.lastIndex) throw new RaftError('RAFT_ERR_STATE', `commit ${index} beyond the last index ${this.lastIndex}`)
    this.committed = index
    return true
  }

  /** Entries to persist, from the first one changed since they were last handed out. */
  unstable (): Entry[] {
    return this.slice(this.#unstableFrom, this.lastIndex + 1)
  }

  stableTo (index: number): void {
    this.#unstableFrom = Math.max(this.#unstableFrom, index + 1)
  }

  /** Drops entries up to `index`, which becomes the snapshot point. */
  compact (index: number): void {
    const term = this.term(index)
    if (term === undefined || index <= this.#snapshotIndex) throw new RaftError('RAFT_ERR_COMPACT', `cannot compact at ${index}: the log holds ${this.#snapshotIndex + 1}..${this.lastIndex}`)
    this.#entries = this.#entries.slice(index - this.#snapshotIndex)
    this.#snapshotIndex = index
    this.#snapshotTerm = term
  }

  /** Replaces the whole log by a snapshot received from the leader. */
  restore (index: number, term: number): void {
    this.#entries = []
    this.#snapshotIndex = index
    this.#snapshotTerm = term
    this.#unstableFrom = index + 1
    this.committed = index
  }

  /**
   * The largest index ≤ `index` whose term is ≤ `term`, for skipping a whole
   * term per AppendEntries round trip. Stops at the snapshot (returning one
   * below it when even the snapshot's term is larger: the follower needs it).
   */
  lastIndexWithTermAtMost (term: number, index: number): number {
    let i = Math.min(index, this.lastIndex)
    while (i > this.#snapshotIndex && this.term(i)! > term) i--
    if (i === this.#snapshotIndex && this.#snapshotTerm > term) return Math.max(0, i - 1)
    return i
  }
}
