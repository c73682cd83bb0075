/**
 * The delta: minimal (one endpoint change touches that service's elements
 * only, whatever the number of services), in an order the kernel accepts, and
 * applyDelta refuses what the kernel refuses.
 */
import t from 'tap'
import { manyServices, extraTask } from '../fixtures/lb-gen.ts'
import { lbFixtureSpec } from '../fixtures/lb-doc.ts'
import { lbSpec } from '../../lb/spec.ts'
import { RulesetCompiler, canonical, compileHost, compileTask, type NftTable } from '../../lb/ruleset.ts'
import { applyDelta, describeDrift, diff, renderScript, type Op } from '../../lb/delta.ts'
import type { DesiredState, RemoteEndpoint } from '../../netd/desired-state.ts'

const options = { taskNetns: () => 'ns', ingressLeg: null }
const table = (doc: DesiredState): NftTable => compileTask(lbSpec(doc, options).tasks.get('ns')!)!

t.test('one task joining a service: its elements only, the same script at 10 and 10,000 services', async (t) => {
  const scripts = [10, 10_000].map((size) => {
    const before = table(manyServices(size))
    const after = table(manyServices(size, 3, (s, tasks) => (s === 5 ? [...tasks, extraTask(5)] : tasks)))
    return renderScript(diff(before, after))
  })
  t.equal(scripts[0], scripts[1])
  t.equal(scripts[0], [
    'add set ip weft_lb vip_rr_4 { type ipv4_addr; }',
    'flush chain ip weft_lb nat_output',
    'add rule ip weft_lb nat_output ip daddr @vip_rr_3 dnat to ip daddr . numgen random mod 3 map @vip_slots',
    'add rule ip weft_lb nat_output ip daddr @vip_rr_4 dnat to ip daddr . numgen random mod 4 map @vip_slots',
    'delete element ip weft_lb vip_rr_3 { 10.1.0.5 }',
    'add element ip weft_lb vip_conns { 10.1.0.5 . 10.16.0.43 }',
    'add element ip weft_lb vip_orig { 10.1.0.5 . 10.16.0.43 }',
    'add element ip weft_lb vip_reply { 10.1.0.5 . 10.16.0.43 }',
    'add element ip weft_lb vip_rr_4 { 10.1.0.5 }',
    'add element ip weft_lb vip_slots { 10.1.0.5 . 3 : 10.16.0.43 }',
    ''
  ].join('\n'), 'the first service with 4 tasks: a dispatch set for 4 appears, with its nat rule; the VIP moves into it')
  const existing = (size: number): string => {
    // Service 0 has 4 tasks throughout: vip_rr_4 exists, and a join is elements only.
    const four = (s: number, tasks: RemoteEndpoint[]): RemoteEndpoint[] => (s === 0 ? [...tasks, extraTask(0)] : tasks)
    const before = table(manyServices(size, 3, four))
    const after = table(manyServices(size, 3, (s, tasks) => four(s, s === 5 ? [...tasks, extraTask(5)] : tasks)))
    return renderScript(diff(before, after))
  }
  t.equal(existing(10), [
    'delete element ip weft_lb vip_rr_3 { 10.1.0.5 }',
    'add element ip weft_lb vip_conns { 10.1.0.5 . 10.16.0.43 }',
    'add element ip weft_lb vip_orig { 10.1.0.5 . 10.16.0.43 }',
    'add element ip weft_lb vip_reply { 10.1.0.5 . 10.16.0.43 }',
    'add element ip weft_lb vip_rr_4 { 10.1.0.5 }',
    'add element ip weft_lb vip_slots { 10.1.0.5 . 3 : 10.16.0.43 }',
    ''
  ].join('\n'), 'the usual case: set elements only')
  t.equal(existing(10), existing(10_000))
})

