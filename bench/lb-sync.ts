/**
 * Benchmark (root): the cost of one endpoint change with 10, 1,000 and 10,000
 * services in one task namespace. For each size: a throwaway namespace, a full
 * first sync, then CHANGES single-endpoint changes (a 4th task joins one
 * service, then leaves), each timed as lbSpec (document → spec) and
 * LbProgrammer.sync (compile, diff, one nft transaction, conntrack). Prints medians.
 * bench/lb.ts runs the same measurement as part of its report.
 *
 *   node --expose-gc bench/lb-sync.ts [sizes=10,1000,10000] [changes=20] [usual|new-count]
 *
 * usual (default): service 0 always has 4 tasks, so a service going from 3 to
 * 4 tasks moves its VIP between existing dispatch sets (set elements only).
 * new-count: no other service has 4 tasks, so each change also adds (or
 * removes) the dispatch set for 4 and rewrites the nat chain's rules.
 *
 * Each change is timed twice: "in effect" ends when the nft transaction has
 * been committed (from then on new connections follow the change), "sync"
 * when LbProgrammer.sync returns (a leaving task also waits for its
 * conntrack deletions: one walk of the kernel's table over netlink).
 *
 * Namespaces are named weftlab-lbdev-bench-<pid> and deleted at the end (and
 * at exit). The previous document's garbage is collected before each timed
 * sync (else a major GC of the 10,000-service documents lands in some syncs
 * and is counted as theirs); without `node --expose-gc` the collector is
 * reached through v8.setFlagsFromString.
 */
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { runInNewContext } from 'node:vm'
import { setFlagsFromString } from 'node:v8'
import pino from 'pino'
import type { DesiredState } from '../netd/desired-state.ts'
import { manyServices, remoteTask } from '../test/fixtures/lb-gen.ts'
import { lbSpec } from '../lb/spec.ts'
import { LbProgrammer } from '../lb/programmer.ts'
import { realRunner, type LbRunner } from '../lb/runner.ts'

export interface SyncOptions {
  sizes: readonly number[]
  /** Changes per size, alternately a join and a leave (even: as many of each). */
  changes: number
  /** Each change also creates or removes a dispatch set (see the header). */
  newCount?: boolean
  /** Called with each size's result as soon as it is measured. */
  onResult?: (result: SyncResult) => void
}

/** Milliseconds; medians over the joins or the leaves of one size. */
export interface SyncResult {
  services: number
  changes: number
  firstSync: number
  /** A 4th task joins a service: start of sync → nft transaction committed. */
  joinInEffect: number
  /** … → LbProgrammer.sync returned. */
  joinSync: number
  /** The task leaves again: start of sync → nft transaction committed. */
  leaveInEffect: number
  /** … → sync returned, after the conntrack deletions. */
  leaveSync: number
  leaveConntrack: number
  /** The nft transaction alone, joins and leaves together. */
  nft: number
  lbSpec: number
  unchangedSync: number
  unchangedTransactions: number
  /** The fastest of each kind: the figure least disturbed by whatever else runs on the machine. */
  best: { joinSync: number, leaveInEffect: number, leaveSync: number }
}

/** N services with a VIP and 3 remote tasks each; a 4th task for service `extra`, and for s0 unless `newCount`. */
function documentOf (services: number, extra: number | null, newCount: boolean): DesiredState {
  return manyServices(services, 3, (s, tasks) => s === extra || (s === 0 && !newCount) ? [...tasks, remoteTask(s, 3)] : tasks)
}

/** The middle value; of an even count, the mean of the two middle ones. */
export function median (xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  if (sorted.length === 0) return Number.NaN
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

function collector (): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc
  if (exposed) return exposed
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}

/** The throwaway namespace of this process; bench/lb.ts deletes it on a signal. */
export const syncNetns = `weftlab-lbdev-bench-${process.pid}`

export function deleteSyncNetns (): void {
  try { execFileSync('ip', ['netns', 'del', syncNetns], { stdio: 'ignore' }) } catch { /* not there */ }
}

