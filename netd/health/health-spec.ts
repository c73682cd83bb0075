/**
 * A task's health check as the service spec, the node's document and the
 * health monitor all carry it, and the report a node makes of its result:
 * one schema each, shared by the manager (store, dispatcher) and netd.
 *
 * Durations are milliseconds. The defaults are shorter than Docker's (30 s
 * interval, 30 s timeout) because a check is how a task leaves DNS and every
 * load balancer: with 5 s × 3 retries a failing task is out within ~15 s,
 * and a check that must notice faster says so with --health-interval.
 */
import { z } from 'zod'

const port = z.int().min(1).max(65535)

export const healthTestSchema = z.discriminatedUnion('kind', [
  /** Docker's CMD-SHELL: `/bin/sh -c COMMAND` in the task's namespaces, as its user; exit 0 is healthy. */
  z.strictObject({ kind: z.literal('cmd'), command: z.string().min(1).max(4096) }),
  /** A TCP connection to the task's address on PORT, made from the task's network namespace only. */
  z.strictObject({ kind: z.literal('tcp'), port }),
  /** HTTP GET of PATH on the task's address and PORT; a 2xx or 3xx status is healthy (kubelet's rule). */
  z.strictObject({ kind: z.literal('http'), path: z.string().regex(/^\/[\x21-\x7e]*$/, 'must be an absolute path like /healthz').max(1024), port })
])

export const healthcheckSchema = z.strictObject({
  test: healthTestSchema,
  interval: z.int().min(100).max(86_400_000).default(5000),
  timeout: z.int().min(100).max(86_400_000).default(3000),
  /** Consecutive failures (after the start period) that make a task unhealthy. */
  retries: z.int().min(1).max(1000).default(3),
  /** Failures within this long of the task's start do not count; a success ends it early. */
  startPeriod: z.int().min(0).max(86_400_000).default(0)
})

export const HEALTH_STATES = ['starting', 'healthy', 'unhealthy'] as const
export type HealthState = typeof HEALTH_STATES[number]

/** Kept to this many bytes per probe output, and this many results (Docker keeps 5). */
export const HEALTH_OUTPUT_BYTES = 1024
export const HEALTH_LOG_LENGTH = 5

export const healthResultSchema = z.strictObject({
  /** ISO times. */
  start: z.string().max(64),
  end: z.string().max(64),
  /** 0 healthy, 1 unhealthy (Docker's convention); -1 when the probe could not run or timed out. */
  exitCode: z.int(),
  output: z.string().max(HEALTH_OUTPUT_BYTES * 4)
})

/** What a node reports of one task's health: the state and the last results that led to it. */
export const healthReportSchema = z.strictObject({
  status: z.enum(HEALTH_STATES),
  failingStreak: z.int().min(0),
  log: z.array(healthResultSchema).max(HEALTH_LOG_LENGTH)
})

export type HealthTest = z.infer<typeof healthTestSchema>
export type Healthcheck = z.infer<typeof healthcheckSchema>
export type HealthcheckInput = z.input<typeof healthcheckSchema>
export type HealthResult = z.infer<typeof healthResultSchema>
export type HealthReport = z.infer<typeof healthReportSchema>
