/**
 * The lb reconciler: the only part of lb that touches the kernel. netd hands
 * it an LbSpec (spec.ts) after every document; it brings each namespace's
 * table to the compiled model with one nft transaction per namespace that
 * changed, then, once every transaction is in, deletes the conntrack entries
 * of backends that left.
 *
 * What it believes the kernel holds, per namespace, is the model it last
 * applied. It starts (a restart, a new namespace, a failed transaction)
 * not knowing, and then observes the kernel first: a restarted netd whose
 * rules are intact makes no transaction at all, so traffic is not disturbed.
 *
 * Errors are per namespace: reported in the result (and logged, and counted),
 * never thrown; the namespace is observed again and retried on the next sync.
 * A namespace that left the spec is forgotten (netd deletes the namespace).
 */
import type { Logger } from 'pino'
import type { Frontend, LbSpec } from './spec.ts'
import type { LbMetrics } from './metrics.ts'
import type { LbRunner } from './runner.ts'
import type { Sysctls } from './sysctl.ts'
import { RulesetCompiler, type NftTable } from './ruleset.ts'
import { describeDrift, diff, renderScript, type Delta } from './delta.ts'
import { conntrackArgs, conntrackDeletions } from './conntrack.ts'
import { HOST_SYSCTLS, taskSysctls } from './sysctl.ts'
import { frontendStats, type FrontendStats } from './stats.ts'
import { realRunner } from './runner.ts'
import { LbError } from './errors.ts'

export interface LbProgrammerOptions {
  readonly log: Logger
  /** The kernel port; the real one by default. */
  readonly runner?: LbRunner
  readonly metrics?: LbMetrics
  /** Seconds, set per task namespace; null keeps the kernel's 432000 (see sysctl.ts). */
  readonly tcpEstablishedTimeout?: number | null
  /** Namespaces programmed at once. */
  readonly concurrency?: number
  /**
   * Where the published ports live: null (default) is netd's own namespace,
   * the host's. Tests name a throwaway namespace here.
   */
  readonly hostNamespace?: string | null
}

export interface LbSyncResult {
  /** Namespaces looked at: task namespaces plus the host namespace. */
  readonly namespaces: number
  /** nft transactions applied. */
  readonly transactions: number
  /** One line per failure, `namespace: message`. */
  readonly errors: readonly string[]
}

interface NamespaceState {
  /** The model the kernel holds, as far as we know; undefined: not known, observe first. */
  applied: NftTable | null | undefined
  sysctlsWritten: boolean
}

type Stage = 'namespace' | 'observe' | 'apply' | 'conntrack' | 'sysctl'

interface Change { readonly delta: Delta, readonly script: string }

const HOST = 'host namespace'

export class LbProgrammer {
  readonly #log: Logger
  readonly #runner: LbRunner
  readonly #metrics: LbMetrics | undefined
  readonly #taskSysctls: Sysctls
  readonly #concurrency: number
  readonly #hostNetns: string | null
  readonly #compiler = new RulesetCompiler()
  readonly #tasks = new Map<string, NamespaceState>()
  readonly #host: NamespaceState = { applied: undefined, sysctlsWritten: false }
  #spec: LbSpec | null = null
  #queue: Promise<unknown> = Promise.resolve()

  constructor (options: LbProgrammerOptions) {
    this.#log = options.log
    this.#runner = options.runner ?? realRunner
    this.#metrics = options.metrics
    this.#taskSysctls = taskSysctls(options.tcpEstablishedTimeout ?? null)
    this.#concurrency = Math.max(1, options.concurrency ?? 8)
    this.#hostNetns = options.hostNamespace ?? null
  }

  /** Brings every namespace of the spec to it. Calls are serialised. */
  sync (spec: LbSpec): Promise<LbSyncResult> {
    return this.#serial(async () => await this.#sync(spec))
  }

