/**
 * Per-source token buckets: each key (a task) may spend `burst` queries at
 * once and earns `ratePerSecond` back over time. The clock is passed in.
 *
 * Memory is bounded by `maxKeys`: when a new key would exceed it, keys idle
 * long enough to have refilled completely are swept (forgetting them changes
 * nothing: a new bucket starts full too); if none is, the least recently
 * used key is evicted. Map order is kept as recency order by re-inserting a
 * key when it is used in a later millisecond than before: recency to the
 * millisecond is all eviction needs, and a Map delete + set on every query of
 * a busy task would cost more than the rest of the bucket arithmetic.
 */
import { DnsdError } from './errors.ts'

export interface RateLimitOptions {
  readonly ratePerSecond: number
  readonly burst: number
  /** Keys remembered at most; default 4096. */
  readonly maxKeys?: number
}

interface Bucket {
  tokens: number
  lastMs: number
}

export class RateLimiter {
  readonly #perMs: number
  readonly #burst: number
  readonly #maxKeys: number
  /** Time after which an untouched bucket is full again. */
  readonly #refillMs: number
  readonly #buckets = new Map<string, Bucket>()

  constructor (options: RateLimitOptions) {
    const { ratePerSecond, burst, maxKeys = 4096 } = options
    const problems: string[] = []
    if (!(Number.isFinite(ratePerSecond) && ratePerSecond > 0)) problems.push('ratePerSecond: must be a positive number')
    if (!(Number.isFinite(burst) && burst >= 1)) problems.push('burst: must be a number ≥ 1')
    if (!(Number.isInteger(maxKeys) && maxKeys >= 1)) problems.push('maxKeys: must be an integer ≥ 1')
    if (problems.length > 0) throw new DnsdError('DNSD_ERR_CONFIG', `invalid rate limit: ${problems.join('; ')}`, problems)
    this.#perMs = ratePerSecond / 1000
    this.#burst = burst
    this.#maxKeys = maxKeys
    this.#refillMs = burst / this.#perMs
  }

  /** Whether `key` may send one more query at `nowMs`; spends a token if so. */
  allow (key: string, nowMs: number): boolean {
    let bucket = this.#buckets.get(key)
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxKeys) this.#makeRoom(nowMs)
      bucket = { tokens: this.#burst, lastMs: nowMs }
      this.#buckets.set(key, bucket)
    } else if (nowMs > bucket.lastMs) {
      // A clock that steps backwards or stands still earns nothing.
      bucket.tokens = Math.min(this.#burst, bucket.tokens + (nowMs - bucket.lastMs) * this.#perMs)
      bucket.lastMs = nowMs
      this.#buckets.delete(key) // re-inserted: most recently used last
      this.#buckets.set(key, bucket)
    }
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }

  /** Keys currently remembered (for tests and metrics). */
  get size (): number {
    return this.#buckets.size
  }

  #makeRoom (nowMs: number): void {
    for (const [key, bucket] of this.#buckets) {
      if (nowMs - bucket.lastMs >= this.#refillMs) this.#buckets.delete(key)
    }
    while (this.#buckets.size >= this.#maxKeys) {
      const oldest = this.#buckets.keys().next()
      if (oldest.done === true) break
      this.#buckets.delete(oldest.value)
    }
  }
}
