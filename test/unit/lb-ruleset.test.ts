/**
 * The compiler: spec → nft table model, and that model's first transaction
 * against golden scripts (regenerate on purpose with LB_GOLDEN=write and
 * review the diff). The kernel accepts these scripts and lists them back equal:
 * test/e2e/lb-kernel.test.ts.
 */
import t, { type Test } from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { lbFixture, lbFixtureInput, lbFixtureSpec } from '../fixtures/lb-doc.ts'
import { RulesetCompiler, canonical, compileHost, compileTask, type NftTable } from '../../lb/ruleset.ts'
import { diff, renderScript } from '../../lb/delta.ts'
import { lbSpec } from '../../lb/spec.ts'

const GOLDEN = path.resolve(import.meta.dirname, '../fixtures/lb')

function golden (t: Test, name: string, actual: string): void {
  const file = path.join(GOLDEN, name)
  if (process.env.LB_GOLDEN === 'write') writeFileSync(file, actual)
  t.equal(actual, readFileSync(file, 'utf8'), `matches ${name}`)
}

const spec = lbFixtureSpec()
const elements = (table: NftTable | null, group: string): string[] =>
  (table?.groups.get(group) ?? []).map((e) => `${e.set} ${e.key}${e.value === null ? '' : ` : ${e.value}`}`)

t.test('a task namespace: golden first transaction', async (t) => {
  golden(t, 'task-b1.script', renderScript(diff(null, compileTask(spec.tasks.get('ns-b1')!))))
})

t.test('the host namespace: golden first transaction', async (t) => {
  golden(t, 'host.script', renderScript(diff(null, compileHost(spec.host))))
})

t.test('a VIP: healthy backends take slots in address order; every listed backend gets counters', async (t) => {
  const table = compileTask(spec.tasks.get('ns-c1')!)
  t.same(elements(table, '10.0.1.100'), [
    'vip_conns 10.0.1.100 . 10.0.1.20', 'vip_conns 10.0.1.100 . 10.0.1.21', 'vip_conns 10.0.1.100 . 10.0.1.22',
    'vip_orig 10.0.1.100 . 10.0.1.20', 'vip_orig 10.0.1.100 . 10.0.1.21', 'vip_orig 10.0.1.100 . 10.0.1.22',
    'vip_reply 10.0.1.100 . 10.0.1.20', 'vip_reply 10.0.1.100 . 10.0.1.21', 'vip_reply 10.0.1.100 . 10.0.1.22',
    'vip_rr_2 10.0.1.100',
    'vip_slots 10.0.1.100 . 0 : 10.0.1.20', 'vip_slots 10.0.1.100 . 1 : 10.0.1.21'
  ], 'web3 is unhealthy: no slot, but counters')
  t.same(elements(table, '10.0.1.101'), ['idle_vips 10.0.1.101'], 'no backend: rejected')
  t.same([...table!.sets.keys()].filter((s) => /^vip_(rr|sh)_/.test(s)), ['vip_rr_2'], 'one dispatch set per scheduler and backend count in use')
  t.same(table!.chains.get('nat_output')?.rules, ['ip daddr @vip_rr_2 dnat to ip daddr . numgen random mod 2 map @vip_slots'])
})

t.test('sh hashes the caller\'s address with a fixed seed; dispatch rules in a stable order', async (t) => {
  const table = compileTask(spec.tasks.get('ns-b1')!)
  t.same(table!.chains.get('nat_output')?.rules, [
    'ip daddr @vip_rr_2 dnat to ip daddr . numgen random mod 2 map @vip_slots',
    'ip daddr @vip_sh_2 dnat to ip daddr . jhash ip saddr mod 2 seed 0x77656674 map @vip_slots'
  ])
  t.same(elements(table, '10.0.2.100').filter((e) => e.startsWith('vip_sh')), ['vip_sh_2 10.0.2.100'])
})

t.test('published ports: ingress mode marks for masquerade, host mode does not', async (t) => {
  const table = compileHost(spec.host)!
  t.same(table.chains.get('ingress_tcp_rr_2')?.rules, [
    'meta mark set meta mark | 0x02000000',
    'dnat ip to tcp dport . numgen random mod 2 map @tcp_slots'
  ])
  t.same(table.chains.get('host_udp_rr_1')?.rules, ['dnat ip to udp dport . numgen random mod 1 map @udp_slots'])
  t.same(table.chains.get('nat_postrouting')?.rules, ['oifname "wleg0" meta mark & 0x02000000 == 0x02000000 masquerade'])
  t.same(elements(table, 'tcp . 8080'), [
    'ports tcp . 8080 : jump ingress_tcp_rr_2', 'tcp_slots 8080 . 0 : 10.255.0.20 . 80', 'tcp_slots 8080 . 1 : 10.255.0.21 . 80'
  ])
  t.same(elements(table, 'tcp . 9090'), ['idle_ports tcp . 9090'])
  t.same(elements(table, 'udp . 10.255.0.20 . 53'), ['port_conns udp . 10.255.0.20 . 53', 'port_orig udp . 10.255.0.20 . 53', 'port_reply udp . 10.255.0.20 . 53'])
})

t.test('no table where there is nothing to balance', async (t) => {
  t.equal(compileHost(lbFixtureSpec(lbFixture(), null).host), null, 'no leg')
  const input = lbFixtureInput()
  input.services = input.services.map((s: { networks: Array<{ network: string }> }) =>
    ({ ...s, endpointMode: 'dnsrr', networks: s.networks.map((n) => ({ network: n.network })), ports: [] }))
  const bare = lbFixtureSpec(lbFixture(input))
  t.equal(compileHost(bare.host), null, 'no published port')
  t.equal(compileTask(bare.tasks.get('ns-c1')!), null, 'no VIP')
})

t.test('the compiler hands out the same group while its frontend is unchanged', async (t) => {
  const compiler = new RulesetCompiler()
  const first = compiler.task(spec.tasks.get('ns-b1')!)!
  compiler.sweep()
  // A new document with one change: web3 becomes healthy.
  const input = lbFixtureInput()
  input.remoteEndpoints.find((e: { task: string, network: string }) => e.task === 'web3' && e.network === 'front').healthy = true
  const next = compiler.task(lbSpec(lbFixture(input), { taskNetns: (task) => `ns-${task}`, ingressLeg: null }).tasks.get('ns-b1')!)!
  t.equal(next.groups.get('10.0.1.101'), first.groups.get('10.0.1.101'), 'unchanged frontend: same array')
  t.equal(next.groups.get('10.0.2.100'), first.groups.get('10.0.2.100'))
  t.not(next.groups.get('10.0.1.100'), first.groups.get('10.0.1.100'), 'changed frontend: new array')
  t.same([...next.groups.keys()], [...first.groups.keys()], 'same order')
  t.same(canonical(next), canonical(compileTask(lbSpec(lbFixture(input), { taskNetns: (task) => `ns-${task}`, ingressLeg: null }).tasks.get('ns-b1')!)),
    'the patched table equals a fresh compile')
  t.ok(next.sets.has('vip_rr_3') && !next.sets.has('vip_rr_2'), 'web is now in vip_rr_3, and nothing is in vip_rr_2')
})
