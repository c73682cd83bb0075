/**
 * `netd run`: holds the applied desired-state document, persists it, and
 * keeps the kernel matching it: on start (re-adopting what exists), on every
 * new document, on request, and every reconcile interval.
 */
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { RunOptions } from './config.ts'
import { EMPTY_STATE, parseDesiredState, type DesiredState } from './desired-state.ts'
import type { NodeIdentity } from './desired-kernel.ts'
import type { IprouteRunner } from './iproute.ts'
import { INGRESS_LEG, taskNamespaceName, type KernelState } from './kernel-state.ts'
import type { NetdMetrics } from './metrics.ts'
import { observeKernel } from './observe.ts'
import { withLocalHealth } from './local-health.ts'
import { Reconciler, type ReconcileResult } from './reconciler.ts'
import { loadState, saveState } from './state-file.ts'
import { VXLAN_OVERHEAD, underlayMtu } from './underlay.ts'
import { NetdError } from './errors.ts'
import { NodeDns } from '../dnsd/node-dns.ts'
import { LbProgrammer } from '../lb/programmer.ts'
import { lbSpec, type LbSpec } from '../lb/spec.ts'
import { createLbMetrics } from '../lb/metrics.ts'

export interface LastReconcile {
  at: string
  ok: boolean
  commands: number
  durationMs: number
  error: string | null
}

export interface ReconcileSummary {
  commands: number
  batches: number
  durationMs: number
  reasons: string[]
}

export class NetdDaemon {
  readonly options: RunOptions
  readonly #runner: IprouteRunner
  readonly #log: Logger
  readonly #metrics: NetdMetrics
  #node: NodeIdentity | null = null
  #underlayIfname = ''
  #reconciler: Reconciler | null = null
  #doc: DesiredState | null = null
  #timer: NodeJS.Timeout | null = null
  #last: LastReconcile | null = null
  #dns: NodeDns | null = null
  #lb: LbProgrammer | null = null
  /** Local tasks out of traffic on this node's word (local-health.ts). */
  readonly #locallyDown = new Set<string>()
  readonly #startedAt = Date.now()

  constructor (options: RunOptions, runner: IprouteRunner, log: Logger, metrics: NetdMetrics) {
    this.options = options
    this.#runner = runner
    this.#log = log
    this.#metrics = metrics
  }

