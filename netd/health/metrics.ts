/**
 * The health monitor's Prometheus metrics, registered on the registry of the
 * process that embeds it (netd). The per-status gauge is computed when
 * scraped, from the monitor's own reports: no second count to drift.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { HEALTH_STATES, type HealthState } from './health-spec.ts'

export function createHealthMetrics (registry: Registry, countByStatus: () => Readonly<Record<HealthState, number>>) {
  return {
    probes: new Counter({
      name: 'weft_netd_health_probes_total',
      help: 'Health probes run, by check kind (cmd, tcp, http) and result: success (exit 0), failure (exit 1), error (could not run or timed out)',
      labelNames: ['kind', 'result'] as const,
      registers: [registry]
    }),
    probeSeconds: new Histogram({
      name: 'weft_netd_health_probe_duration_seconds',
      help: 'Time one health probe took, by check kind',
      labelNames: ['kind'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry]
    }),
    transitions: new Counter({
      name: 'weft_netd_health_transitions_total',
      help: 'Changes of a task\'s health status, by the status entered',
      labelNames: ['status'] as const,
      registers: [registry]
    }),
    tasks: new Gauge({
      name: 'weft_netd_health_tasks',
      help: 'Tasks whose health this node checks, by status',
      labelNames: ['status'] as const,
      registers: [registry],
      collect () {
        const counts = countByStatus()
        for (const status of HEALTH_STATES) this.set({ status }, counts[status])
      }
    })
  }
}

export type HealthMetrics = ReturnType<typeof createHealthMetrics>

/** The `result` label of a probe's exit code. */
export function probeResultLabel (exitCode: number): 'success' | 'failure' | 'error' {
  return exitCode === 0 ? 'success' : exitCode === 1 ? 'failure' : 'error'
}
