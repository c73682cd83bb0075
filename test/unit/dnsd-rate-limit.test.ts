/** Per-task token buckets: burst, refill, independence of keys, bounded memory, bad options. */
import t from 'tap'
import { RateLimiter } from '../../dnsd/rate-limit.ts'

function spend (limiter: RateLimiter, key: string, nowMs: number, count: number): number {
  let allowed = 0
  for (let i = 0; i < count; i++) if (limiter.allow(key, nowMs)) allowed++
  return allowed
}

t.test('a burst is allowed, then the rate', async (t) => {
  const limiter = new RateLimiter({ ratePerSecond: 100, burst: 10 })
  t.equal(spend(limiter, 'a', 0, 50), 10, 'the burst at once')
  t.equal(spend(limiter, 'a', 100, 50), 10, '100 ms at 100/s earns 10')
  t.equal(spend(limiter, 'a', 10_000, 50), 10, 'a long pause refills to the burst, not beyond')
})

t.test('one flooding key does not starve another', async (t) => {
  const limiter = new RateLimiter({ ratePerSecond: 10, burst: 5 })
  t.equal(spend(limiter, 'flood', 0, 1000), 5)
  t.equal(spend(limiter, 'quiet', 0, 3), 3)
})

t.test('a clock that steps back earns nothing', async (t) => {
  const limiter = new RateLimiter({ ratePerSecond: 1000, burst: 2 })
  t.equal(spend(limiter, 'a', 5000, 5), 2)
  t.equal(spend(limiter, 'a', 1000, 5), 0)
})

t.test('memory is bounded by maxKeys; forgetting a key never takes tokens away', async (t) => {
  const limiter = new RateLimiter({ ratePerSecond: 1, burst: 1, maxKeys: 100 })
  for (let i = 0; i < 1000; i++) limiter.allow(`k${i}`, i)
  t.ok(limiter.size <= 100, `${limiter.size} keys remembered`)
  t.equal(spend(limiter, 'k0', 1000, 1), 1, 'an evicted key starts with a full bucket')
})

t.test('bad options are refused with a clear error', async (t) => {
  t.throws(() => new RateLimiter({ ratePerSecond: 0, burst: 1 }), { code: 'DNSD_ERR_CONFIG', message: /ratePerSecond/ })
  t.throws(() => new RateLimiter({ ratePerSecond: 1, burst: 0.5 }), { message: /burst/ })
  t.throws(() => new RateLimiter({ ratePerSecond: 1, burst: 1, maxKeys: 0 }), { message: /maxKeys/ })
})