export async function measureSync (opts: SyncOptions): Promise<SyncResult[]> {
  const newCount = opts.newCount ?? false
  const gc = collector()
  /** The real runner, timing nft transactions and conntrack deletions. */
  const spent = { apply: 0, conntrack: 0, committedAt: 0 }
  const runner: LbRunner = {
    ...realRunner,
    async apply (netns, delta, script) {
      const t = performance.now()
      try { await realRunner.apply(netns, delta, script) } finally {
        spent.committedAt = performance.now()
        spent.apply += spent.committedAt - t
      }
    },
    async deleteFlows (netns, filters) {
      const t = performance.now()
      try { return await realRunner.deleteFlows(netns, filters) } finally { spent.conntrack += performance.now() - t }
    }
  }
  const log = pino({ level: 'warn' })
  const results: SyncResult[] = []
  deleteSyncNetns()
  execFileSync('ip', ['netns', 'add', syncNetns])
  try {
    for (const size of opts.sizes) {
      const programmer = new LbProgrammer({ log, runner })
      const options = { taskNetns: () => syncNetns, ingressLeg: null }
      let started = performance.now()
      const first = await programmer.sync(lbSpec(documentOf(size, null, newCount), options))
      const firstSync = performance.now() - started
      if (first.errors.length > 0) throw new Error(first.errors.join('; '))
      const specTimes: number[] = []
      const join = { inEffect: [] as number[], sync: [] as number[] }
      const leave = { inEffect: [] as number[], sync: [] as number[], conntrack: [] as number[] }
      const applyTimes: number[] = []
      for (let i = 0; i < opts.changes; i++) {
        // Alternately a 4th task joins service k, and leaves it again.
        const k = 1 + ((Math.floor(size / 2) + (i >> 1)) % (size - 1))
        const doc = documentOf(size, i % 2 === 0 ? k : null, newCount)
        started = performance.now()
        const spec = lbSpec(doc, options)
        specTimes.push(performance.now() - started)
        spent.apply = spent.conntrack = spent.committedAt = 0
        gc()
        started = performance.now()
        const result = await programmer.sync(spec)
        const total = performance.now() - started
        if (result.transactions !== 1 || result.errors.length > 0) throw new Error(`change ${i}: ${JSON.stringify(result)}`)
        const side = i % 2 === 0 ? join : leave
        side.sync.push(total)
        side.inEffect.push(spent.committedAt - started)
        applyTimes.push(spent.apply)
        if (i % 2 === 1) leave.conntrack.push(spent.conntrack)
      }
      const same = lbSpec(documentOf(size, null, newCount), options)
      started = performance.now()
      const idle = await programmer.sync(same)
      const unchangedSync = performance.now() - started
      const result: SyncResult = {
        services: size,
        changes: opts.changes,
        firstSync,
        joinInEffect: median(join.inEffect),
        joinSync: median(join.sync),
        leaveInEffect: median(leave.inEffect),
        leaveSync: median(leave.sync),
        leaveConntrack: median(leave.conntrack),
        nft: median(applyTimes),
        lbSpec: median(specTimes),
        unchangedSync,
        unchangedTransactions: idle.transactions,
        best: { joinSync: Math.min(...join.sync), leaveInEffect: Math.min(...leave.inEffect), leaveSync: Math.min(...leave.sync) }
      }
      results.push(result)
      opts.onResult?.(result)
      await programmer.close(true)
    }
  } finally {
    deleteSyncNetns()
  }
  return results
}

const ms = (x: number): string => `${x.toFixed(1)} ms`

export function formatSyncResult (r: SyncResult): string {
  return `${String(r.services).padStart(6)} services: first sync ${ms(r.firstSync)}; one endpoint change, medians of ${r.changes / 2}: ` +
    `task joins: in effect ${ms(r.joinInEffect)}, sync ${ms(r.joinSync)}; task leaves: in effect ${ms(r.leaveInEffect)}, sync ${ms(r.leaveSync)} ` +
    `(of which conntrack deletions ${ms(r.leaveConntrack)}); nft transaction alone ${ms(r.nft)}; lbSpec ${ms(r.lbSpec)}; ` +
    `unchanged sync ${ms(r.unchangedSync)} (${r.unchangedTransactions} transactions)`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const sizes = (process.argv[2] ?? '10,1000,10000').split(',').map(Number)
  const changes = Number(process.argv[3] ?? 20)
  const newCount = process.argv[4] === 'new-count'
  process.on('exit', deleteSyncNetns)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { deleteSyncNetns(); process.exit(signal === 'SIGINT' ? 130 : 143) })
  await measureSync({ sizes, changes, newCount, onResult: (r) => process.stdout.write(formatSyncResult(r) + '\n') })
}
