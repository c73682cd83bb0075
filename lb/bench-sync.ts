/**
 * Benchmark (root): the cost of one endpoint change with 10, 1,000 and 10,000
 * services in one task namespace. For each size: a throwaway namespace, a full
 * first sync, then CHANGES single-endpoint changes (a 4th task joins one
 * service, then leaves), each timed as lbSpec (document → spec) and
 * LbProgrammer.sync (compile, diff, one `nft -f`, conntrack). Prints medians.
 *
 *   node lb/bench-sync.ts [sizes=10,1000,10000] [changes=20] [usual|new-count]
 *
 * usual (default): service 0 always has 4 tasks, so a service going from 3 to
 * 4 tasks moves its VIP between existing dispatch sets (set elements only).
 * new-count: no other service has 4 tasks, so each change also adds (or
 * removes) the dispatch set for 4 and rewrites the nat chain's rules.
 *
 * Namespaces are named weftlab-lbdev-bench-<pid> and deleted at exit. Run
 * with `node --expose-gc` to collect the previous document's garbage before
 * each timed sync (else a major GC of the 10,000-service documents lands in
 * some syncs and is counted as theirs).
 */
import { execFileSync } from 'node:child_process'
import pino from 'pino'
import type { DesiredState, Endpoint, RemoteEndpoint, Service } from '../netd/desired-state.ts'
import { lbSpec } from './spec.ts'
import { LbProgrammer } from './programmer.ts'
import { realRunner, type LbRunner } from './runner.ts'

const sizes = (process.argv[2] ?? '10,1000,10000').split(',').map(Number)
const changes = Number(process.argv[3] ?? 20)
const newCount = process.argv[4] === 'new-count'
const netns = `weftlab-lbdev-bench-${process.pid}`
const ip = (n: number): string => `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`
const mac = (n: number): string => `02:42:0a:${((n >> 16) & 255).toString(16).padStart(2, '0')}:${((n >> 8) & 255).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`

/** One network 10.0.0.0/8; the local task c1; N services with a VIP each and 3 remote tasks each. */
function documentOf (services: number, extra: number | null): DesiredState {
  const svc: Service[] = []
  const remote: RemoteEndpoint[] = []
  for (let s = 0; s < services; s++) {
    svc.push({ id: `s${s}`, name: `s${s}`, endpointMode: 'vip', scheduler: 'rr', networks: [{ network: 'front', vip: ip(0x010000 + s), aliases: [] }], ports: [] })
    const tasks = s === extra || (s === 0 && !newCount) ? 4 : 3
    for (let k = 0; k < tasks; k++) {
      const n = 0x100000 + s * 4 + k
      remote.push({ network: 'front', ip: ip(n), mac: mac(n), node: '192.168.5.2', task: `t${s}-${k}`, service: `s${s}`, healthy: true })
    }
  }
  const local: Endpoint[] = [{ task: 'c1', network: 'front', ip: '10.0.0.10', mac: '02:42:0a:00:00:0a', healthy: true }]
  return {
    version: 1,
    revision: 1,
    networks: [{ id: 'front', name: 'front', subnet: '10.0.0.0/8', gateway: '10.0.0.1', vni: 4101, ingress: false }],
    endpoints: local,
    remoteEndpoints: remote,
    services: svc
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** The real runner, timing nft transactions and conntrack deletions. */
const spent = { apply: 0, conntrack: 0 }
const runner: LbRunner = {
  ...realRunner,
  async apply (netns, delta, script) {
    const t = performance.now()
    try { await realRunner.apply(netns, delta, script) } finally { spent.apply += performance.now() - t }
  },
  async conntrackDelete (netns, args) {
    const t = performance.now()
    try { return await realRunner.conntrackDelete(netns, args) } finally { spent.conntrack += performance.now() - t }
  }
}
const ms = (x: number): string => `${x.toFixed(1)} ms`

execFileSync('ip', ['netns', 'add', netns])
process.on('exit', () => { try { execFileSync('ip', ['netns', 'del', netns], { stdio: 'ignore' }) } catch { /* already gone */ } })
const log = pino({ level: 'warn' })
try {
  for (const size of sizes) {
    const programmer = new LbProgrammer({ log, runner })
    const options = { taskNetns: () => netns, ingressLeg: null }
    let started = performance.now()
    const first = await programmer.sync(lbSpec(documentOf(size, null), options))
    const full = performance.now() - started
    if (first.errors.length > 0) throw new Error(first.errors.join('; '))
    const specTimes: number[] = []
    const addTimes: number[] = []
    const removeTimes: number[] = []
    const applyTimes: number[] = []
    const conntrackTimes: number[] = []
    for (let i = 0; i < changes; i++) {
      // Alternately a 4th task joins service k, and leaves it again.
      const k = 1 + ((Math.floor(size / 2) + (i >> 1)) % (size - 1))
      const doc = documentOf(size, i % 2 === 0 ? k : null)
      started = performance.now()
      const spec = lbSpec(doc, options)
      specTimes.push(performance.now() - started)
      spent.apply = spent.conntrack = 0
      ;(globalThis as { gc?: () => void }).gc?.()
      started = performance.now()
      const result = await programmer.sync(spec)
      ;(i % 2 === 0 ? addTimes : removeTimes).push(performance.now() - started)
      applyTimes.push(spent.apply)
      if (i % 2 === 1) conntrackTimes.push(spent.conntrack)
      if (result.transactions !== 1 || result.errors.length > 0) throw new Error(`change ${i}: ${JSON.stringify(result)}`)
    }
    const same = lbSpec(documentOf(size, null), options)
    started = performance.now()
    const idle = await programmer.sync(same)
    const noop = performance.now() - started
    process.stdout.write(`${String(size).padStart(6)} services: first sync ${ms(full)}; one endpoint change, medians of ${changes / 2}: ` +
      `task joins: sync ${ms(median(addTimes))}; task leaves: sync ${ms(median(removeTimes))} (of which conntrack -D ${ms(median(conntrackTimes))}); ` +
      `nft -f alone ${ms(median(applyTimes))}; lbSpec ${ms(median(specTimes))}; unchanged sync ${ms(noop)} (${idle.transactions} transactions)\n`)
    await programmer.close(true)
  }
} finally {
  execFileSync('ip', ['netns', 'del', netns])
}
