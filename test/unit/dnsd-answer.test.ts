/**
 * The answering chain: every name form, scoping, rotation, NODATA, EDNS0
 * truncation, error rcodes, and that hostile bytes never throw. Queries are
 * built and answers read with dns-packet, never with the code under test.
 */
import t from 'tap'
import dnsPacket from 'dns-packet'
import { answerQuery, explain, listRecords } from '../../dnsd/answer.ts'
import { buildDnsTables } from '../../dnsd/records.ts'
import { parseDesiredState } from '../../netd/desired-state.ts'
import { answersOf, ask, decode, edns, fixture, fixtureInput, prng, query } from '../helpers/dnsd.ts'

const tables = buildDnsTables(fixture())

t.test('service names: the VIP on each network the task shares with the service', async (t) => {
  t.same(answersOf(ask(tables, 'c1', 'web')), ['10.0.1.100'], 'front only')
  t.same(answersOf(ask(tables, 'w1', 'web')), ['10.0.2.100'], 'back only')
  t.same((answersOf(ask(tables, 'b1', 'web')) as string[]).sort(), ['10.0.1.100', '10.0.2.100'], 'both networks')
  t.same(answersOf(ask(tables, 'c1', 'www')), ['10.0.1.100'], 'an alias resolves like the service name')
  t.equal(ask(tables, 'w1', 'www').outcome.kind, 'forward', 'the alias is given on front only')
})

t.test('names are case-insensitive and the question is echoed as asked', async (t) => {
  const asked = ask(tables, 'c1', 'WeB')
  t.same(answersOf(asked), ['10.0.1.100'])
  t.equal(asked.reply?.questions?.[0]?.name, 'WeB')
  t.equal(asked.reply?.answers?.[0]?.name, 'WeB')
  t.ok(asked.reply?.flags !== undefined && (asked.reply.flags & dnsPacket.AUTHORITATIVE_ANSWER) !== 0, 'authoritative')
})

t.test('tasks.<service>: healthy task IPs only', async (t) => {
  t.same((answersOf(ask(tables, 'c1', 'tasks.web')) as string[]).sort(), ['10.0.1.20', '10.0.1.21'], 'web3 is unhealthy')
  t.same((answersOf(ask(tables, 'w1', 'tasks.api')) as string[]).sort(), ['10.0.2.30', '10.0.2.31', '10.0.2.32'])
})

t.test('dnsrr: the healthy task IPs, rotated per query', async (t) => {
  const orders = new Set<string>()
  for (let rotation = 0; rotation < 3; rotation++) {
    const ips = answersOf(ask(tables, 'w1', 'api', 'A', { rotation })) as string[]
    t.same([...ips].sort(), ['10.0.2.30', '10.0.2.31', '10.0.2.32'])
    orders.add(ips.join(','))
  }
  t.equal(orders.size, 3, 'three rotations give three first addresses')
  t.same(answersOf(ask(tables, 'w1', 'api-alias')).length, 3, 'a dnsrr alias answers the task IPs too')
})

t.test('task names and PTR', async (t) => {
  t.same(answersOf(ask(tables, 'c1', 'web.2.web2')), ['10.0.1.21'])
  t.same(answersOf(ask(tables, 'c1', 'web.3.web3')), ['10.0.1.22'], 'an unhealthy task keeps its own name')
  t.same(answersOf(ask(tables, 'c1', '21.1.0.10.in-addr.arpa', 'PTR')), ['web.2.web2'])
  t.same(answersOf(ask(tables, 'c1', '100.1.0.10.in-addr.arpa', 'PTR')), ['web'], 'a VIP points back at its service')
  t.equal(ask(tables, 'c1', '30.2.0.10.in-addr.arpa', 'PTR').outcome.kind, 'forward', 'a back address is not c1\'s to resolve')
})

t.test('SRV for named ports, with the targets as glue', async (t) => {
  const asked = ask(tables, 'c1', '_http._tcp.web', 'SRV')
  t.same(answersOf(asked), [{ priority: 0, weight: 0, port: 80, target: 'web' }])
  t.same(asked.reply?.additionals?.map((a) => [a.name, (a as { data: unknown }).data]), [['web', '10.0.1.100']])
  t.equal(ask(tables, 'c1', '_https._tcp.web', 'SRV').outcome.kind, 'forward', 'an unnamed port has no SRV')
})

t.test('AAAA and other types for a cluster name: NODATA, never NXDOMAIN', async (t) => {
  for (const type of ['AAAA', 'MX', 'TXT'] as const) {
    const asked = ask(tables, 'c1', 'web', type)
    t.equal(asked.outcome.kind, 'answer', type)
    t.equal(asked.reply?.rcode, 'NOERROR', type)
    t.same(asked.reply?.answers, [], type)
  }
  const empty = ask(tables, 'c1', 'AXFR-me', 'A')
  t.equal(empty.outcome.kind, 'forward')
  t.equal(ask(tables, 'c1', 'web', 'AXFR').reply?.rcode, 'REFUSED', 'no zone transfers')
})

