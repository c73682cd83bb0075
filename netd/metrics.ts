/**
 * netd's Prometheus metrics, on a registry of its own (no module-global state).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export function createMetrics () {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'weft_netd_' })
  return {
    registry,
    reconciles: new Counter({ name: 'weft_netd_reconciles_total', help: 'Reconcile runs by result', labelNames: ['result'] as const, registers: [registry] }),
    reconcileSeconds: new Histogram({
      name: 'weft_netd_reconcile_duration_seconds', help: 'Time to observe, diff and repair the kernel', buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry]
    }),
    kernelCommands: new Counter({ name: 'weft_netd_kernel_commands_total', help: 'iproute2 batch lines executed to repair drift', registers: [registry] }),
    drift: new Gauge({ name: 'weft_netd_drift_commands', help: 'Commands needed to repair the kernel at the last check or reconcile', registers: [registry] }),
    revision: new Gauge({ name: 'weft_netd_document_revision', help: 'Revision of the applied desired-state document', registers: [registry] }),
    desired: new Gauge({ name: 'weft_netd_desired_objects', help: 'Objects in the applied desired-state document', labelNames: ['kind'] as const, registers: [registry] }),
    rejectedDocuments: new Counter({ name: 'weft_netd_rejected_documents_total', help: 'Desired-state documents refused as invalid', registers: [registry] })
  }
}

export type NetdMetrics = ReturnType<typeof createMetrics>
