/**
 * Parsing `nft -j list table ip weft_lb`, from outputs captured on this
 * kernel (nft 1.0.6) after the fixture's tables were applied and a few
 * connections were tried (test/fixtures/lb/*.json; the text listings beside
 * them show the same tables as `nft list`).
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { lbFixtureSpec } from '../fixtures/lb-doc.ts'
import { parseNftJson } from '../../lb/nft-json.ts'
import { canonical, compileHost, compileTask } from '../../lb/ruleset.ts'
import { diff } from '../../lb/delta.ts'

const captured = (name: string): string => readFileSync(path.resolve(import.meta.dirname, '../fixtures/lb', name), 'utf8')
const spec = lbFixtureSpec()

t.test('a task namespace\'s listing parses back to the compiled model', async (t) => {
  const { table } = parseNftJson(captured('task-b1.json'))
  const compiled = compileTask(spec.tasks.get('ns-b1')!)
  t.same(canonical(table), canonical(compiled))
  t.same(diff(table, compiled), [], 'so a restarted programmer makes no transaction')
})

t.test('the host namespace\'s listing parses back', async (t) => {
  const { table } = parseNftJson(captured('host.json'))
  t.same(canonical(table), canonical(compileHost(spec.host)))
  t.match(captured('host.nft'), /meta l4proto \. tcp dport @idle_ports reject with tcp reset/, 'as nft lists it')
  t.same(table!.chains.get('filter_input')?.rules[0], 'ct state new iifname != "wleg0" meta l4proto . tcp dport @idle_ports reject with tcp reset')
  t.same(table!.chains.get('nat_prerouting')?.base, { type: 'nat', hook: 'prerouting', priority: -100 })
})

t.test('element counters come out per set and key', async (t) => {
  const task = parseNftJson(captured('task-b1.json')).counters
  t.same([...task.keys()].sort(), ['vip_conns', 'vip_orig', 'vip_reply'], 'only the counted sets')
  const sum = (map: ReadonlyMap<string, { packets: number }> | undefined, prefix: string): number =>
    [...(map ?? new Map<string, { packets: number }>())].filter(([key]) => key.startsWith(prefix)).reduce((n, [, c]) => n + c.packets, 0)
  t.equal(sum(task.get('vip_conns'), '10.0.1.100 . '), 1, 'one connection tried through the web VIP (rr: to either task)')
  t.same(task.get('vip_conns')?.get('10.0.2.100 . 10.0.2.31'), { packets: 1, bytes: 60 }, 'one through the api VIP (sh: the client\'s hash picks api2)')
  t.equal(sum(task.get('vip_reply'), ''), 0, 'nobody answered')
  const host = parseNftJson(captured('host.json')).counters
  t.equal(sum(host.get('port_conns'), 'tcp . '), 1, 'one connection to the published port')
})

t.test('no table, unknown expressions, malformed input', async (t) => {
  t.same(parseNftJson({ nftables: [{ metainfo: { version: '1.0.6' } }] }), { table: null, counters: new Map() })
  const foreign = parseNftJson({
    nftables: [
      { table: { family: 'ip', name: 'weft_lb', handle: 1 } },
      { chain: { family: 'ip', table: 'weft_lb', name: 'nat_output', handle: 2, type: 'nat', hook: 'output', prio: -100, policy: 'accept' } },
      { rule: { family: 'ip', table: 'weft_lb', chain: 'nat_output', handle: 3, expr: [{ match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: '10.0.0.1' } }, { drop: null }] } },
      { rule: { family: 'ip', table: 'weft_lb', chain: 'nat_output', handle: 4, expr: [{ xt: { type: 'match', name: 'conntrack' } }] } },
      { table: { family: 'ip', name: 'other', handle: 5 } },
      { chain: { family: 'ip', table: 'other', name: 'c', handle: 6 } }
    ]
  })
  t.same(foreign.table?.chains.get('nat_output')?.rules, ['ip daddr 10.0.0.1 drop', '?{"xt":{"type":"match","name":"conntrack"}}'], 'rendered, or marked unknown: drift, not a crash')
  t.notOk(foreign.table?.chains.has('c'), 'other tables are ignored')
  t.throws(() => parseNftJson({ tables: [] }), { code: 'LB_ERR_NFT_JSON' })
})
