/**
 * The health monitor's schedule and bookkeeping, with a fake clock and a scripted probe runner:
 * no processes, no waiting on real time (except one test of the real clock).
 */
import t from 'tap'
import { Registry } from 'prom-client'
import { HealthMonitor, systemClock, type HealthClock } from '../../netd/health/monitor.ts'
import type { HealthcheckInput, HealthReport, HealthResult } from '../../netd/health/health-spec.ts'
import type { ProbeCheck, ProbeRunner } from '../../netd/health/probes.ts'
import type { ProbeTarget } from '../../netd/health/probe-target.ts'

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

class FakeClock implements HealthClock {
  time = Date.parse('2025-01-01T00:00:00Z')
  readonly #timers = new Map<number, { at: number, callback: () => void }>()
  #next = 1

  now (): number { return this.time }
  setTimeout (callback: () => void, ms: number): number {
    const id = this.#next++
    this.#timers.set(id, { at: this.time + ms, callback })
    return id
  }

  clearTimeout (handle: unknown): void { this.#timers.delete(handle as number) }
  get pending (): number { return this.#timers.size }

  /** Moves time forward, firing due timers in order and letting promises settle after each. */
  async advance (ms: number): Promise<void> {
    const end = this.time + ms
    for (;;) {
      await flush()
      const due = [...this.#timers].filter(([, timer]) => timer.at <= end).sort(([, a], [, b]) => a.at - b.at)[0]
      if (due === undefined) break
      this.#timers.delete(due[0])
      this.time = due[1].at
      due[1].callback()
    }
    this.time = end
    await flush()
  }
}

interface Call { readonly check: ProbeCheck, readonly target: ProbeTarget, readonly signal: AbortSignal | undefined, readonly at: number }

/** A runner whose next results are scripted exit codes; `hold` makes the next probes wait for release(). */
class ScriptedRunner {
  readonly calls: Call[] = []
  codes: number[] = []
  fallback = 0
  hold = false
  readonly #held: Array<() => void> = []
  readonly #clock: FakeClock

  constructor (clock: FakeClock) { this.#clock = clock }

  readonly run: ProbeRunner = async (check, target, signal) => {
    const at = this.#clock.now()
    this.calls.push({ check, target, signal, at })
    const code = this.codes.shift() ?? this.fallback
    if (this.hold) await new Promise<void>((resolve) => this.#held.push(resolve))
    return { start: new Date(at).toISOString(), end: new Date(this.#clock.now()).toISOString(), exitCode: code, output: `code ${code}` }
  }

  release (): void { for (const resolve of this.#held.splice(0)) resolve() }
}

const target = (task: string, overrides: Partial<ProbeTarget> = {}): ProbeTarget => ({
  task, netns: 'weftlab-x', ip: '10.0.0.2', execTarget: () => Promise.reject(new Error('no exec in unit tests')), ...overrides
})
const check = (overrides: Partial<HealthcheckInput> = {}): HealthcheckInput => ({ test: { kind: 'tcp', port: 80 }, interval: 1000, timeout: 500, retries: 3, startPeriod: 0, ...overrides })

function setup (t: { teardown: (fn: () => unknown) => void }) {
  const clock = new FakeClock()
  const runner = new ScriptedRunner(clock)
  const monitor = new HealthMonitor({ clock, runProbe: runner.run })
  const changes: Array<[string, string, string]> = []
  monitor.onChange((task, report, previous) => changes.push([task, previous.status, report.status]))
  t.teardown(() => monitor.close())
  return { clock, runner, monitor, changes }
}

t.test('the first probe runs one interval after watch, and each next one an interval after the last ended', async (t) => {
  const { clock, runner, monitor } = setup(t)
  monitor.watch('a', check({ interval: 1000 }), target('a'), clock.now())
  await clock.advance(999)
  t.equal(runner.calls.length, 0, 'nothing before the interval')
  await clock.advance(1)
  t.equal(runner.calls.length, 1)
  await clock.advance(3000)
  t.equal(runner.calls.length, 4)
  t.same(runner.calls.map((c) => c.at - (runner.calls[0]?.at ?? 0)), [0, 1000, 2000, 3000])
})

t.test('status changes are announced once each; the first starting is not a change', async (t) => {
  const { clock, runner, monitor, changes } = setup(t)
  runner.codes = [1, 1, 0, 1, 1, 1, 1, 0]
  monitor.watch('a', check({ retries: 3 }), target('a'), clock.now())
  t.match(monitor.report('a'), { status: 'starting', failingStreak: 0, log: [] })
  await clock.advance(8000)
  t.same(changes, [['a', 'starting', 'healthy'], ['a', 'healthy', 'unhealthy'], ['a', 'unhealthy', 'healthy']])
  t.equal(monitor.report('a')?.log.length, 5)
})

t.test('the listener gets the stored report and the one before', async (t) => {
  const { clock, runner, monitor } = setup(t)
  runner.codes = [0]
  const seen: Array<{ report: HealthReport, previous: HealthReport, stored: HealthReport | undefined }> = []
  monitor.onChange((task, report, previous) => seen.push({ report, previous, stored: monitor.report(task) }))
  monitor.watch('a', check(), target('a'), clock.now())
  await clock.advance(1000)
  t.equal(seen.length, 1)
  t.equal(seen[0]?.stored, seen[0]?.report)
  t.match(seen[0]?.previous, { status: 'starting' })
})

t.test('the start period is counted from the task\'s start, not from watch()', async (t) => {
  const { clock, runner, monitor } = setup(t)
  runner.fallback = 1
  const startedAt = clock.now() - 4000
  monitor.watch('a', check({ interval: 1000, retries: 1, startPeriod: 6000 }), target('a'), startedAt)
  await clock.advance(1000)
  t.match(monitor.report('a'), { status: 'starting', failingStreak: 0 }, '5 s after start: within the start period')
  await clock.advance(1000)
  t.match(monitor.report('a'), { status: 'unhealthy', failingStreak: 1 }, '6 s after start: counted')
})

t.test('probes of one task never overlap: a slow probe stretches the period', async (t) => {
  const { clock, runner, monitor } = setup(t)
  runner.hold = true
  monitor.watch('a', check({ interval: 1000 }), target('a'), clock.now())
  await clock.advance(10_000)
  t.equal(runner.calls.length, 1, 'one probe in flight, none started beside it')
  runner.hold = false
  runner.release()
  await clock.advance(0)
  t.match(monitor.report('a'), { status: 'healthy' })
  await clock.advance(999)
  t.equal(runner.calls.length, 1)
  await clock.advance(1)
  t.equal(runner.calls.length, 2, 'the next probe an interval after the slow one ended')
})

t.test('tasks are probed independently', async (t) => {
  const { clock, runner, monitor } = setup(t)
  monitor.watch('a', check({ interval: 1000 }), target('a'), clock.now())
  monitor.watch('b', check({ interval: 300 }), target('b'), clock.now())
  await clock.advance(3000)
  t.equal(runner.calls.filter((c) => c.target.task === 'a').length, 3)
  t.equal(runner.calls.filter((c) => c.target.task === 'b').length, 10)
  t.same([...monitor.reports().keys()].sort(), ['a', 'b'])
})

t.test('unwatch: the probe in flight is cancelled and dropped, and no probe follows', async (t) => {
  const { clock, runner, monitor, changes } = setup(t)
  runner.hold = true
  monitor.watch('a', check(), target('a'), clock.now())
  await clock.advance(1000)
  t.equal(runner.calls.length, 1)
  t.equal(monitor.unwatch('a'), true)
  t.equal(runner.calls[0]?.signal?.aborted, true, 'the probe was told to stop')
  runner.release()
  await clock.advance(10_000)
  t.equal(monitor.report('a'), undefined)
  t.same(changes, [], 'its result was dropped')
  t.equal(runner.calls.length, 1)
  t.equal(clock.pending, 0, 'no timer left')
  t.equal(monitor.unwatch('a'), false, 'unwatching twice is harmless')
})

t.test('unwatch then watch again starts afresh, and the old probe cannot touch the new report', async (t) => {
  const { clock, runner, monitor, changes } = setup(t)
  runner.hold = true
  runner.codes = [0]
  monitor.watch('a', check(), target('a'), clock.now())
  await clock.advance(1000)
  monitor.unwatch('a')
  monitor.watch('a', check(), target('a'), clock.now())
  runner.release()
  await clock.advance(0)
  t.match(monitor.report('a'), { status: 'starting', log: [] })
  t.same(changes, [])
})

t.test('watch is idempotent: the same check again keeps schedule and report', async (t) => {
  const { clock, runner, monitor } = setup(t)
  runner.codes = [0]
  const startedAt = clock.now()
  monitor.watch('a', check(), target('a'), startedAt)
  await clock.advance(1000)
  const report = monitor.report('a')
  await clock.advance(500)
  // The same check, spelled with the fields in another order and with defaults left out.
  monitor.watch('a', { test: { port: 80, kind: 'tcp' }, timeout: 500, interval: 1000 }, target('a'), startedAt)
  t.equal(monitor.report('a'), report)
  await clock.advance(500)
  t.equal(runner.calls.length, 2, 'the schedule was not restarted')
})

t.test('a new target is used from the next probe on, without re-arming', async (t) => {
  const { clock, runner, monitor } = setup(t)
  const startedAt = clock.now()
  monitor.watch('a', check(), target('a'), startedAt)
  await clock.advance(500)
  monitor.watch('a', check(), target('a', { ip: '10.0.0.9' }), startedAt)
  await clock.advance(500)
  t.equal(runner.calls.length, 1)
  t.equal(runner.calls[0]?.target.ip, '10.0.0.9')
})

t.test('a changed check re-arms: the probe in flight is cancelled, the report kept, the new interval used', async (t) => {
  const { clock, runner, monitor, changes } = setup(t)
  runner.codes = [0]
  const startedAt = clock.now()
  monitor.watch('a', check({ interval: 1000 }), target('a'), startedAt)
  await clock.advance(1000)
  t.match(monitor.report('a'), { status: 'healthy' })
  runner.hold = true
  await clock.advance(1000)
  t.equal(runner.calls.length, 2)
  monitor.watch('a', check({ interval: 200, test: { kind: 'http', port: 80, path: '/healthz' } }), target('a'), startedAt)
  t.equal(runner.calls[1]?.signal?.aborted, true)
  runner.hold = false
  runner.codes = [1]
  runner.release()
  await clock.advance(0)
  t.equal(monitor.report('a')?.log.length, 1, 'the cancelled probe\'s result was dropped')
  t.match(monitor.report('a'), { status: 'healthy' }, 'the report was kept')
  await clock.advance(200)
  t.equal(runner.calls.length, 3)
  t.same(runner.calls[2]?.check.test, { kind: 'http', port: 80, path: '/healthz' })
  t.same(changes, [['a', 'starting', 'healthy']])
})

t.test('a changed start time is a new incarnation: a fresh report, announced', async (t) => {
  const { clock, runner, monitor, changes } = setup(t)
  runner.codes = [0]
  monitor.watch('a', check(), target('a'), clock.now())
  await clock.advance(1000)
  monitor.watch('a', check(), target('a'), clock.now())
  t.match(monitor.report('a'), { status: 'starting', log: [] })
  t.same(changes, [['a', 'starting', 'healthy'], ['a', 'healthy', 'starting']])
})

t.test('close cancels probes in flight, waits for them, and stops everything', async (t) => {
  const { clock, runner, monitor, changes } = setup(t)
  runner.hold = true
  monitor.watch('a', check(), target('a'), clock.now())
  monitor.watch('b', check({ interval: 5000 }), target('b'), clock.now())
  await clock.advance(1000)
  let closed = false
  const closing = monitor.close().then(() => { closed = true })
  await flush()
  t.equal(runner.calls[0]?.signal?.aborted, true)
  t.equal(closed, false, 'close waits for the probe in flight')
  runner.release()
  await closing
  t.equal(clock.pending, 0)
  t.same(changes, [])
  t.same(monitor.reports(), new Map())
  t.throws(() => monitor.watch('c', check(), target('c'), clock.now()), { code: 'NETD_ERR_HEALTH_CLOSED' })
  await monitor.close()
})

t.test('invalid checks and targets are refused with NETD_ERR_HEALTH_CHECK', async (t) => {
  const { clock, monitor } = setup(t)
  t.throws(() => monitor.watch('a', check({ interval: 5 }), target('a'), clock.now()), { code: 'NETD_ERR_HEALTH_CHECK', message: /interval/ })
  t.throws(() => monitor.watch('a', check({ test: { kind: 'http', port: 80, path: 'healthz' } }), target('a'), clock.now()), { code: 'NETD_ERR_HEALTH_CHECK' })
  t.throws(() => monitor.watch('a', check(), target('a', { netns: '../../proc/1/ns/net' }), clock.now()), { code: 'NETD_ERR_HEALTH_CHECK', message: /namespace/ })
  t.throws(() => monitor.watch('a', check(), target('a', { ip: '10.0.0.2; reboot' }), clock.now()), { code: 'NETD_ERR_HEALTH_CHECK', message: /address/ })
  t.throws(() => monitor.watch('a', check(), target('b'), clock.now()), { code: 'NETD_ERR_HEALTH_CHECK' })
  t.throws(() => monitor.watch('a', check(), target('a'), Number.NaN), { code: 'NETD_ERR_HEALTH_CHECK' })
  t.same(monitor.reports(), new Map())
})

t.test('a failing listener does not stop the others or the monitor; unsubscribe works', async (t) => {
  const { clock, runner, monitor, changes } = setup(t)
  runner.codes = [0, 1]
  const other: string[] = []
  monitor.onChange(() => { throw new Error('listener bug') })
  const unsubscribe = monitor.onChange((_task, report) => other.push(report.status))
  monitor.watch('a', check({ retries: 1 }), target('a'), clock.now())
  await clock.advance(1000)
  unsubscribe()
  await clock.advance(1000)
  t.same(other, ['healthy'])
  t.same(changes.map((c) => c[2]), ['healthy', 'unhealthy'])
})

t.test('a runner that throws counts as a probe that could not run', async (t) => {
  const clock = new FakeClock()
  const monitor = new HealthMonitor({ clock, runProbe: () => Promise.reject(new Error('boom')) })
  t.teardown(() => monitor.close())
  monitor.watch('a', check({ retries: 1 }), target('a'), clock.now())
  await clock.advance(1000)
  t.match(monitor.report('a'), { status: 'unhealthy', log: [{ exitCode: -1, output: /boom/ }] })
  await clock.advance(1000)
  t.equal(monitor.report('a')?.log.length, 2, 'and the schedule goes on')
})

t.test('metrics: probes by kind and result, transitions, tasks by status', async (t) => {
  const clock = new FakeClock()
  const runner = new ScriptedRunner(clock)
  const registry = new Registry()
  const monitor = new HealthMonitor({ clock, runProbe: runner.run, registry })
  t.teardown(() => monitor.close())
  runner.codes = [0, 1, -1]
  monitor.watch('a', check({ retries: 2 }), target('a'), clock.now())
  monitor.watch('b', check({ interval: 60_000 }), target('b'), clock.now())
  await clock.advance(3000)
  const text = await registry.metrics()
  t.match(text, /weft_netd_health_probes_total\{kind="tcp",result="success"\} 1/)
  t.match(text, /weft_netd_health_probes_total\{kind="tcp",result="failure"\} 1/)
  t.match(text, /weft_netd_health_probes_total\{kind="tcp",result="error"\} 1/)
  t.match(text, /weft_netd_health_transitions_total\{status="unhealthy"\} 1/)
  t.match(text, /weft_netd_health_tasks\{status="unhealthy"\} 1/)
  t.match(text, /weft_netd_health_tasks\{status="starting"\} 1/)
  t.match(text, /weft_netd_health_tasks\{status="healthy"\} 0/)
})

t.test('with the system clock: real timers, short interval', async (t) => {
  // The monitor's timers are unref'd: without a timer of the test's own, the process would just exit.
  const keepAlive = setInterval(() => undefined, 1000)
  t.teardown(() => clearInterval(keepAlive))
  let calls = 0
  const monitor = new HealthMonitor({ clock: systemClock, runProbe: async (): Promise<HealthResult> => { calls++; const at = new Date().toISOString(); return { start: at, end: at, exitCode: 0, output: '' } } })
  t.teardown(() => monitor.close())
  const healthy = new Promise<string>((resolve) => monitor.onChange((task, report) => resolve(`${task} ${report.status}`)))
  monitor.watch('a', check({ interval: 100 }), target('a'), Date.now())
  t.equal(await healthy, 'a healthy')
  await monitor.close()
  const after = calls
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(calls, after, 'no probe after close')
})
