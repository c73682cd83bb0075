/**
 * The forwarder's answer cache: upstream response bytes keyed by question,
 * served back with the client's ID and TTLs aged by the time spent in the
 * cache. Pure: the clock is injected (`now()` in milliseconds), so tests age
 * entries without sleeping.
 *
 * Key: the qname (its wire bytes with ASCII letters lowered, wire.ts
 * nameKey), then qtype, qclass, the DO bit, and whether the query had EDNS at
 * all. The last one is beyond the brief's key on purpose: an answer fetched
 * with EDNS carries an OPT record, and RFC 6891 §7 forbids sending OPT to a
 * client that did not send one; glibc clients on a node are uniform, so the
 * cost in hit rate is nil. Entries are grouped by name, so the hot path looks
 * up the very string it already looked up among the cluster names (V8 keeps
 * a string's hash) instead of building and hashing a composite key.
 *
 * Lifetimes: positive answers live for their smallest answer TTL (capped by
 * `maxTtl`); negative ones (NXDOMAIN, or NOERROR without answers) for
 * min(SOA TTL, SOA MINIMUM) per RFC 2308 §5 (capped by `maxNegativeTtl`), and
 * not at all without an SOA (RFC 2308 §5: SHOULD NOT cache). SERVFAIL, other
 * errors, truncated answers and TTL 0 are never stored.
 *
 * Bounded, least recently used name first, by second chance (CLOCK): a hit
 * only marks its entry, and eviction walks the names from the oldest
 * insertion, moving a name with a marked entry to the end (marks cleared)
 * and dropping the first without one. Moving an entry on every hit instead
 * (Map delete + set) would triple the Map work per cached answer, already
 * the largest item of dnsd's own code in a profile of cached names.
 */
import { restoreClient } from './forward-message.ts'
import { sameQuestion, walkMessage, type WalkedMessage } from './rr-walk.ts'
import { HEADER_LENGTH, RCODE } from './wire.ts'
import { nameKey } from './wire.ts'

export interface ForwardCacheOptions {
  /** Milliseconds, monotonic enough for ageing; default `performance.now()`. */
  readonly now?: () => number
  readonly maxEntries?: number
  /** Seconds; cap for positive answers. */
  readonly maxTtl?: number
  /** Seconds; cap for negative answers. */
  readonly maxNegativeTtl?: number
}

export const FORWARD_CACHE_DEFAULTS = Object.freeze({ maxEntries: 10_000, maxTtl: 300, maxNegativeTtl: 60 })

type EdnsState = 'none' | 'edns' | 'dnssec-ok'

interface Entry {
  readonly type: number
  readonly klass: number
  readonly edns: EdnsState
  readonly response: Buffer
  readonly walked: WalkedMessage
  readonly storedAt: number
  readonly expiresAt: number
  /** Hit since it was stored or last spared by eviction. */
  used: boolean
}

export class ForwardCache {
  readonly #now: () => number
  readonly #maxEntries: number
  readonly #maxTtl: number
  readonly #maxNegativeTtl: number
  /** nameKey → the entries of that name (a few: one per type and EDNS state asked); insertion order is CLOCK order. */
  readonly #names = new Map<string, Entry[]>()
  #size = 0
  #hits = 0
  #misses = 0

  constructor (options: ForwardCacheOptions = {}) {
    this.#now = options.now ?? (() => performance.now())
    this.#maxEntries = Math.max(1, Math.floor(options.maxEntries ?? FORWARD_CACHE_DEFAULTS.maxEntries))
    this.#maxTtl = Math.max(0, options.maxTtl ?? FORWARD_CACHE_DEFAULTS.maxTtl)
    this.#maxNegativeTtl = Math.max(0, options.maxNegativeTtl ?? FORWARD_CACHE_DEFAULTS.maxNegativeTtl)
  }

