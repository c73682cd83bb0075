/**
 * The load fixtures themselves (http-backend.ts, http-load.ts through test/helpers/load.ts), as
 * root, in one throwaway network namespace (weftlab-lf-*, removed in teardown) on its loopback:
 * a steady load counts right, a snapshot does not stop it, a graceful stop lets the requests in
 * flight finish and the later ones fail, /healthz follows /sicken and /heal.
 */
import t from 'tap'
import { requireRoot } from '../helpers/root.ts'
import { setTimeout as sleep } from 'node:timers/promises'
import { runChecked, runCommand } from '../../lab/run-command.ts'
import { analyse, answeredBy, inNetns, startBackend, startLoad } from '../helpers/load.ts'

requireRoot('the load fixtures e2e test', 'a network namespace')

const PREFIX = `weftlab-lf-${process.pid.toString(36)}-`
const NS = `${PREFIX}a`
const HERE = inNetns(NS)

async function cleanup (): Promise<void> {
  const { stdout } = await runCommand(['ip', 'netns', 'list'])
  for (const ns of stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(PREFIX))) {
    await runCommand(['ip', 'netns', 'del', ns])
  }
}
t.teardown(cleanup)

try {
  await runChecked(['ip', 'netns', 'add', NS])
  await runChecked(['ip', '-n', NS, 'link', 'set', 'lo', 'up'])
} catch (error) {
  // A top-level throw would end the process before tap runs the teardown.
  await cleanup()
  throw error
}

/** `curl` in the namespace: "BODY STATUS". */
async function curl (method: string, url: string): Promise<string> {
  const { stdout } = await runChecked([...HERE, 'curl', '-s', '-m', '2', '-X', method, '-w', ' %{http_code}', url])
  return stdout
}

const b1 = await startBackend(HERE, 'b1', 8081, { t })
await startBackend(HERE, 'b2', 8082, { t })

t.test('a steady load: rate × duration requests, all answered by the backend asked', async (t) => {
  const load = await startLoad(HERE, 'http://127.0.0.1:8081/', { rate: 100, durationS: 2, t })
  const summary = await load.stop()
  t.equal(summary.final, true)
  t.equal(summary.sent, 200, 'the schedule is the clock: 100/s for 2 s')
  t.equal(summary.ok, 200)
  t.equal(summary.failed, 0)
  t.equal(summary.inFlight, 0)
  t.same(summary.byBackend, { b1: 200 })
  t.same(summary.failures, [])
  t.ok(summary.endedAt - summary.startedAt >= 1900 && summary.endedAt - summary.startedAt < 3000, 'about 2 s')
  t.ok(summary.latency.p50 !== null && summary.latency.p50 < 500, `p50 ${summary.latency.p50} ms`)
  t.equal(summary.timeline.reduce((n, b) => n + b.ok, 0), 200, 'the timeline counts every request')
})

t.test('a snapshot while the load runs, then the final summary', async (t) => {
  const load = await startLoad(HERE, 'http://127.0.0.1:8082/', { rate: 50, t })
  await sleep(1000)
  const early = await load.snapshot()
  t.equal(early.final, false)
  t.ok(early.ok >= 40 && early.ok <= 60, `about 50 answers after 1 s (${early.ok})`)
  t.equal(early.failed, 0)
  await sleep(500)
  const later = await load.snapshot()
  t.ok(later.ok > early.ok, 'the load went on after the snapshot')
  const summary = await load.stop()
  t.equal(summary.final, true)
  t.ok(summary.sent >= later.sent)
  t.equal(summary.ok, summary.sent, 'nothing left in flight or failed')
  t.same(Object.keys(summary.byBackend), ['b2'])
  t.same(answeredBy(summary, 0), summary.byBackend, 'the timeline holds every answer')
})

t.test('GET / names the backend and the client it sees', async (t) => {
  t.equal(await curl('GET', 'http://127.0.0.1:8081/'), 'b1 127.0.0.1\n 200')
  t.equal(await curl('GET', 'http://127.0.0.1:8082/'), 'b2 127.0.0.1\n 200')
  t.equal(await curl('GET', 'http://127.0.0.1:8081/nowhere'), 'not found 404')
})