  async start (): Promise<void> {
    const underlay = await underlayMtu(this.#runner, this.options.advertiseAddr)
    const mtu = this.options.underlayMtu ?? underlay.mtu
    this.#underlayIfname = underlay.ifname
    this.#node = { prefix: this.options.netnsPrefix, underlayAddress: this.options.advertiseAddr, overlayMtu: mtu - VXLAN_OVERHEAD }
    this.#reconciler = new Reconciler(this.#runner, this.#node, this.#log.child({ component: 'reconciler' }))
    this.#setDocument(await loadState(this.options.stateDir))
    if (this.options.dns) {
      this.#dns = await NodeDns.create({
        resolvConfPath: this.options.resolvConf,
        prefix: this.#node.prefix,
        registry: this.#metrics.registry,
        log: this.#log.child({ component: 'dnsd' }),
        rateLimit: { ratePerSecond: this.options.dnsRateLimit, burst: 2 * this.options.dnsRateLimit }
      }, this.servedDocument)
    }
    if (this.options.lb) {
      this.#lb = new LbProgrammer({
        log: this.#log.child({ component: 'lb' }),
        metrics: createLbMetrics(this.#metrics.registry),
        tcpEstablishedTimeout: this.options.lbTcpEstablishedTimeout ?? null
      })
    }
    this.#log.info({ underlay: underlay.ifname, underlayMtu: mtu, overlayMtu: this.#node.overlayMtu, revision: this.document.revision }, 'netd starting')
    // A failed first reconcile is logged and retried on the interval: the daemon must come up to be debuggable.
    await this.reconcile().catch(() => undefined)
    if (this.options.reconcileInterval > 0) {
      this.#timer = setInterval(() => { this.reconcile().catch(() => undefined) }, this.options.reconcileInterval * 1000)
      this.#timer.unref()
    }
  }

  async stop (): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = null
    if (this.options.cleanup) await this.cleanup()
    // Without --cleanup, lb's rules stay: balancing goes on while netd is away, and a restart re-adopts them.
    await this.#dns?.close()
  }

  get metricsRegistry (): Registry {
    return this.#metrics.registry
  }

  get lb (): LbProgrammer {
    if (!this.#lb) throw new NetdError('NETD_ERR_API', 'lb is not running on this node (netd run --no-lb)')
    return this.#lb
  }

  /** What lb must hold for the current document: VIPs in every local task namespace, published ports here. */
  lbSpec (): LbSpec {
    const doc = this.servedDocument
    return lbSpec(doc, {
      taskNetns: (task) => taskNamespaceName(this.node.prefix, task),
      ingressLeg: doc.ingress ? { ifname: INGRESS_LEG, ip: doc.ingress.ip } : null
    })
  }

  get dns (): NodeDns {
    if (!this.#dns) throw new NetdError('NETD_ERR_API', 'dnsd is not running on this node (netd run --no-dns)')
    return this.#dns
  }

  get document (): DesiredState {
    if (!this.#doc) throw new NetdError('NETD_ERR_API', 'netd has not started')
    return this.#doc
  }

  /** The document as dnsd and lb serve it: the manager's, less the local tasks known to be down here. */
  get servedDocument (): DesiredState {
    return withLocalHealth(this.document, this.#locallyDown)
  }

  /**
   * Takes a local task out of DNS and load balancing at once (it ended, or failed its health check),
   * or lets the manager's word decide again. Resolves once lb's rules are in place.
   */
  async setLocallyDown (task: string, down: boolean): Promise<void> {
    if (down === this.#locallyDown.has(task)) return
    if (down) this.#locallyDown.add(task)
    else this.#locallyDown.delete(task)
    if (this.#doc === null) return // not started: the first reconcile serves it so
    this.#log.info({ task, down }, down ? 'task out of traffic on this node\'s word' : 'task back to the manager\'s word')
    this.#dns?.update(this.servedDocument)
    await this.#syncLb()
  }

  get node (): NodeIdentity {
    if (!this.#node) throw new NetdError('NETD_ERR_API', 'netd has not started')
    return this.#node
  }

  /** Validates before anything else: a rejected document changes neither the kernel nor the saved state. */
  async apply (input: unknown): Promise<ReconcileSummary> {
    let doc: DesiredState
    try {
      doc = parseDesiredState(input)
    } catch (error) {
      this.#metrics.rejectedDocuments.inc()
      throw error
    }
    // DNS first, even before the fsync of the saved state: a removed or unhealthy task must leave the
    // answers at once, and answers that run ahead of the saved state are harmless (a restarted netd is
    // sent the document again).
    const listed = new Set(doc.endpoints.map((e) => e.task))
    for (const task of this.#locallyDown) if (!listed.has(task)) this.#locallyDown.delete(task)
    this.#dns?.update(withLocalHealth(doc, this.#locallyDown))
    await saveState(this.options.stateDir, doc)
    this.#setDocument(doc)
    this.#log.info({ revision: doc.revision, networks: doc.networks.length, endpoints: doc.endpoints.length, remoteEndpoints: doc.remoteEndpoints.length }, 'document applied')
    return await this.reconcile('document')
  }

  /**
   * Brings the kernel to the document. A new document is applied against what lb last programmed (one
   * small transaction); a repair (start, interval, `netd reconcile`) re-reads lb's tables from the kernel
   * first, so rules changed behind netd's back are found and put right.
   */
  async reconcile (trigger: 'document' | 'repair' = 'repair'): Promise<ReconcileSummary> {
    if (trigger === 'repair') await this.#lb?.forgetKernel()
    const stopTimer = this.#metrics.reconcileSeconds.startTimer()
    try {
      const result = await this.#reconcilerOrThrow().reconcile(this.document)
      this.#record(result, null)
      return summarise(result)
    } catch (error) {
      this.#record(null, error as Error)
      this.#log.error({ err: error }, 'reconcile failed')
      throw error
    } finally {
      stopTimer()
      // Also after a partial failure: every task namespace that exists gets its DNS socket and its VIPs,
      // both at once (a new task starts only once it has both).
      await Promise.all([this.#dns?.sync(this.document), this.#syncLb()])
    }
  }

  async #syncLb (): Promise<void> {
    if (!this.#lb) return
    const spec = this.lbSpec()
    for (const problem of spec.problems) this.#log.warn({ problem }, 'published port not built')
    const result = await this.#lb.sync(spec)
    if (result.errors.length > 0) this.#log.warn({ errors: result.errors }, 'lb sync incomplete; retried on the next reconcile')
  }

  async drift (): Promise<string[]> {
    const commands = await this.#reconcilerOrThrow().drift(this.document)
    const lbDrift = this.#lb ? (await this.#lb.check(this.lbSpec())).map((line) => `lb: ${line}`) : []
    this.#metrics.drift.set(commands.length + lbDrift.length)
    return [...new Set(commands.map((c) => c.reason)), ...lbDrift]
  }

  async observe (): Promise<KernelState> {
    return await observeKernel(this.#runner, this.node.prefix)
  }

  /** `netd leave`: forget the document and remove every kernel object this netd made. */
  async leave (): Promise<ReconcileSummary> {
    const empty = parseDesiredState({ version: 1, revision: this.document.revision + 1, networks: [], endpoints: [], remoteEndpoints: [] })
    await saveState(this.options.stateDir, empty)
    this.#setDocument(empty)
    this.#dns?.update(empty)
    return await this.cleanup()
  }

  async cleanup (): Promise<ReconcileSummary> {
    await this.#dns?.sync(EMPTY_STATE)
    // Task namespaces take their tables with them; this removes the host's (published ports).
    const lbErrors = await this.#lb?.close(true) ?? []
    if (lbErrors.length > 0) this.#log.warn({ errors: lbErrors }, 'lb cleanup incomplete')
    const result = await this.#reconcilerOrThrow().cleanup()
    this.#log.info({ commands: result.commands.length }, 'removed kernel objects')
    return summarise(result)
  }

  status () {
    return {
      node: this.options.nodeName,
      advertiseAddr: this.options.advertiseAddr,
      underlayInterface: this.#underlayIfname,
      overlayMtu: this.node.overlayMtu,
      netnsPrefix: this.node.prefix,
      revision: this.document.revision,
      networks: this.document.networks.length,
      endpoints: this.document.endpoints.length,
      remoteEndpoints: this.document.remoteEndpoints.length,
      uptimeSeconds: Math.round((Date.now() - this.#startedAt) / 1000),
      lastReconcile: this.#last
    }
  }

  #reconcilerOrThrow (): Reconciler {
    if (!this.#reconciler) throw new NetdError('NETD_ERR_API', 'netd has not started')
    return this.#reconciler
  }

  #setDocument (doc: DesiredState): void {
    this.#doc = doc
    this.#metrics.revision.set(doc.revision)
    this.#metrics.desired.set({ kind: 'network' }, doc.networks.length)
    this.#metrics.desired.set({ kind: 'endpoint' }, doc.endpoints.length)
    this.#metrics.desired.set({ kind: 'remote_endpoint' }, doc.remoteEndpoints.length)
  }

  #record (result: ReconcileResult | null, error: Error | null): void {
    this.#metrics.reconciles.inc({ result: error ? 'error' : 'ok' })
    if (result) {
      this.#metrics.kernelCommands.inc(result.commands.length)
      this.#metrics.drift.set(0)
    }
    this.#last = {
      at: new Date().toISOString(),
      ok: error === null,
      commands: result?.commands.length ?? 0,
      durationMs: Math.round(result?.durationMs ?? 0),
      error: error?.message ?? null
    }
  }
}

function summarise (result: ReconcileResult): ReconcileSummary {
  return {
    commands: result.commands.length,
    batches: result.batches,
    durationMs: Math.round(result.durationMs),
    reasons: [...new Set(result.commands.map((c) => c.reason))]
  }
}