t.test('scoping: a service on a network the task is not on does not exist for it', async (t) => {
  t.equal(ask(tables, 'c1', 'db').outcome.kind, 'forward')
  t.equal(ask(tables, 'c1', 'tasks.api').outcome.kind, 'forward')
  t.equal(ask(tables, 'nobody', 'web').reply?.rcode, 'REFUSED', 'an unknown task is refused')
  t.same(answersOf(ask(tables, 'client.1.c1', 'web')), ['10.0.1.100'], 'a local task can be named by its task name')
})

t.test('EDNS0: truncation over UDP at the advertised size, the whole answer over TCP', async (t) => {
  const input = fixtureInput()
  for (let i = 0; i < 200; i++) {
    const host = 40 + i + (i >= 60 ? 1 : 0) // .100 is web's VIP
    input.remoteEndpoints.push({ network: 'back', ip: `10.0.2.${host}`, mac: `02:42:0a:00:02:${host.toString(16).padStart(2, '0')}`, node: '192.168.5.4', task: `big${i}`, service: 'svc-api', name: `api.${10 + i}.big${i}` })
  }
  const big = buildDnsTables(parseDesiredState(input))
  const classic = ask(big, 'w1', 'tasks.api')
  t.ok(classic.reply?.flags !== undefined && (classic.reply.flags & dnsPacket.TRUNCATED_RESPONSE) !== 0, 'no EDNS0: TC at 512 bytes')
  t.ok(classic.outcome.kind === 'answer' && classic.outcome.response.length <= 512)
  const large = ask(big, 'w1', 'tasks.api', 'A', { extra: edns(4096) })
  t.notOk(large.reply?.flags !== undefined && (large.reply.flags & dnsPacket.TRUNCATED_RESPONSE) !== 0, '4096 bytes hold 203 A records')
  t.equal(large.reply?.answers?.length, 203)
  const tcp = ask(big, 'w1', 'tasks.api', 'A', { transport: 'tcp' })
  t.equal(tcp.reply?.answers?.length, 203, 'TCP carries everything')
})

t.test('malformed input: dropped or answered with an error, never thrown', async (t) => {
  t.equal(answerQuery(tables, 'c1', Buffer.alloc(5), 'udp', 0).kind, 'drop', 'shorter than a header')
  const response = dnsPacket.encode({ type: 'response', id: 1, questions: [{ name: 'web', type: 'A', class: 'IN' }] })
  t.equal(answerQuery(tables, 'c1', response, 'udp', 0).kind, 'drop', 'a response is never answered')
  const chaos = query('web', 'A')
  chaos.writeUInt16BE(3, chaos.length - 2)
  const wrongClass = answerQuery(tables, 'c1', chaos, 'udp', 0)
  t.not(wrongClass.kind, 'answer', 'class CH is not answered from the IN tables')
  const loop = Buffer.from(query('web'))
  loop.writeUInt16BE(0xc00c, 12) // the question name points at itself
  const looped = answerQuery(tables, 'c1', loop, 'udp', 0)
  t.ok(looped.kind === 'drop' || (looped.kind === 'error' && decode(looped.response).rcode === 'FORMERR'), 'compression loop')
  const random = prng(7)
  for (let i = 0; i < 5000; i++) {
    const bytes = Buffer.from(query(i % 2 === 0 ? 'web' : 'tasks.api'))
    for (let flips = 1 + Math.floor(random() * 4); flips > 0; flips--) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256)
    answerQuery(tables, 'b1', bytes.subarray(0, Math.floor(random() * (bytes.length + 1))), 'udp', i)
  }
  t.pass('5000 mutated queries answered without throwing')
})

t.test('explain: the rule and networks behind an answer', async (t) => {
  const web = explain(tables, 'b1', 'web', 'A')
  t.equal(web.source, 'local')
  t.equal(web.rule, 'service-vip')
  t.same([...web.networks].sort(), ['back', 'front'])
  t.equal(explain(tables, 'c1', '10.0.1.21', 'A').rule, 'ptr', 'an address is asked as PTR')
  t.equal(explain(tables, 'c1', 'example.org', 'A').source, 'forward')
  t.equal(explain(tables, 'nobody', 'web', 'A').rule, 'refused')
  t.throws(() => explain(tables, 'c1', 'web', 'BOGUS'), { code: 'DNSD_ERR_BAD_QUERY' })
})

t.test('listRecords: what one task can resolve locally, sorted', async (t) => {
  const records = listRecords(tables, 'c1')
  t.ok(records.some((r) => r.name === 'web' && r.type === 'A' && r.value === '10.0.1.100' && r.rule === 'service-vip'))
  t.notOk(records.some((r) => r.network !== 'front'), 'c1 sees front only')
  const names = records.map((r) => `${r.name} ${r.type}`)
  t.same(names, [...names].sort())
  t.throws(() => listRecords(tables, 'nobody'), { code: 'DNSD_ERR_BAD_QUERY' })
})
