/**
 * A task's health as Docker judges it (moby daemon/health.go,
 * handleProbeResult), as a pure function from the last report and one probe
 * result to the next report. No timers, no processes: the monitor runs the
 * probes and passes the time in.
 *
 *   starting ──success──▶ healthy ◀──success── unhealthy
 *       │                    │                     ▲
 *       └── failingStreak ≥ retries (failures counted) ──┘
 *
 * Invariants, for every report this module returns from reports it made, under one check:
 *   - failingStreak counts the failures since the last success that were counted;
 *   - status is unhealthy exactly when failingStreak ≥ retries;
 *   - otherwise it is healthy once any probe has succeeded, starting before;
 *   - log holds the last HEALTH_LOG_LENGTH results, oldest first, each output
 *     at most HEALTH_OUTPUT_BYTES of UTF-8.
 *
 * The start period: a failure is not counted while the task is still
 * `starting` and the probe began within startPeriod of the task's start. Once
 * a probe has succeeded the start period is over, whatever the clock says
 * ("a success ends it early"); a healthy task's failures always count.
 */
import { HEALTH_LOG_LENGTH, type Healthcheck, type HealthReport, type HealthResult } from './health-spec.ts'
import { truncateOutput } from './output.ts'

/** Docker's convention: exit status 0 is healthy; anything else (1, or -1 for a probe that could not run or timed out) is a failure. */
export const EXIT_HEALTHY = 0
export const EXIT_UNHEALTHY = 1
export const EXIT_PROBE_ERROR = -1

export interface HealthContext {
  readonly check: Pick<Healthcheck, 'retries' | 'startPeriod'>
  /** When the task started (ms since the epoch). */
  readonly startedAt: number
  /** When the probe that gave this result began (ms since the epoch): Docker measures the start period to the probe's start. */
  readonly now: number
}

export function initialHealth (): HealthReport {
  return Object.freeze({ status: 'starting', failingStreak: 0, log: Object.freeze([]) as unknown as HealthResult[] })
}

/** True while failures of a task that has never been healthy are not counted. */
export function inStartPeriod (check: Pick<Healthcheck, 'startPeriod'>, startedAt: number, now: number): boolean {
  return now - startedAt < check.startPeriod
}

function appendToLog (log: readonly HealthResult[], result: HealthResult): HealthResult[] {
  const kept: HealthResult = Object.freeze({ ...result, output: truncateOutput(result.output) })
  return Object.freeze([...log, kept].slice(-HEALTH_LOG_LENGTH)) as HealthResult[]
}

/** The report after one more probe result. Never mutates `report`; the result is frozen. */
export function nextHealth (report: HealthReport, result: HealthResult, context: HealthContext): HealthReport {
  const log = appendToLog(report.log, result)
  if (result.exitCode === EXIT_HEALTHY) return Object.freeze({ status: 'healthy', failingStreak: 0, log })

  const { check, startedAt, now } = context
  const counted = !(report.status === 'starting' && inStartPeriod(check, startedAt, now))
  if (!counted) return Object.freeze({ status: report.status, failingStreak: report.failingStreak, log })

  const failingStreak = report.failingStreak + 1
  const status = failingStreak >= check.retries ? 'unhealthy' : report.status
  return Object.freeze({ status, failingStreak, log })
}
