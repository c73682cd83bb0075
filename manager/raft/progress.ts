/**
 * What a leader knows of one follower's log, and how fast it may send to it.
 *
 *  - probe: the leader does not know where the follower's log stops matching;
 *    it sends one AppendEntries at a time and waits for the answer (or the
 *    next heartbeat response) before trying again.
 *  - replicate: the follower matched; entries are streamed optimistically, at
 *    most `maxInflight` messages unacknowledged.
 *  - snapshot: the entries the follower needs are compacted away; one
 *    InstallSnapshot is outstanding, nothing else is sent until it is
 *    acknowledged or times out.
 *
 * Invariant: match < next. `match` only grows within a term (a follower never
 * loses an entry it acknowledged, because it acknowledges only what it persisted).
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot'

export class Progress {
  match = 0
  next: number
  state: ProgressState = 'probe'
  /** probe: an AppendEntries is outstanding. */
  probeSent = false
  /** replicate: last index of each unacknowledged message, ascending. */
  inflight: number[] = []
  /** snapshot: the index of the snapshot sent, and ticks spent waiting for its acknowledgement. */
  pendingSnapshot = 0
  snapshotTicks = 0
  /** Heard from since the last check-quorum round. */
  recentActive = false

  constructor (next: number) {
    this.next = next
  }

  becomeProbe (): void {
    // After a snapshot, the follower holds at least the snapshot: probe from there.
    this.next = this.state === 'snapshot' ? Math.max(this.match + 1, this.pendingSnapshot + 1) : this.match + 1
    this.state = 'probe'
    this.probeSent = false
    this.inflight = []
    this.pendingSnapshot = 0
  }

  becomeReplicate (): void {
    this.state = 'replicate'
    this.next = this.match + 1
    this.probeSent = false
    this.inflight = []
  }

  becomeSnapshot (index: number): void {
    this.state = 'snapshot'
    this.pendingSnapshot = index
    this.snapshotTicks = 0
    this.probeSent = false
    this.inflight = []
  }

  /** Records an acknowledgement of everything up to `index`; whether `match` moved. */
  acknowledge (index: number): boolean {
    this.inflight = this.inflight.filter((last) => last > index)
    if (index <= this.match) return false
    this.match = index
    this.next = Math.max(this.next, index + 1)
    return true
  }

  isPaused (maxInflight: number): boolean {
    switch (this.state) {
      case 'probe': return this.probeSent
      case 'replicate': return this.inflight.length >= maxInflight
      case 'snapshot': return true
    }
  }
}
