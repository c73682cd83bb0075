/**
 * The forwarder's answer cache: upstream response bytes keyed by question,
 * served back with the client's ID and TTLs aged by the time spent in the
 * cache. Pure: the clock is injected (`now()` in milliseconds), so tests age
 * entries without sleeping.
 *
 * Key: lower-cased qname, qtype, qclass, the DO bit, and whether the query had
 * EDNS at all. The last one is beyond the brief's key on purpose: an answer
 * fetched with EDNS carries an OPT record, and RFC 6891 §7 forbids sending OPT
 * to a client that did not send one; glibc clients on a node are uniform, so
 * the cost in hit rate is nil.
 *
 * Lifetimes: positive answers live for their smallest answer TTL (capped by
 * `maxTtl`); negative ones (NXDOMAIN, or NOERROR without answers) for
 * min(SOA TTL, SOA MINIMUM) per RFC 2308 §5 (capped by `maxNegativeTtl`), and
 * not at all without an SOA (RFC 2308 §5: SHOULD NOT cache). SERVFAIL, other
 * errors, truncated answers and TTL 0 are never stored. Bounded LRU: a Map in
 * recency order, the oldest entry evicted first.
 */
import { restoreClientView } from './forward-message.ts'
import { RCODE_NOERROR, RCODE_NXDOMAIN, sameQuestion, walkMessage, type WalkedMessage } from './rr-walk.ts'

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

interface Entry {
  readonly response: Buffer
  readonly walked: WalkedMessage
  readonly storedAt: number
  readonly expiresAt: number
}

/** The cache key of a walked query, or null when it has no question. */
export function cacheKey (walked: WalkedMessage): string | null {
  const q = walked.question
  if (q === null) return null
  const edns = walked.opt === null ? 'n' : walked.opt.dnssecOk ? 'd' : 'e'
  return `${q.name}|${q.type}|${q.class}|${edns}`
}

export class ForwardCache {
  readonly #now: () => number
  readonly #maxEntries: number
  readonly #maxTtl: number
  readonly #maxNegativeTtl: number
  readonly #entries = new Map<string, Entry>()
  #hits = 0
  #misses = 0

  constructor (options: ForwardCacheOptions = {}) {
    this.#now = options.now ?? (() => performance.now())
    this.#maxEntries = Math.max(1, Math.floor(options.maxEntries ?? FORWARD_CACHE_DEFAULTS.maxEntries))
    this.#maxTtl = Math.max(0, options.maxTtl ?? FORWARD_CACHE_DEFAULTS.maxTtl)
    this.#maxNegativeTtl = Math.max(0, options.maxNegativeTtl ?? FORWARD_CACHE_DEFAULTS.maxNegativeTtl)
  }

  get size (): number { return this.#entries.size }
  get hits (): number { return this.#hits }
  get misses (): number { return this.#misses }

  /**
   * The cached answer to `query` as a fresh buffer (client's ID and question
   * bytes, TTLs decremented by whole seconds elapsed, never below 0), or null.
   * `walked` may be passed when the caller already walked the query.
   */
  get (query: Buffer, walked: WalkedMessage | null = walkMessage(query)): Buffer | null {
    const key = walked === null ? null : cacheKey(walked)
    const entry = key === null ? undefined : this.#entries.get(key)
    if (walked === null || key === null || entry === undefined) {
      this.#misses++
      return null
    }
    const now = this.#now()
    if (now >= entry.expiresAt) {
      this.#entries.delete(key)
      this.#misses++
      return null
    }
    // Refresh recency: re-inserting moves the key to the end of the Map.
    this.#entries.delete(key)
    this.#entries.set(key, entry)
    this.#hits++
    const out = Buffer.from(entry.response)
    const elapsed = Math.max(0, Math.floor((now - entry.storedAt) / 1000))
    if (elapsed > 0) {
      for (const offset of entry.walked.ttlOffsets) {
        const ttl = out.readUInt32BE(offset)
        out.writeUInt32BE(ttl > 0x7fffffff || ttl <= elapsed ? 0 : ttl - elapsed, offset)
      }
    }
    return restoreClientView(out, entry.walked, query, walked)
  }

  /**
   * Stores `response` as the answer to `query` if it is cacheable; returns
   * whether it was stored. Either message failing to walk, or their questions
   * differing, means "not cacheable", never an exception.
   */
  set (query: Buffer, response: Buffer, queryWalked: WalkedMessage | null = walkMessage(query), responseWalked: WalkedMessage | null = walkMessage(response)): boolean {
    if (queryWalked === null || responseWalked === null) return false
    const key = cacheKey(queryWalked)
    if (key === null || !sameQuestion(queryWalked.question, responseWalked.question)) return false
    const lifetime = this.lifetimeOf(responseWalked)
    if (lifetime <= 0) return false
    const now = this.#now()
    this.#entries.delete(key)
    this.#entries.set(key, { response: Buffer.from(response), walked: responseWalked, storedAt: now, expiresAt: now + lifetime * 1000 })
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next()
      if (oldest.done === true) break
      this.#entries.delete(oldest.value)
    }
    return true
  }

  /** Seconds `response` may be cached for; 0 means never. */
  lifetimeOf (response: WalkedMessage): number {
    if (!response.qr || response.tc || (response.opt !== null && response.opt.extendedRcode !== 0)) return 0
    if (response.rcode === RCODE_NOERROR && response.ancount > 0) {
      return Math.min(response.minAnswerTtl ?? 0, this.#maxTtl)
    }
    if (response.rcode === RCODE_NXDOMAIN || (response.rcode === RCODE_NOERROR && response.ancount === 0)) {
      return response.negativeTtl === null ? 0 : Math.min(response.negativeTtl, this.#maxNegativeTtl)
    }
    return 0
  }

  clear (): void {
    this.#entries.clear()
  }
}