t.test('/healthz follows /sicken and /heal; a sick backend still serves', async (t) => {
  t.equal(await curl('GET', 'http://127.0.0.1:8082/healthz'), 'ok 200')
  t.equal(await curl('POST', 'http://127.0.0.1:8082/sicken'), 'sick 200')
  t.equal(await curl('GET', 'http://127.0.0.1:8082/healthz'), 'sick 503')
  t.equal(await curl('GET', 'http://127.0.0.1:8082/'), 'b2 127.0.0.1\n 200')
  t.equal(await curl('GET', 'http://127.0.0.1:8082/heal'), 'ok 200', 'GET works as well as POST')
  t.equal(await curl('GET', 'http://127.0.0.1:8082/healthz'), 'ok 200')
  t.equal(await curl('GET', 'http://127.0.0.1:8082/sicken'), 'sick 200')
  t.equal(await curl('GET', 'http://127.0.0.1:8082/healthz'), 'sick 503')
})

t.test('a backend stopped under load: requests in flight finish, later ones are refused', async (t) => {
  // Slow answers (300 ms), so that about 15 requests are in flight when SIGTERM comes.
  const slow = await startBackend(HERE, 'b3', 8083, { delayMs: 300, t })
  const load = await startLoad(HERE, 'http://127.0.0.1:8083/', { rate: 50, timeoutMs: 1000, t })
  await sleep(1000)
  const killAt = Date.now()
  t.equal(await slow.stop(), 0, 'a graceful stop exits 0')
  const stoppedAfter = Date.now() - killAt
  t.ok(stoppedAfter >= 200, `the backend waited for its requests in flight (${stoppedAfter} ms)`)
  await sleep(500)
  const summary = await load.stop()
  const a = analyse(summary, { faultAt: killAt, deadlineMs: 5000 })
  // A request sent in the instant before the signal landed may still be in the accept queue
  // when the listener closes: only requests clearly older than the kill must all have succeeded.
  t.same(summary.failures.filter((f) => f.at < killAt - 50), [], 'no request sent before the stop failed')
  t.ok(summary.ok >= 45, `the requests before the stop were answered (${summary.ok})`)
  t.ok(a.failedAfter >= 20, `the requests after the stop failed (${a.failedAfter})`)
  t.ok(a.failuresAfter.every((f) => f.at >= killAt), 'each failure is stamped after the kill')
  const afterExit = a.failuresAfter.filter((f) => f.at > killAt + stoppedAfter + 50)
  t.ok(afterExit.length > 0)
  t.ok(afterExit.every((f) => f.error === 'ECONNREFUSED'), `refused once the backend is gone: ${JSON.stringify(a.errorsAfter)}`)
  t.equal(summary.sent, summary.ok + summary.failed, 'every request has an outcome')
  t.equal(a.recoveredAt, a.failuresAfter.at(-1)!.at, 'not recovered: the last request failed')
})

t.test('--drain-ms: after SIGTERM a backend reports sick but serves until it closes', async (t) => {
  const draining = await startBackend(HERE, 'b4', 8084, { drainMs: 600, t })
  const stopped = draining.stop()
  await sleep(150)
  t.equal(await curl('GET', 'http://127.0.0.1:8084/healthz'), 'sick 503')
  t.equal(await curl('GET', 'http://127.0.0.1:8084/'), 'b4 127.0.0.1\n 200')
  t.equal(await stopped, 0)
  t.not((await runCommand([...HERE, 'curl', '-s', '-m', '2', 'http://127.0.0.1:8084/'])).code, 0, 'refused once closed')
})

t.test('the first backend still runs: each test stopped only its own', async (t) => {
  t.equal(await curl('GET', 'http://127.0.0.1:8081/'), 'b1 127.0.0.1\n 200')
  t.equal(await b1.stop(), 0)
})
