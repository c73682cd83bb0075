/**
 * LbProgrammer against the in-memory kernel (and its faulty wrapper): one
 * transaction per namespace that changed, none after a restart over intact
 * rules, errors per namespace and retried, conntrack after the transaction.
 */
import t from 'tap'
import pino from 'pino'
import { lbFixture, lbFixtureInput, lbFixtureSpec } from '../fixtures/lb-doc.ts'
import { LbProgrammer } from '../../lb/programmer.ts'
import { FakeLbRunner, FaultyLbRunner } from '../../lb/fake-runner.ts'
import { formatStats } from '../../lb/stats.ts'
import { createLbMetrics } from '../../lb/metrics.ts'
import { Registry } from 'prom-client'
import { canonical, compileTask } from '../../lb/ruleset.ts'
import { conntrackArgs } from '../../lb/conntrack.ts'
import type { LbSpec } from '../../lb/spec.ts'

const log = pino({ level: 'silent' })
const NAMESPACES = ['ns-c1', 'ns-b1', 'ns-web1']

function edited (change: (input: Record<string, any>) => void): LbSpec {
  const input = lbFixtureInput()
  change(input)
  return lbFixtureSpec(lbFixture(input))
}

t.test('first sync: one transaction per namespace, sysctls first', async (t) => {
  const kernel = new FakeLbRunner(NAMESPACES)
  const lb = new LbProgrammer({ log, runner: kernel })
  const result = await lb.sync(lbFixtureSpec())
  t.same(result, { namespaces: 4, transactions: 4, errors: [] })
  t.same(canonical(kernel.tables.get('ns-b1')!), canonical(compileTask(lbFixtureSpec().tasks.get('ns-b1')!)))
  t.same(kernel.sysctls.get('ns-c1'), { 'net.ipv4.tcp_timestamps': '2' })
  t.same(kernel.sysctls.get(null), { 'net.ipv4.ip_forward': '1' }, 'a published port: forwarding on')
  t.ok(kernel.calls.indexOf('writeSysctls ns-c1') < kernel.calls.indexOf('apply ns-c1'), 'timestamps off before any VIP works')
  t.match(kernel.transactions[0]!.script, /^add table ip weft_lb\n/)
})

t.test('an unchanged spec makes no transaction and reads nothing', async (t) => {
  const kernel = new FakeLbRunner(NAMESPACES)
  const lb = new LbProgrammer({ log, runner: kernel })
  await lb.sync(lbFixtureSpec())
  kernel.calls.length = 0
  t.same(await lb.sync(lbFixtureSpec()), { namespaces: 4, transactions: 0, errors: [] })
  t.same(kernel.calls, [])
})

t.test('a restart over intact rules observes each namespace once and changes nothing', async (t) => {
  const kernel = new FakeLbRunner(NAMESPACES)
  await new LbProgrammer({ log, runner: kernel }).sync(lbFixtureSpec())
  kernel.calls.length = 0
  kernel.transactions.length = 0
  const restarted = new LbProgrammer({ log, runner: kernel })
  t.same(await restarted.sync(lbFixtureSpec()), { namespaces: 4, transactions: 0, errors: [] })
  t.same(kernel.calls.filter((c) => c.startsWith('list')).sort(), ['list (host)', 'list ns-b1', 'list ns-c1', 'list ns-web1'])
  t.same(kernel.transactions, [])
  kernel.calls.length = 0
  await restarted.sync(lbFixtureSpec())
  t.same(kernel.calls, [], 'and from then on trusts what it applied')
})

t.test('an endpoint turning unhealthy: transactions where it was a backend, then conntrack deletions of UDP and unanswered TCP', async (t) => {
  const kernel = new FakeLbRunner(NAMESPACES)
  // One namespace at a time, so the order below is the programmer's, not the interleaving of its workers.
  const lb = new LbProgrammer({ log, runner: kernel, concurrency: 1 })
  await lb.sync(lbFixtureSpec())
  kernel.transactions.length = 0
  const result = await lb.sync(edited((input) => { for (const e of input.remoteEndpoints) if (e.task === 'web2') e.healthy = false }))
  t.same(result, { namespaces: 4, transactions: 4, errors: [] }, 'three task namespaces see the web VIP; the host publishes web')
  const b1 = kernel.transactions.find((x) => x.netns === 'ns-b1')!
  t.notMatch(b1.script, /10\.0\.2\./, 'the api VIP is not touched')
  t.same(kernel.conntrack.map((c) => `${c.netns} ${conntrackArgs(c.filter).join(' ')}`).sort(), [
    'ns-b1 -D -p tcp --state SYN_SENT --orig-dst 10.0.1.100 --reply-src 10.0.1.21',
    'ns-b1 -D -p udp --orig-dst 10.0.1.100 --reply-src 10.0.1.21',
    'ns-c1 -D -p tcp --state SYN_SENT --orig-dst 10.0.1.100 --reply-src 10.0.1.21',
    'ns-c1 -D -p udp --orig-dst 10.0.1.100 --reply-src 10.0.1.21',
    'ns-web1 -D -p tcp --state SYN_SENT --orig-dst 10.0.1.100 --reply-src 10.0.1.21',
    'ns-web1 -D -p tcp --state SYN_SENT --orig-dst 10.255.0.100 --reply-src 10.255.0.21',
    'ns-web1 -D -p udp --orig-dst 10.0.1.100 --reply-src 10.0.1.21',
    'ns-web1 -D -p udp --orig-dst 10.255.0.100 --reply-src 10.255.0.21',
    'null -D -p tcp --state SYN_SENT --orig-port-dst 8080 --reply-src 10.255.0.21 --reply-port-src 80'
  ])
  const lastApply = Math.max(...kernel.calls.flatMap((c, i) => c.startsWith('apply ') ? [i] : []))
  const firstDeletion = kernel.calls.findIndex((c) => c.startsWith('conntrack '))
  t.ok(firstDeletion > lastApply, 'entries are deleted once every namespace\'s transaction is in (each deletion walks the whole conntrack table)')
})

