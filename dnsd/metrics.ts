/**
 * dnsd's Prometheus metrics, registered on the registry of the process that
 * embeds it (netd, or the standalone server).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export function createDnsMetrics (registry: Registry) {
  return {
    queries: new Counter({
      name: 'weft_dnsd_queries_total',
      help: 'DNS queries by how they were answered: local, forwarded, cached, error (FORMERR, REFUSED, ...), servfail, dropped, rate_limited',
      labelNames: ['outcome', 'transport'] as const,
      registers: [registry]
    }),
    forwardSeconds: new Histogram({
      name: 'weft_dnsd_forward_duration_seconds',
      help: 'Time to answer a forwarded query (cache hits included)',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry]
    }),
    listeners: new Gauge({ name: 'weft_dnsd_task_listeners', help: 'Task namespaces with a DNS socket bound inside', registers: [registry] }),
    attachFailures: new Counter({ name: 'weft_dnsd_attach_failures_total', help: 'Failures to bind the DNS address inside a task namespace', registers: [registry] })
  }
}

export type DnsMetrics = ReturnType<typeof createDnsMetrics>
