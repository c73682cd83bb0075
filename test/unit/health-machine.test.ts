/**
 * The health state machine against Docker's rules (moby daemon/health.go, handleProbeResult):
 * one test per rule, then random sequences against a reference model and the module's invariants.
 */
import t from 'tap'
import { EXIT_HEALTHY, EXIT_PROBE_ERROR, EXIT_UNHEALTHY, inStartPeriod, initialHealth, nextHealth, type HealthContext } from '../../netd/health/health-machine.ts'
import { HEALTH_LOG_LENGTH, HEALTH_OUTPUT_BYTES, healthReportSchema, type HealthReport, type HealthResult } from '../../netd/health/health-spec.ts'
import { prng } from '../helpers/prng.ts'

const T0 = Date.parse('2025-01-01T00:00:00Z')

function result (exitCode: number, output = '', at = T0): HealthResult {
  return { start: new Date(at).toISOString(), end: new Date(at + 5).toISOString(), exitCode, output }
}

function context (now: number, check: { retries?: number, startPeriod?: number } = {}): HealthContext {
  return { check: { retries: check.retries ?? 3, startPeriod: check.startPeriod ?? 0 }, startedAt: T0, now }
}

/** Folds exit codes one per second after T0 (the first probe at T0 + 1 s). */
function run (codes: readonly number[], check: { retries?: number, startPeriod?: number } = {}, from: HealthReport = initialHealth()): HealthReport[] {
  const reports: HealthReport[] = []
  let report = from
  codes.forEach((code, i) => {
    const now = T0 + (i + 1) * 1000
    report = nextHealth(report, result(code, `probe ${i}`, now), context(now, check))
    reports.push(report)
  })
  return reports
}

const last = <T>(items: readonly T[]): T => items[items.length - 1] as T

t.test('a task starts as starting, with no streak and no log', async (t) => {
  t.same(initialHealth(), { status: 'starting', failingStreak: 0, log: [] })
  t.ok(Object.isFrozen(initialHealth()))
})

t.test('a success makes a task healthy and clears the streak', async (t) => {
  const [first] = run([EXIT_HEALTHY])
  t.match(first, { status: 'healthy', failingStreak: 0 })
  const after = last(run([EXIT_UNHEALTHY, EXIT_UNHEALTHY, EXIT_HEALTHY]))
  t.match(after, { status: 'healthy', failingStreak: 0 }, 'two failures then a success')
})

t.test('failures count up to retries, and the retries-th makes the task unhealthy', async (t) => {
  const reports = run([1, 1, 1, 1], { retries: 3 })
  t.same(reports.map((r) => [r.status, r.failingStreak]), [['starting', 1], ['starting', 2], ['unhealthy', 3], ['unhealthy', 4]])
})

t.test('retries 1: the first counted failure is enough', async (t) => {
  t.match(run([1], { retries: 1 })[0], { status: 'unhealthy', failingStreak: 1 })
})

t.test('a healthy task stays healthy until retries failures in a row', async (t) => {
  const reports = run([0, 1, 1, 0, 1, 1, 1], { retries: 3 })
  t.same(reports.map((r) => r.status), ['healthy', 'healthy', 'healthy', 'healthy', 'healthy', 'healthy', 'unhealthy'])
  t.same(reports.map((r) => r.failingStreak), [0, 1, 2, 0, 1, 2, 3])
})

t.test('a success brings an unhealthy task back to healthy at once', async (t) => {
  const reports = run([1, 1, 1, 0], { retries: 3 })
  t.match(last(reports), { status: 'healthy', failingStreak: 0 })
})

t.test('every non-zero exit code is a failure: 1, -1 (timed out, could not run), 2, 137', async (t) => {
  for (const code of [EXIT_UNHEALTHY, EXIT_PROBE_ERROR, 2, 137]) {
    t.match(run([code], { retries: 1 })[0], { status: 'unhealthy', failingStreak: 1 }, `exit ${code}`)
  }
})

t.test('start period: failures of a starting task within it are not counted', async (t) => {
  // Probes at 1 s … 6 s; the start period is 3.5 s: probes 1-3 fall in it.
  const reports = run([1, 1, 1, 1, 1, 1], { retries: 2, startPeriod: 3500 })
  t.same(reports.map((r) => [r.status, r.failingStreak]), [
    ['starting', 0], ['starting', 0], ['starting', 0], ['starting', 1], ['unhealthy', 2], ['unhealthy', 3]
  ])
  t.equal(reports[2]?.log.length, 3, 'uncounted failures are still logged')
})

t.test('start period: measured to the probe\'s start, and it ends exactly at startPeriod', async (t) => {
  const check = { retries: 1, startPeriod: 2000 }
  t.equal(inStartPeriod(check, T0, T0 + 1999), true)
  t.equal(inStartPeriod(check, T0, T0 + 2000), false)
  t.match(nextHealth(initialHealth(), result(1), context(T0 + 1999, check)), { status: 'starting', failingStreak: 0 })
  t.match(nextHealth(initialHealth(), result(1), context(T0 + 2000, check)), { status: 'unhealthy', failingStreak: 1 })
})