  get size (): number { return this.#size }
  get hits (): number { return this.#hits }
  get misses (): number { return this.#misses }

  /**
   * The cached answer to `query` as a fresh buffer (client's ID and question
   * bytes, TTLs decremented by whole seconds elapsed, never below 0), or null.
   * `walked` may be passed when the caller already walked the query.
   */
  get (query: Buffer, walked: WalkedMessage | null = walkMessage(query)): Buffer | null {
    const q = walked?.question
    // A query has nothing to compress: a compressed question is never cached (dnsd answers it FORMERR).
    if (walked === null || q === null || q === undefined || q.compressed) {
      this.#misses++
      return null
    }
    return this.#lookup(nameKey(query, q.start, q.end - 4), q.type, q.class, ednsOf(walked), query, walked.id, q.start, q.end)
  }

  /**
   * `get` for a query wire.ts calls plain, without walking it: dnsd's hot
   * path for forwarded names. `end` is what `plainQuestionEnd` returned and
   * `name` the question name's `nameKey`, both already at hand there.
   */
  getPlain (query: Buffer, end: number, name: string): Buffer | null {
    const edns = query[11] === 0 ? 'none' : (query[end + 7]! & 0x80) !== 0 ? 'dnssec-ok' : 'edns'
    return this.#lookup(name, query.readUInt16BE(end - 4), query.readUInt16BE(end - 2), edns, query, query.readUInt16BE(0), HEADER_LENGTH, end)
  }

  /** The entry for the question, given back to a query with ID `id` and its question at query[start, end). */
  #lookup (name: string, type: number, klass: number, edns: EdnsState, query: Buffer, id: number, start: number, end: number): Buffer | null {
    const entries = this.#names.get(name)
    const index = entries === undefined ? -1 : indexOf(entries, type, klass, edns)
    if (index < 0) {
      this.#misses++
      return null
    }
    const entry = entries![index]!
    const now = this.#now()
    if (now >= entry.expiresAt) {
      this.#remove(name, entries!, index)
      this.#misses++
      return null
    }
    entry.used = true
    this.#hits++
    const out = Buffer.from(entry.response)
    const elapsed = Math.max(0, Math.floor((now - entry.storedAt) / 1000))
    if (elapsed > 0) {
      for (const offset of entry.walked.ttlOffsets) {
        const ttl = out.readUInt32BE(offset)
        out.writeUInt32BE(ttl > 0x7fffffff || ttl <= elapsed ? 0 : ttl - elapsed, offset)
      }
    }
    return restoreClient(out, entry.walked, query, id, start, end)
  }

  /**
   * Stores `response` as the answer to `query` if it is cacheable; returns
   * whether it was stored. Either message failing to walk, or their questions
   * differing, means "not cacheable", never an exception.
   */
  set (query: Buffer, response: Buffer, queryWalked: WalkedMessage | null = walkMessage(query), responseWalked: WalkedMessage | null = walkMessage(response)): boolean {
    if (queryWalked === null || responseWalked === null) return false
    const q = queryWalked.question
    if (q === null || q.compressed || !sameQuestion(q, responseWalked.question)) return false
    const lifetime = this.lifetimeOf(responseWalked)
    if (lifetime <= 0) return false
    const name = nameKey(query, q.start, q.end - 4)
    const edns = ednsOf(queryWalked)
    const previous = this.#names.get(name)
    const index = previous === undefined ? -1 : indexOf(previous, q.type, q.class, edns)
    if (index >= 0) this.#remove(name, previous!, index)
    // Room is made before the new entry goes in, so it is never the one evicted.
    while (this.#size >= this.#maxEntries) this.#evictOne()
    const now = this.#now()
    const entry: Entry = { type: q.type, klass: q.class, edns, response: Buffer.from(response), walked: responseWalked, storedAt: now, expiresAt: now + lifetime * 1000, used: false }
    const entries = this.#names.get(name)
    if (entries === undefined) this.#names.set(name, [entry])
    else entries.push(entry)
    this.#size++
    return true
  }

  /** Drops the oldest name none of whose entries was hit, sparing (and unmarking) those on the way. */
  #evictOne (): void {
    // Terminates: every name spared loses its marks, so the walk comes back to it unmarked.
    for (;;) {
      const [name, entries] = this.#names.entries().next().value!
      this.#names.delete(name)
      if (!entries.some((e) => e.used)) {
        this.#size -= entries.length
        return
      }
      for (const e of entries) e.used = false
      this.#names.set(name, entries)
    }
  }

  #remove (name: string, entries: Entry[], index: number): void {
    entries.splice(index, 1)
    if (entries.length === 0) this.#names.delete(name)
    this.#size--
  }

  /** Seconds `response` may be cached for; 0 means never. */
  lifetimeOf (response: WalkedMessage): number {
    if (!response.qr || response.tc || (response.opt !== null && response.opt.extendedRcode !== 0)) return 0
    if (response.rcode === RCODE.NOERROR && response.ancount > 0) {
      return Math.min(response.minAnswerTtl ?? 0, this.#maxTtl)
    }
    if (response.rcode === RCODE.NXDOMAIN || (response.rcode === RCODE.NOERROR && response.ancount === 0)) {
      return response.negativeTtl === null ? 0 : Math.min(response.negativeTtl, this.#maxNegativeTtl)
    }
    return 0
  }

  clear (): void {
    this.#names.clear()
    this.#size = 0
  }
}

// A loop, not findIndex with a closure: this runs for every cached query.
function indexOf (entries: readonly Entry[], type: number, klass: number, edns: EdnsState): number {
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    if (e.type === type && e.klass === klass && e.edns === edns) return i
  }
  return -1
}

function ednsOf (walked: WalkedMessage): EdnsState {
  return walked.opt === null ? 'none' : walked.opt.dnssecOk ? 'dnssec-ok' : 'edns'
}