t.test('errors are per namespace, reported, counted, and retried on the next sync', async (t) => {
  const kernel = new FakeLbRunner(['ns-c1', 'ns-web1'])
  const faulty = new FaultyLbRunner(kernel).fail('apply', 1, 'ns-web1')
  const registry = new Registry()
  const lb = new LbProgrammer({ log, runner: faulty, metrics: createLbMetrics(registry) })
  const first = await lb.sync(lbFixtureSpec())
  t.equal(first.transactions, 2, 'c1 and the host went through')
  t.same(first.errors, ['ns-b1: namespace ns-b1 does not exist', 'ns-web1: injected failure: apply in ns-web1'])
  const metrics = await registry.getMetricsAsJSON()
  const value = (name: string, labels: Record<string, string>): number | undefined =>
    metrics.find((m) => m.name === name)?.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value
  t.equal(value('weft_lb_transactions_total', { result: 'ok' }), 2)
  t.equal(value('weft_lb_transactions_total', { result: 'error' }), 1)
  t.equal(value('weft_lb_errors_total', { stage: 'namespace' }), 1)
  t.equal(value('weft_lb_frontends', { kind: 'vip' }), 8, 'VIPs summed over task namespaces')
  kernel.namespaces.add('ns-b1')
  kernel.calls.length = 0
  const second = await lb.sync(lbFixtureSpec())
  t.same(second, { namespaces: 4, transactions: 2, errors: [] }, 'b1 appeared; web1 retried')
  t.ok(kernel.calls.includes('list ns-web1'), 'after a failed transaction, the kernel is observed before diffing again')
  t.notOk(kernel.calls.includes('list ns-c1'))
})

t.test('a task leaving the spec is forgotten; close(cleanup) deletes what is left', async (t) => {
  const kernel = new FakeLbRunner(NAMESPACES)
  const lb = new LbProgrammer({ log, runner: kernel })
  await lb.sync(lbFixtureSpec())
  await lb.sync(edited((input) => { input.endpoints = input.endpoints.filter((e: { task: string }) => e.task !== 'c1') }))
  kernel.namespaces.delete('ns-c1')
  kernel.calls.length = 0
  t.same(await lb.close(true), [])
  t.same(kernel.calls.sort(), ['deleteTable (host)', 'deleteTable ns-b1', 'deleteTable ns-web1'])
  t.same([...kernel.tables.keys()].sort(), ['ns-c1'], 'ns-c1 was forgotten (netd deletes the namespace)')
})

t.test('check reports drift in rules and sysctls, and nothing when in sync', async (t) => {
  const kernel = new FakeLbRunner(NAMESPACES)
  const lb = new LbProgrammer({ log, runner: kernel, tcpEstablishedTimeout: 30 })
  await lb.sync(lbFixtureSpec())
  t.same(kernel.sysctls.get('ns-c1'), { 'net.ipv4.tcp_timestamps': '2', 'net.netfilter.nf_conntrack_tcp_timeout_established': '30' })
  t.same(await lb.check(lbFixtureSpec()), [])
  kernel.tables.delete('ns-c1')
  kernel.sysctls.set('ns-b1', { 'net.ipv4.tcp_timestamps': '1' })
  t.same(await lb.check(lbFixtureSpec()), [
    'ns-c1: table ip weft_lb missing',
    'ns-b1: sysctl net.ipv4.tcp_timestamps is 1, want 2',
    'ns-b1: sysctl net.netfilter.nf_conntrack_tcp_timeout_established is , want 30'
  ])
})

t.test('stats: every frontend with health and counters, ipvsadm-like', async (t) => {
  const kernel = new FakeLbRunner(NAMESPACES)
  const lb = new LbProgrammer({ log, runner: kernel })
  await lb.sync(lbFixtureSpec())
  kernel.counters.set('ns-c1', new Map([
    ['vip_conns', new Map([['10.0.1.100 . 10.0.1.20', { packets: 3, bytes: 180 }]])],
    ['vip_orig', new Map([['10.0.1.100 . 10.0.1.20', { packets: 12, bytes: 900 }]])],
    ['vip_reply', new Map([['10.0.1.100 . 10.0.1.20', { packets: 10, bytes: 5000 }]])]
  ]))
  const rows = await lb.stats('web')
  t.same(rows.map((r) => `${r.netns ?? 'host'} ${r.frontend} ${r.kind}`), [
    'host tcp 8080 ingress', 'host udp 5353 host', 'ns-c1 10.0.1.100 vip', 'ns-b1 10.0.1.100 vip', 'ns-web1 10.0.1.100 vip', 'ns-web1 10.255.0.100 vip'
  ])
  const c1 = rows.find((r) => r.netns === 'ns-c1')!
  t.same(c1.backends.map((b) => [b.address, b.healthy, b.connections, b.packetsIn, b.packetsOut, b.bytesOut]), [
    ['10.0.1.20', true, 3, 12, 10, 5000], ['10.0.1.21', true, 0, 0, 0, 0], ['10.0.1.22', false, 0, 0, 0, 0]
  ])
  const text = formatStats(rows)
  t.match(text, /ALL 10\.0\.1\.100:\* rr \(web, vip\)\s+3\s+12\s+10\s+900\s+5000/)
  t.match(text, /-> 10\.0\.1\.22\s+UNHEALTHY web3/)
  t.match(text, /TCP \*:8080 rr \(web, ingress via ingress\)/)
  t.same(await lb.stats('nope'), [])
})
