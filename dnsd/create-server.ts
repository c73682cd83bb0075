/**
 * The one way a DnsServer is put together, shared by netd's embedded dnsd
 * (node-dns.ts) and the standalone `dnsd serve` (main.ts): upstreams from a
 * resolv.conf, a forwarder with its answer cache, a per-task rate limiter and
 * the metrics (the server's and the forwarder's), registered on the caller's registry.
 */
import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { DesiredState } from '../netd/desired-state.ts'
import { DnsServer } from './server.ts'
import { Forwarder } from './forwarder.ts'
import { ForwardCache } from './forward-cache.ts'
import { RateLimiter } from './rate-limit.ts'
import { createDnsMetrics } from './metrics.ts'
import { createForwarderMetrics } from './forwarder-metrics.ts'
import { parseResolvConf, upstreamsOf, type ResolvConf } from './resolv-conf.ts'

export interface CreateDnsServerOptions {
  resolvConfPath: string
  registry: Registry
  log: Logger
  /** Queries per second each task may send, and the burst it may spend at once. */
  rateLimit?: { ratePerSecond: number, burst: number }
}

export const DEFAULT_RATE_LIMIT = Object.freeze({ ratePerSecond: 2000, burst: 4000 })

/** The server (no socket yet) and the resolv.conf it read, which node-dns.ts turns into the tasks' own. */
export async function createDnsServer (options: CreateDnsServerOptions, doc: DesiredState): Promise<{ server: DnsServer, resolvConf: ResolvConf }> {
  const resolvConf = parseResolvConf(await readFile(options.resolvConfPath, 'utf8'))
  const upstreams = upstreamsOf(resolvConf)
  const log = options.log
  if (upstreams.length === 0) log.warn({ resolvConf: options.resolvConfPath }, 'no upstream resolver: names outside the cluster will get SERVFAIL')
  const cache = new ForwardCache()
  const forwarder = new Forwarder({ upstreams, cache, log: log.child({ component: 'forwarder' }), metrics: createForwarderMetrics(options.registry, cache) })
  const server = new DnsServer({
    forwarder,
    limiter: new RateLimiter(options.rateLimit ?? DEFAULT_RATE_LIMIT),
    metrics: createDnsMetrics(options.registry),
    log
  }, doc)
  return { server, resolvConf }
}
