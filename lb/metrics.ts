/**
 * lb's Prometheus metrics, registered on the registry of the process that
 * embeds it (netd).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export function createLbMetrics (registry: Registry) {
  return {
    syncSeconds: new Histogram({
      name: 'weft_lb_sync_duration_seconds',
      help: 'Time to bring every namespace\'s load-balancing rules to the spec',
      buckets: [0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry]
    }),
    transactions: new Counter({
      name: 'weft_lb_transactions_total',
      help: 'nft transactions (one per namespace per change) by result: ok, error',
      labelNames: ['result'] as const,
      registers: [registry]
    }),
    operations: new Counter({ name: 'weft_lb_operations_total', help: 'nft operations (element, chain, set, rule) applied', registers: [registry] }),
    conntrackDeletions: new Counter({
      name: 'weft_lb_conntrack_deletions_total',
      help: 'conntrack deletions run for backends that left, by reason (removed, unhealthy) and result (ok, error)',
      labelNames: ['reason', 'result'] as const,
      registers: [registry]
    }),
    errors: new Counter({
      name: 'weft_lb_errors_total',
      help: 'Failures per namespace by stage: namespace, observe, apply, conntrack, sysctl (retried next sync)',
      labelNames: ['stage'] as const,
      registers: [registry]
    }),
    namespaces: new Gauge({ name: 'weft_lb_namespaces', help: 'Namespaces lb programs (task namespaces and the host namespace)', registers: [registry] }),
    frontends: new Gauge({ name: 'weft_lb_frontends', help: 'Frontends on this node by kind: vip (summed over task namespaces), ingress, host', labelNames: ['kind'] as const, registers: [registry] })
  }
}

export type LbMetrics = ReturnType<typeof createLbMetrics>
