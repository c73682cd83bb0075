/**
 * The forwarder's own Prometheus series, registered on the registry of the
 * process that embeds dnsd (names distinct from dnsd/metrics.ts). Labels are
 * bounded: upstreams come from the node's resolv.conf (at most three).
 *
 * Results and cache entries are read when scraped: cache hits from the
 * cache's own count (a hit is on dnsd's hot path, where a labelled inc()
 * would cost a quarter of serving it, see metrics.ts), the entry count from
 * the cache itself (so expiry and eviction show too), and answers from
 * upstream or SERVFAIL from plain tallies the forwarder keeps.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { ForwardCache } from './forward-cache.ts'

export function createForwarderMetrics (registry: Registry, cache: ForwardCache | null) {
  const answered = { upstream: 0, servfail: 0 }
  return {
    answered,
    results: new Counter({
      name: 'weft_dnsd_forward_results_total',
      help: 'Forwarded queries by where the answer came from: cache, upstream, servfail',
      labelNames: ['source'] as const,
      registers: [registry],
      collect () {
        this.reset()
        this.inc({ source: 'cache' }, cache?.hits ?? 0)
        this.inc({ source: 'upstream' }, answered.upstream)
        this.inc({ source: 'servfail' }, answered.servfail)
      }
    }),
    attempts: new Counter({
      name: 'weft_dnsd_forward_attempts_total',
      help: 'Attempts on one upstream by outcome: answer, truncated (retried over TCP), timeout, port_unreachable, error, busy, closed, and the upstream rcodes servfail and refused',
      labelNames: ['upstream', 'transport', 'outcome'] as const,
      registers: [registry]
    }),
    attemptSeconds: new Histogram({
      name: 'weft_dnsd_forward_attempt_duration_seconds',
      help: 'Time of one attempt on one upstream, whatever its outcome',
      labelNames: ['transport'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry]
    }),
    ignoredReplies: new Counter({
      name: 'weft_dnsd_forward_ignored_replies_total',
      help: 'Upstream datagrams dropped: unknown_id, mismatch (source or question), malformed',
      labelNames: ['reason'] as const,
      registers: [registry]
    }),
    cacheEntries: new Gauge({
      name: 'weft_dnsd_forward_cache_entries',
      help: 'Entries in the forwarding cache',
      registers: [registry],
      collect () { this.set(cache?.size ?? 0) }
    })
  }
}

export type ForwarderMetrics = ReturnType<typeof createForwarderMetrics>