t.test('a task turning unhealthy: its slot goes, its counters stay; slots renumber within the service', async (t) => {
  const before = table(manyServices(100))
  const after = table(manyServices(100, 3, (s, tasks) => (s === 7 ? tasks.map((e, k) => (k === 0 ? { ...e, healthy: false } : e)) : tasks)))
  t.equal(renderScript(diff(before, after)), [
    'add set ip weft_lb vip_rr_2 { type ipv4_addr; }',
    'flush chain ip weft_lb nat_output',
    'add rule ip weft_lb nat_output ip daddr @vip_rr_2 dnat to ip daddr . numgen random mod 2 map @vip_slots',
    'add rule ip weft_lb nat_output ip daddr @vip_rr_3 dnat to ip daddr . numgen random mod 3 map @vip_slots',
    'delete element ip weft_lb vip_rr_3 { 10.1.0.7 }',
    'delete element ip weft_lb vip_slots { 10.1.0.7 . 0, 10.1.0.7 . 1, 10.1.0.7 . 2 }',
    'add element ip weft_lb vip_rr_2 { 10.1.0.7 }',
    'add element ip weft_lb vip_slots { 10.1.0.7 . 0 : 10.16.0.57, 10.1.0.7 . 1 : 10.16.0.58 }',
    ''
  ].join('\n'))
})

t.test('the last backend leaving makes the VIP idle; a dispatch set nobody is in goes', async (t) => {
  const before = table(manyServices(1, 1))
  const after = table(manyServices(1, 1, (_s, tasks) => tasks.map((e) => ({ ...e, healthy: false }))))
  t.equal(renderScript(diff(before, after)), [
    'flush chain ip weft_lb nat_output',
    'delete element ip weft_lb vip_rr_1 { 10.1.0.0 }',
    'delete element ip weft_lb vip_slots { 10.1.0.0 . 0 }',
    'add element ip weft_lb idle_vips { 10.1.0.0 }',
    'delete set ip weft_lb vip_rr_1',
    ''
  ].join('\n'))
  t.same(canonical(applyDelta(before, diff(before, after))), canonical(after))
})

t.test('identical tables, and tables that are the same value, give no operation', async (t) => {
  const a = table(manyServices(50))
  t.same(diff(a, a), [])
  t.same(diff(a, table(manyServices(50))), [], 'equal content compiled twice (no shared arrays)')
  t.same(diff(null, null), [])
})

t.test('table appears and disappears whole', async (t) => {
  const a = table(manyServices(2))
  t.same(diff(a, null), [{ op: 'delete table' }])
  const first = diff(null, a)
  t.same(first[0], { op: 'add table' })
  t.same(canonical(applyDelta(null, first)), canonical(a))
})

t.test('a changed set type or base chain hook replaces the table in the same transaction', async (t) => {
  const a = table(manyServices(2))
  const sets = new Map(a.sets)
  sets.set('idle_vips', { type: 'ipv4_addr', data: null, counter: true })
  const b: NftTable = { ...a, sets }
  const delta = diff(a, b)
  t.same(delta[0], { op: 'delete table' })
  t.same(delta[1], { op: 'add table' })
  t.same(canonical(applyDelta(a, delta)), canonical(b))
})

t.test('the host table: a port losing its last healthy task becomes idle', async (t) => {
  const spec = lbFixtureSpec()
  const before = compileHost(spec.host)!
  const host = { ...spec.host, frontends: spec.host.frontends.map((f) => (f.key === 'udp . 5353' ? { ...f, backends: f.backends.map((b) => ({ ...b, healthy: false })) } : f)) }
  const after = compileHost(host)!
  t.equal(renderScript(diff(before, after)), [
    'delete element ip weft_lb ports { udp . 5353 }',
    'delete element ip weft_lb udp_slots { 5353 . 0 }',
    'add element ip weft_lb idle_ports { udp . 5353 }',
    'delete chain ip weft_lb host_udp_rr_1',
    ''
  ].join('\n'))
})

