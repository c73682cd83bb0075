/**
 * The node's health monitor: probes every watched task on its own schedule,
 * folds the results into a report with the pure state machine
 * (health-machine.ts) and tells listeners when a task's status changes — the
 * signal that takes a task out of DNS and the load balancers, and back in.
 *
 * Scheduling, as Docker's: the first probe runs `interval` after watch(), and
 * each next one `interval` after the previous one ended, so probes of one
 * task never overlap and a slow check (up to `timeout`) stretches the period
 * rather than piling up. A new task is therefore `starting` for at least one
 * interval; a check that must converge faster says so with a shorter interval.
 *
 * A probe still running when its task is unwatched, its check changed, or the
 * monitor closed is cancelled (its processes killed) and its result dropped:
 * a report never holds a result of a check it no longer runs.
 *
 * Timers are unref'd: the monitor never keeps netd alive. Time and the probe
 * runner are injected, so the schedule is tested without processes or waits.
 */
import { pino, type Logger } from 'pino'
import type { Registry } from 'prom-client'
import { NetdError } from '../errors.ts'
import { EXIT_PROBE_ERROR, initialHealth, nextHealth } from './health-machine.ts'
import { healthcheckSchema, type Healthcheck, type HealthcheckInput, type HealthReport, type HealthResult, type HealthState } from './health-spec.ts'
import { createHealthMetrics, probeResultLabel, type HealthMetrics } from './metrics.ts'
import { assertProbeTarget, type ProbeTarget } from './probe-target.ts'
import { createProbeRunner, type ProbeRunner } from './probes.ts'

/** The monitor's view of time: wall clock in ms, and one-shot timers. */
export interface HealthClock {
  now (): number
  setTimeout (callback: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
}

export const systemClock: HealthClock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (callback: () => void, ms: number) => setTimeout(callback, ms).unref(),
  clearTimeout: (handle: unknown) => clearTimeout(handle as NodeJS.Timeout)
})

/** Called when a task's status changes (never for the first `starting`), after the report is stored. */
export type HealthChangeListener = (task: string, report: HealthReport, previous: HealthReport) => void

export interface HealthMonitorOptions {
  /** Runs one probe; by default the real one (probes.ts). */
  readonly runProbe?: ProbeRunner
  readonly clock?: HealthClock
  readonly log?: Logger
  /** Where to register the monitor's metrics (see metrics.ts); none without. */
  readonly registry?: Registry
}

interface Watch {
  readonly task: string
  check: Healthcheck
  target: ProbeTarget
  startedAt: number
  report: HealthReport
  /** Bumped whenever the schedule is re-armed: a probe of an older generation is dropped. */
  generation: number
  timer: unknown
  /** Cancels the probe in flight, if any. */
  cancel: AbortController | null
}

function sameCheck (a: Healthcheck, b: Healthcheck): boolean {
  return a.interval === b.interval && a.timeout === b.timeout && a.retries === b.retries && a.startPeriod === b.startPeriod &&
    JSON.stringify(Object.entries(a.test).sort()) === JSON.stringify(Object.entries(b.test).sort())
}

export class HealthMonitor {
  readonly #runProbe: ProbeRunner
  readonly #clock: HealthClock
  readonly #log: Logger
  readonly #metrics: HealthMetrics | null
  readonly #watches = new Map<string, Watch>()
  readonly #listeners = new Set<HealthChangeListener>()
  /** Every probe not yet settled, so close() can wait for their processes to be gone. */
  readonly #inFlight = new Set<Promise<void>>()
  #closed = false

  constructor (options: HealthMonitorOptions = {}) {
    this.#clock = options.clock ?? systemClock
    this.#runProbe = options.runProbe ?? createProbeRunner({ now: () => this.#clock.now() })
    this.#log = (options.log ?? pino({ enabled: false })).child({ component: 'health' })
    this.#metrics = options.registry === undefined ? null : createHealthMetrics(options.registry, () => this.#countByStatus())
  }

