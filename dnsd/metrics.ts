/**
 * dnsd's Prometheus metrics, registered on the registry of the process that
 * embeds it (netd, or the standalone server).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export const QUERY_OUTCOMES = ['local', 'forwarded', 'cached', 'error', 'servfail', 'dropped', 'rate_limited'] as const
export type QueryOutcome = (typeof QUERY_OUTCOMES)[number]
const TRANSPORTS = ['udp', 'tcp'] as const
type Transport = (typeof TRANSPORTS)[number]
const OUTCOME_INDEX = Object.fromEntries(QUERY_OUTCOMES.map((outcome, i) => [outcome, i])) as Record<QueryOutcome, number>

/**
 * Queries by outcome and transport, counted with a plain increment: this
 * happens for every query, and a labelled prom-client inc() hashes its labels
 * each time (about 150 ns, a third of answering a cluster name). The counter
 * reads the tally when scraped.
 */
export class QueryCounts {
  readonly #counts = new Float64Array(QUERY_OUTCOMES.length * TRANSPORTS.length)

  add (outcome: QueryOutcome, transport: Transport): void {
    this.#counts[OUTCOME_INDEX[outcome] * 2 + (transport === 'udp' ? 0 : 1)]! += 1
  }

  get (outcome: QueryOutcome, transport: Transport): number {
    return this.#counts[OUTCOME_INDEX[outcome] * 2 + (transport === 'udp' ? 0 : 1)]!
  }
}

export function createDnsMetrics (registry: Registry) {
  const queries = new QueryCounts()
  // Held by the registry, which calls collect() on every scrape.
  new Counter({
    name: 'weft_dnsd_queries_total',
    help: 'DNS queries by how they were answered: local, forwarded, cached, error (FORMERR, REFUSED, ...), servfail, dropped, rate_limited',
    labelNames: ['outcome', 'transport'] as const,
    registers: [registry],
    collect () {
      this.reset()
      for (const outcome of QUERY_OUTCOMES) {
        for (const transport of TRANSPORTS) {
          const count = queries.get(outcome, transport)
          if (count > 0) this.inc({ outcome, transport }, count)
        }
      }
    }
  })
  return {
    queries,
    forwardSeconds: new Histogram({
      name: 'weft_dnsd_forward_duration_seconds',
      help: 'Time to answer a forwarded query from upstream (cache hits are answered without waiting and not timed)',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry]
    }),
    listeners: new Gauge({ name: 'weft_dnsd_task_listeners', help: 'Task namespaces with a DNS socket bound inside', registers: [registry] }),
    attachFailures: new Counter({ name: 'weft_dnsd_attach_failures_total', help: 'Failures to bind the DNS address inside a task namespace', registers: [registry] })
  }
}

export type DnsMetrics = ReturnType<typeof createDnsMetrics>