t.test('applyDelta refuses what the kernel refuses', async (t) => {
  const a = table(manyServices(2))
  const refuse = (ops: Op[], why: RegExp, what: string): void => {
    t.throws(() => applyDelta(a, ops), { code: 'LB_ERR_DELTA', message: why }, what)
  }
  refuse([{ op: 'add element', element: { set: 'vip_rr_3', key: '10.1.0.0', value: null } }], /element exists/, 'add on an existing key (EEXIST)')
  refuse([{ op: 'delete element', element: { set: 'vip_rr_3', key: '10.9.9.9', value: null } }], /no such element/, 'delete of a missing element')
  refuse([{ op: 'delete set', name: 'vip_rr_3', decl: a.sets.get('vip_rr_3')! }], /set in use/, 'delete of a set a rule uses')
  refuse([{ op: 'add rule', chain: 'filter_input', rule: 'ip daddr @nope' }], /no such set nope/, 'a rule naming a missing set')
  refuse([{ op: 'add element', element: { set: 'vip_slots', key: '10.9.9.9 . 0', value: null } }], /does not fit/, 'a map element without data')
  refuse([{ op: 'add chain', name: 'nat_output', base: null }], /chain exists/, 'add of an existing chain')
  const host = compileHost(lbFixtureSpec().host)!
  t.throws(() => applyDelta(host, [{ op: 'delete chain', name: 'ingress_tcp_rr_2' }]), { code: 'LB_ERR_DELTA', message: /chain in use/ },
    'delete of a chain a map element jumps to')
  t.throws(() => applyDelta(host, [{ op: 'add element', element: { set: 'ports', key: 'tcp . 1', value: 'jump nope' } }]), { code: 'LB_ERR_DELTA', message: /no such chain nope/ },
    'an element jumping to a missing chain')
  t.throws(() => applyDelta(null, [{ op: 'flush chain', name: 'x' }]), { code: 'LB_ERR_DELTA', message: /no such table/ })
})

t.test('drift reads as what is missing and what is not wanted', async (t) => {
  const want = table(manyServices(3))
  const have = table(manyServices(3, 3, (s, tasks) => (s === 1 ? tasks.slice(0, 2) : tasks)))
  t.same(describeDrift(diff(have, want)), [
    'chain nat_output: rules differ',
    'vip_rr_2: element not wanted: 10.1.0.1',
    'vip_conns: element missing: 10.1.0.1 . 10.16.0.10',
    'vip_orig: element missing: 10.1.0.1 . 10.16.0.10',
    'vip_reply: element missing: 10.1.0.1 . 10.16.0.10',
    'vip_rr_3: element missing: 10.1.0.1',
    'vip_slots: element missing: 10.1.0.1 . 2 : 10.16.0.10',
    'set vip_rr_2 not wanted'
  ])
  t.same(describeDrift(diff(null, want)), ['table ip weft_lb missing'])
  t.same(describeDrift(diff(want, null)), ['table ip weft_lb present, not wanted'])
})

t.test('one endpoint change at 10,000 services: compile and diff stay cheap', async (t) => {
  const compiler = new RulesetCompiler()
  const options = { taskNetns: () => 'ns', ingressLeg: null }
  const before = compiler.task(lbSpec(manyServices(10_000), options).tasks.get('ns')!)!
  compiler.sweep()
  const spec = lbSpec(manyServices(10_000, 3, (s, tasks) => (s === 4242 ? [...tasks, extraTask(4242)] : tasks)), options)
  const started = performance.now()
  const after = compiler.task(spec.tasks.get('ns')!)!
  const delta = diff(before, after)
  const elapsed = performance.now() - started
  t.equal(delta.filter((op) => op.op.endsWith('element')).length, 6, 'dispatch set (delete + add), one slot, three counters')
  t.ok(elapsed < 50, `compile + diff took ${elapsed.toFixed(1)} ms (generous bound for a loaded CI machine; ~3 ms quiet)`)
})