  /**
   * Starts checking `task`, which started at `startedAt` (ms since the epoch; the start period
   * counts from there). Watching a watched task again is a no-op, except: a new target is used
   * from the next probe on; a changed check re-arms the schedule (the probe in flight is
   * cancelled, the report is kept: a task does not become unknown because its check was edited,
   * the next results judge it); a changed start time is a new incarnation of the task and
   * starts a fresh report.
   */
  watch (task: string, check: HealthcheckInput, target: ProbeTarget, startedAt: number): void {
    if (this.#closed) throw new NetdError('NETD_ERR_HEALTH_CLOSED', 'the health monitor is closed')
    const parsed = healthcheckSchema.safeParse(check)
    if (!parsed.success) {
      throw new NetdError('NETD_ERR_HEALTH_CHECK', `invalid health check for task ${task}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
    }
    assertProbeTarget(target)
    if (target.task !== task) throw new NetdError('NETD_ERR_HEALTH_CHECK', `probe target of task ${target.task} given for task ${task}`)
    if (!Number.isFinite(startedAt)) throw new NetdError('NETD_ERR_HEALTH_CHECK', `invalid start time for task ${task}`)

    const existing = this.#watches.get(task)
    if (existing === undefined) {
      const watch: Watch = { task, check: parsed.data, target, startedAt, report: initialHealth(), generation: 0, timer: null, cancel: null }
      this.#watches.set(task, watch)
      this.#schedule(watch)
      return
    }
    existing.target = target
    const restarted = existing.startedAt !== startedAt
    if (!restarted && sameCheck(existing.check, parsed.data)) return
    existing.check = parsed.data
    existing.startedAt = startedAt
    this.#rearm(existing)
    if (restarted) this.#store(existing, initialHealth())
  }

  /** Stops checking `task` and forgets its report. True if it was watched. */
  unwatch (task: string): boolean {
    const watch = this.#watches.get(task)
    if (watch === undefined) return false
    this.#watches.delete(task)
    this.#disarm(watch)
    return true
  }

  report (task: string): HealthReport | undefined {
    return this.#watches.get(task)?.report
  }

  reports (): Map<string, HealthReport> {
    return new Map([...this.#watches].map(([task, watch]) => [task, watch.report]))
  }

  /** Returns the unsubscribe. */
  onChange (listener: HealthChangeListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /** Stops every schedule, cancels the probes in flight and waits for them to end. Idempotent. */
  async close (): Promise<void> {
    this.#closed = true
    for (const watch of this.#watches.values()) this.#disarm(watch)
    this.#watches.clear()
    this.#listeners.clear()
    await Promise.allSettled([...this.#inFlight])
  }

  #schedule (watch: Watch): void {
    const generation = watch.generation
    watch.timer = this.#clock.setTimeout(() => this.#probe(watch, generation), watch.check.interval)
  }

  #disarm (watch: Watch): void {
    watch.generation++
    if (watch.timer !== null) this.#clock.clearTimeout(watch.timer)
    watch.timer = null
    watch.cancel?.abort()
    watch.cancel = null
  }

  #rearm (watch: Watch): void {
    this.#disarm(watch)
    this.#schedule(watch)
  }

  #current (watch: Watch, generation: number): boolean {
    return !this.#closed && this.#watches.get(watch.task) === watch && watch.generation === generation
  }

  #probe (watch: Watch, generation: number): void {
    watch.timer = null
    if (!this.#current(watch, generation)) return
    const { check, target, startedAt } = watch
    const cancel = new AbortController()
    watch.cancel = cancel
    const now = this.#clock.now()
    const probe = this.#runGuarded(check, target, cancel.signal).then((result) => {
      if (watch.cancel === cancel) watch.cancel = null
      if (!this.#current(watch, generation)) return
      this.#count(check, result, now)
      this.#store(watch, nextHealth(watch.report, result, { check, startedAt, now }))
      this.#schedule(watch)
    }).catch((error: unknown) => {
      // Only a bug gets here (the runner is guarded, listeners are isolated): the task is no longer probed.
      this.#log.error({ task: watch.task, err: error }, 'health probe result could not be recorded')
    })
    this.#inFlight.add(probe)
    void probe.finally(() => this.#inFlight.delete(probe))
  }

  /** A runner is not supposed to throw; if one does, that is a probe that could not run. */
  async #runGuarded (check: Healthcheck, target: ProbeTarget, signal: AbortSignal): Promise<HealthResult> {
    try {
      return await this.#runProbe(check, target, signal)
    } catch (error) {
      this.#log.warn({ task: target.task, err: error }, 'health probe runner failed')
      const at = new Date(this.#clock.now()).toISOString()
      return { start: at, end: at, exitCode: EXIT_PROBE_ERROR, output: `probe failed: ${(error as Error).message}` }
    }
  }

  #count (check: Healthcheck, result: HealthResult, startedAt: number): void {
    if (this.#metrics === null) return
    this.#metrics.probes.inc({ kind: check.test.kind, result: probeResultLabel(result.exitCode) })
    this.#metrics.probeSeconds.observe({ kind: check.test.kind }, Math.max(0, this.#clock.now() - startedAt) / 1000)
  }

  #store (watch: Watch, report: HealthReport): void {
    const previous = watch.report
    watch.report = report
    if (report.status === previous.status) return
    this.#log.info({ task: watch.task, status: report.status, previous: previous.status, failingStreak: report.failingStreak }, 'task health changed')
    this.#metrics?.transitions.inc({ status: report.status })
    for (const listener of [...this.#listeners]) {
      try {
        listener(watch.task, report, previous)
      } catch (error) {
        this.#log.error({ task: watch.task, err: error }, 'health change listener failed')
      }
    }
  }

  #countByStatus (): Record<HealthState, number> {
    const counts: Record<HealthState, number> = { starting: 0, healthy: 0, unhealthy: 0 }
    for (const watch of this.#watches.values()) counts[watch.report.status]++
    return counts
  }
}
