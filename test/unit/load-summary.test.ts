/**
 * What a failure test concludes from a load's summary (test/helpers/load.ts): failures split at
 * the fault, the recovery time, the deadline, and which backends answered when.
 */
import t from 'tap'
import { analyse, answeredBy, type LoadBucket, type LoadFailure, type LoadSummary } from '../helpers/load.ts'

const T0 = 1_700_000_000_000

function summary (failures: LoadFailure[], timeline: LoadBucket[] = [], failuresDropped = 0): LoadSummary {
  return {
    url: 'http://10.0.0.2/',
    rate: 10,
    timeoutMs: 1000,
    final: true,
    startedAt: T0,
    endedAt: T0 + 10_000,
    sent: 100,
    ok: 100 - failures.length,
    failed: failures.length,
    inFlight: 0,
    byBackend: {},
    errors: {},
    failures,
    failuresDropped,
    timeline,
    latency: { p50: 1, p99: 2, max: 3 }
  }
}
const fail = (offset: number, error = 'ECONNREFUSED'): LoadFailure => ({ at: T0 + offset, error, ms: 1 })
const bucket = (second: number, ok: number, byBackend: Record<string, number> = {}, failed = 0): LoadBucket => ({ at: T0 + second * 1000, ok, failed, byBackend })

t.test('no failure: recovered at the fault itself, in 0 ms', async (t) => {
  const a = analyse(summary([], [bucket(5, 10), bucket(6, 10)]), { faultAt: T0 + 5000, deadlineMs: 3000 })
  t.match(a, { failedBefore: 0, failedAfter: 0, failedAfterDeadline: 0, firstFailureAt: null, recoveredAt: T0 + 5000, recoveryMs: 0, truncated: false })
  t.same(a.failuresAfter, [])
  t.equal(a.okAfterRecovery, 10, 'only the whole second after the fault counts')
})

t.test('failures split at the fault; recovery is the last failure after it', async (t) => {
  const failures = [fail(1000, 'timeout'), fail(5000), fail(5100), fail(5400, 'ECONNRESET'), fail(6200)]
  const a = analyse(summary(failures, [bucket(5, 6, {}, 3), bucket(6, 9, {}, 1), bucket(7, 10), bucket(8, 10)]), { faultAt: T0 + 5000, deadlineMs: 3000 })
  t.equal(a.failedBefore, 1, 'the failure before the fault, apart')
  t.equal(a.failedAfter, 4, 'a failure at the fault instant counts after it')
  t.same(a.failuresAfter.map((f) => f.at - T0), [5000, 5100, 5400, 6200])
  t.same(a.errorsAfter, { ECONNREFUSED: 3, ECONNRESET: 1 })
  t.equal(a.firstFailureAt, T0 + 5000)
  t.equal(a.recoveredAt, T0 + 6200)
  t.equal(a.recoveryMs, 1200)
  t.equal(a.failedAfterDeadline, 0)
  t.equal(a.okAfterRecovery, 20, 'seconds 7 and 8; second 6 holds the last failure')
})

t.test('failures later than the deadline are counted apart', async (t) => {
  const a = analyse(summary([fail(5000), fail(7999), fail(8000), fail(8001), fail(9500)]), { faultAt: T0 + 5000, deadlineMs: 3000 })
  t.equal(a.deadline, T0 + 8000)
  t.equal(a.failedAfterDeadline, 2, 'the deadline instant itself is within it')
  t.equal(a.recoveryMs, 4500)
  t.equal(a.okAfterRecovery, 0, 'nothing shows the load succeeding after the last failure')
})

t.test('without a deadline nothing is late', async (t) => {
  t.equal(analyse(summary([fail(100_000)]), { faultAt: T0 }).failedAfterDeadline, 0)
})

t.test('a summary with dropped failures says its counts are lower bounds', async (t) => {
  t.equal(analyse(summary([fail(1)], [], 42), { faultAt: T0 }).truncated, true)
})

t.test('answeredBy counts the whole seconds of a span', async (t) => {
  const s = summary([], [bucket(0, 4, { a: 2, b: 2 }), bucket(1, 4, { a: 2, b: 2 }), bucket(2, 4, { a: 4 }), bucket(3, 4, { a: 3, c: 1 })])
  t.same(answeredBy(s, T0), { a: 11, b: 4, c: 1 })
  t.same(answeredBy(s, T0 + 500), { a: 9, b: 2, c: 1 }, 'the second that holds `from` is left out')
  t.same(answeredBy(s, T0 + 1000, T0 + 3000), { a: 6, b: 2 }, '`to` is exclusive')
  t.same(answeredBy(s, T0 + 2000, T0 + 3500), { a: 4 }, 'a second not wholly before `to` is left out')
})