  /**
   * Makes the next sync read every namespace's table (and sysctls) from the kernel instead of trusting
   * what was last applied: how a periodic or requested repair finds changes made behind lb's back.
   */
  forgetKernel (): Promise<void> {
    return this.#serial(async () => {
      for (const state of [this.#host, ...this.#tasks.values()]) {
        state.applied = undefined
        state.sysctlsWritten = false
      }
    })
  }

  /** The model each namespace of the last spec holds now, read from the kernel (null: no table). */
  observe (): Promise<Map<string | null, NftTable | null>> {
    return this.#serial(async () => {
      const out = new Map<string | null, NftTable | null>()
      out.set(this.#hostNetns, (await this.#runner.list(this.#hostNetns)).table)
      for (const netns of this.#tasks.keys()) {
        if (await this.#runner.exists(netns)) out.set(netns, (await this.#runner.list(netns)).table)
      }
      return out
    })
  }

  /** What differs between the kernel and the spec, one line each (`netd check`); empty when in sync. */
  check (spec: LbSpec): Promise<string[]> {
    return this.#serial(async () => {
      const compiler = new RulesetCompiler()
      const drift: string[] = []
      const one = async (netns: string | null, desired: NftTable | null, sysctls: Sysctls | null): Promise<void> => {
        const where = netns ?? HOST
        try {
          if (netns !== null && !(await this.#runner.exists(netns))) {
            drift.push(`${where}: namespace missing`)
            return
          }
          const { table } = await this.#runner.list(netns)
          for (const line of describeDrift(diff(table, desired))) drift.push(`${where}: ${line}`)
          if (sysctls !== null) {
            const actual = await this.#runner.readSysctls(netns, Object.keys(sysctls))
            for (const [name, value] of Object.entries(sysctls)) {
              if (actual[name] !== value) drift.push(`${where}: sysctl ${name} is ${actual[name] ?? '?'}, want ${value}`)
            }
          }
        } catch (error) {
          drift.push(`${where}: cannot check: ${(error as Error).message}`)
        }
      }
      const jobs = [...spec.tasks].map(([netns, task]) => async () => await one(netns, compiler.task(task), this.#taskSysctls))
      const host = compiler.host(spec.host)
      jobs.push(async () => await one(this.#hostNetns, host, host === null ? null : HOST_SYSCTLS))
      await pool(jobs, this.#concurrency)
      return drift
    })
  }

  /** Frontends of the last synced spec with their backends' health and counters (`netd lb [SERVICE]`). */
  stats (service?: string): Promise<FrontendStats[]> {
    return this.#serial(async () => {
      const spec = this.#spec
      if (spec === null) return []
      const wanted = (f: Frontend): boolean => service === undefined || f.service === service || f.serviceName === service
      const targets: Array<[string | null, Frontend[]]> = [[this.#hostNetns, spec.host.frontends.filter(wanted)]]
      for (const [netns, task] of spec.tasks) targets.push([netns, task.frontends.filter(wanted)])
      const rows: FrontendStats[][] = targets.map(() => [])
      await pool(targets.map(([netns, frontends], i) => async () => {
        if (frontends.length === 0) return
        try {
          rows[i] = frontendStats(netns, frontends, (await this.#runner.list(netns)).counters)
        } catch (error) {
          this.#log.warn({ netns: netns ?? HOST, err: error }, 'lb stats: cannot read counters')
          rows[i] = frontendStats(netns, frontends, new Map())
        }
      }), this.#concurrency)
      return rows.flat()
    })
  }

  /**
   * Stops; with cleanup, deletes the host namespace's table and the tables of
   * the task namespaces that still exist. Returns the failures.
   */
  close (cleanup: boolean): Promise<string[]> {
    return this.#serial(async () => {
      if (!cleanup) return []
      const errors: string[] = []
      const remove = async (netns: string | null): Promise<void> => {
        try {
          if (netns !== null && !(await this.#runner.exists(netns))) return
          await this.#runner.deleteTable(netns)
        } catch (error) {
          errors.push(`${netns ?? HOST}: ${(error as Error).message}`)
        }
      }
      await pool([this.#hostNetns, ...this.#tasks.keys()].map((netns) => async () => await remove(netns)), this.#concurrency)
      this.#tasks.clear()
      this.#host.applied = undefined
      return errors
    })
  }

  #serial<T> (work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work, work)
    this.#queue = next.catch(() => undefined)
    return next
  }

  async #sync (spec: LbSpec): Promise<LbSyncResult> {
    const stopTimer = this.#metrics?.syncSeconds.startTimer()
    const errors: string[] = []
    let transactions = 0
    // Tasks that share their frontends share one compiled table, and so, while in step, one diff and one script.
    const changes = new Map<NftTable | null, Map<NftTable | null, Change>>()
    const changeOf = (from: NftTable | null, to: NftTable | null): Change => {
      let byTarget = changes.get(from)
      if (byTarget === undefined) changes.set(from, byTarget = new Map())
      let change = byTarget.get(to)
      if (change === undefined) {
        const delta = diff(from, to)
        byTarget.set(to, change = { delta, script: renderScript(delta) })
      }
      return change
    }

    const cleanups: Array<() => Promise<void>> = []
    const one = async (netns: string | null, state: NamespaceState, desired: NftTable | null, frontends: readonly Frontend[], sysctls: Sysctls | null): Promise<void> => {
      const where = netns ?? HOST
      const failed = (stage: Stage, error: unknown): void => {
        const message = (error as Error).message
        errors.push(`${where}: ${message}`)
        this.#metrics?.errors.inc({ stage })
        this.#log.error({ netns: where, stage, err: error }, 'lb: namespace not programmed')
      }
      if (netns !== null && state.applied === undefined && !(await this.#runner.exists(netns))) {
        failed('namespace', new LbError('LB_ERR_NAMESPACE', `namespace ${netns} does not exist`))
        return
      }
      // Before the first rule: connections made through a VIP need timestamps off from the start.
      if (sysctls !== null && !state.sysctlsWritten) {
        try {
          await this.#runner.writeSysctls(netns, sysctls)
          state.sysctlsWritten = true
        } catch (error) {
          failed('sysctl', error)
        }
      }
      if (state.applied === undefined) {
        try {
          state.applied = (await this.#runner.list(netns)).table
        } catch (error) {
          failed('observe', error)
          return
        }
      }
      const from = state.applied
      const change = changeOf(from, desired)
      if (change.delta.length > 0) {
        try {
          await this.#runner.apply(netns, change.delta, change.script)
        } catch (error) {
          state.applied = undefined
          this.#metrics?.transactions.inc({ result: 'error' })
          failed('apply', error)
          return
        }
        transactions++
        this.#metrics?.transactions.inc({ result: 'ok' })
        this.#metrics?.operations.inc(change.delta.length)
        this.#log.debug({ netns: where, operations: change.delta.length }, 'lb: transaction applied')
      }
      // Even when nothing changed: adopt the compiled value, whose groups the next diff skips by identity.
      state.applied = desired
      // After the transaction: no new connection can be made to a leaving backend while its entries go.
      const deletions = conntrackDeletions(from, change.delta, frontends)
      if (deletions.length === 0) return
      cleanups.push(async () => {
        try {
          const deleted = await this.#runner.deleteFlows(netns, deletions.map((d) => d.filter))
          deletions.forEach((deletion, i) => {
            this.#metrics?.conntrackDeletions.inc({ reason: deletion.reason, result: 'ok' })
            const entries = deleted[i] ?? 0
            if (entries > 0) {
              const byHand = `conntrack ${conntrackArgs(deletion.filter).join(' ')}`
              this.#log.info({ netns: where, frontend: deletion.frontend, backend: deletion.backend, reason: deletion.reason, entries, byHand }, 'lb: conntrack entries deleted')
            }
          })
        } catch (error) {
          for (const deletion of deletions) this.#metrics?.conntrackDeletions.inc({ reason: deletion.reason, result: 'error' })
          failed('conntrack', error)
        }
      })
    }

    const jobs: Array<() => Promise<void>> = []
    let vips = 0
    for (const [netns, task] of spec.tasks) {
      let state = this.#tasks.get(netns)
      if (state === undefined) this.#tasks.set(netns, state = { applied: undefined, sysctlsWritten: false })
      const desired = this.#compiler.task(task)
      const s = state
      vips += task.frontends.length
      jobs.push(async () => await one(netns, s, desired, task.frontends, this.#taskSysctls))
    }
    for (const netns of [...this.#tasks.keys()]) if (!spec.tasks.has(netns)) this.#tasks.delete(netns)
    const host = this.#compiler.host(spec.host)
    jobs.push(async () => await one(this.#hostNetns, this.#host, host, spec.host.frontends, host === null ? null : HOST_SYSCTLS))

    await pool(jobs, this.#concurrency)
    // Every namespace's change is in effect before the first deletion: each namespace's deletions walk the
    // kernel's whole conntrack table (~10 ms here), and a transaction must not wait behind other walks.
    await pool(cleanups, this.#concurrency)
    this.#compiler.sweep()
    this.#spec = spec
    this.#metrics?.namespaces.set(spec.tasks.size + 1)
    this.#metrics?.frontends.set({ kind: 'vip' }, vips)
    for (const kind of ['ingress', 'host'] as const) this.#metrics?.frontends.set({ kind }, spec.host.frontends.filter((f) => f.kind === kind).length)
    stopTimer?.()
    return { namespaces: spec.tasks.size + 1, transactions, errors }
  }
}

/** Runs jobs with at most `limit` in flight. */
async function pool (jobs: ReadonlyArray<() => Promise<void>>, limit: number): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < jobs.length) await jobs[next++]!()
  }
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker))
}