t.test('start period: a success ends it early, so a healthy task\'s failures count at once', async (t) => {
  const reports = run([0, 1, 1], { retries: 2, startPeriod: 60_000 })
  t.same(reports.map((r) => [r.status, r.failingStreak]), [['healthy', 0], ['healthy', 1], ['unhealthy', 2]])
})

t.test('start period 0: every failure counts', async (t) => {
  t.match(run([1], { retries: 3, startPeriod: 0 })[0], { status: 'starting', failingStreak: 1 })
})

t.test('the log keeps the last results, oldest first', async (t) => {
  const reports = run([0, 1, 0, 1, 1, 0, 1])
  const log = last(reports).log
  t.equal(log.length, HEALTH_LOG_LENGTH)
  t.same(log.map((r) => r.output), ['probe 2', 'probe 3', 'probe 4', 'probe 5', 'probe 6'])
  t.same(log.map((r) => r.exitCode), [0, 1, 1, 0, 1])
})

t.test('outputs are kept to HEALTH_OUTPUT_BYTES of UTF-8, never cut inside a character', async (t) => {
  const ascii = nextHealth(initialHealth(), result(1, 'x'.repeat(5000)), context(T0))
  t.equal(ascii.log[0]?.output, 'x'.repeat(HEALTH_OUTPUT_BYTES))
  // 'é' is 2 bytes; one ASCII byte first puts every cut at an odd offset, inside a character.
  const accented = nextHealth(initialHealth(), result(1, `a${'é'.repeat(2000)}`), context(T0))
  const output = accented.log[0]?.output ?? ''
  t.ok(Buffer.byteLength(output) <= HEALTH_OUTPUT_BYTES)
  t.equal(output, `a${'é'.repeat((HEALTH_OUTPUT_BYTES - 1) >> 1)}`)
  t.notOk(output.includes('\ufffd'), 'no replacement character')
  const emoji = nextHealth(initialHealth(), result(1, '😀'.repeat(400)), context(T0)).log[0]?.output ?? ''
  t.equal(emoji, '😀'.repeat(HEALTH_OUTPUT_BYTES / 4))
  t.equal(nextHealth(initialHealth(), result(0, 'ok\n'), context(T0)).log[0]?.output, 'ok\n', 'short outputs are kept as they are')
})

t.test('reports are new frozen objects; the previous report is untouched', async (t) => {
  const before = run([0, 1])[1] as HealthReport
  const snapshot = structuredClone(before)
  const after = nextHealth(before, result(1, 'again'), context(T0 + 10_000))
  t.same(before, snapshot)
  t.not(after, before)
  t.ok(Object.isFrozen(after) && Object.isFrozen(after.log) && Object.isFrozen(after.log[0]))
})

/** The rules restated as plainly as possible, to compare the machine against. */
function model (codes: readonly number[], retries: number, startPeriod: number): { status: string, streak: number } {
  let everHealthy = false
  let unhealthy = false
  let streak = 0
  codes.forEach((code, i) => {
    const probeStart = (i + 1) * 1000
    if (code === 0) { everHealthy = true; unhealthy = false; streak = 0; return }
    const starting = !everHealthy && !unhealthy
    if (starting && probeStart < startPeriod) return
    streak++
    if (streak >= retries) unhealthy = true
  })
  return { status: unhealthy ? 'unhealthy' : everHealthy ? 'healthy' : 'starting', streak }
}

t.test('random sequences agree with the model and keep the invariants', async (t) => {
  const seed = Number(process.env.WEFT_TEST_SEED ?? 20250101)
  const random = prng(seed)
  const codes = [0, 1, -1, 2]
  for (let round = 0; round < 500; round++) {
    const retries = 1 + Math.floor(random() * 5)
    const startPeriod = Math.floor(random() * 4) * 2500
    const failureOdds = random()
    const sequence = Array.from({ length: 1 + Math.floor(random() * 30) }, () => random() < failureOdds ? codes[1 + Math.floor(random() * 3)] as number : 0)
    const reports = run(sequence, { retries, startPeriod })
    const where = `seed ${seed} round ${round}: retries ${retries} startPeriod ${startPeriod} codes ${sequence.join(',')}`
    reports.forEach((report, i) => {
      const expected = model(sequence.slice(0, i + 1), retries, startPeriod)
      if (report.status !== expected.status || report.failingStreak !== expected.streak) {
        t.fail(`after ${i + 1} results: ${report.status}/${report.failingStreak}, model says ${expected.status}/${expected.streak} (${where})`)
      }
      if ((report.status === 'unhealthy') !== (report.failingStreak >= retries)) t.fail(`unhealthy iff streak ≥ retries (${where})`)
      if (report.log.length !== Math.min(i + 1, HEALTH_LOG_LENGTH)) t.fail(`log length (${where})`)
      if (last(report.log).output !== `probe ${i}`) t.fail(`log ends with the newest result (${where})`)
      if (!healthReportSchema.safeParse(report).success) t.fail(`report fits the schema (${where})`)
    })
  }
  t.pass('500 random sequences')
})
