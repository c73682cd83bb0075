/**
 * dnsd's hot path against its general path: the plain-query reader agrees
 * with parseQuery, prepared answers are byte for byte what buildResponse
 * makes from the same records (rotation included), name keys compare like
 * DNS names, and the forward cache answers a plain query as it answers a
 * walked one. Queries are built with dns-packet, never with the code under test.
 */
import t from 'tap'
import dnsPacket from 'dns-packet'
import { answerQuery } from '../../dnsd/answer.ts'
import { ForwardCache } from '../../dnsd/forward-cache.ts'
import { buildDnsTables, type RecordSet } from '../../dnsd/records.ts'
import {
  HEADER_LENGTH, buildResponse, encodeName, isWireProblem, nameKey, nameKeyOf, parseQuery, plainQuestionEnd, plainResponse,
  type ParsedQuery
} from '../../dnsd/wire.ts'
import { edns, fixture, prng, query } from '../helpers/dnsd.ts'
import { a, makeQuery, makeResponse } from './dnsd-forward-fixtures.ts'

const tables = buildDnsTables(fixture())

function parsedOrThrow (buf: Buffer): ParsedQuery {
  const parsed = parseQuery(buf)
  if (isWireProblem(parsed)) throw new Error(`not a plain query: ${parsed.reason}`)
  return parsed
}

/** The general path's answer for `set`, rotated as answer.ts rotates: the reference the hot path must equal. */
function reference (buf: Buffer, set: RecordSet, type: 'A' | 'PTR' | 'SRV' | 'AAAA', rotation: number, transport: 'udp' | 'tcp'): Buffer {
  const parsed = parsedOrThrow(buf)
  const n = set.a.length
  const start = set.rotate ? rotation % n : 0
  const rotatedA = set.a.map((_, i) => set.a[(start + i) % n]!)
  const answers = type === 'A' ? rotatedA : type === 'PTR' ? set.ptr : type === 'SRV' ? set.srv : []
  const udpLimit = transport === 'udp' ? (parsed.edns === null ? 512 : Math.max(512, Math.min(parsed.edns.udpPayloadSize, 4096))) : null
  return buildResponse({ query: buf, parsed, rcode: 'NOERROR', aa: true, answers, additionals: type === 'SRV' ? set.additionals : [], udpLimit })
}

t.test('plainQuestionEnd accepts exactly what parseQuery accepts, and ends the question where it does', async (t) => {
  const shapes = [
    query('web'), query('Web.Front.', 'AAAA'), query('.', 'NS'), query('tasks.api', 'A', edns(1232)),
    query('x', 'A', edns(4096, { flags: dnsPacket.DNSSEC_OK })), query('_http._tcp.web', 'SRV'), query('a'.repeat(63) + '.b', 'TXT')
  ]
  for (const buf of shapes) t.equal(plainQuestionEnd(buf), parsedOrThrow(buf).questionEnd, dnsPacket.decode(buf).questions![0]!.name)
  const random = prng(0x5eed)
  let plain = 0
  for (let i = 0; i < 20_000; i++) {
    const bytes = Buffer.from(shapes[i % shapes.length]!)
    for (let flips = 1 + Math.floor(random() * 3); flips > 0; flips--) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256)
    const cut = bytes.subarray(0, random() < 0.2 ? Math.floor(random() * (bytes.length + 1)) : bytes.length)
    const parsed = parseQuery(cut)
    const expected = isWireProblem(parsed) ? -1 : parsed.questionEnd
    if (plainQuestionEnd(cut) !== expected) {
      t.fail(`disagree on ${cut.toString('hex')}: ${plainQuestionEnd(cut)} vs ${expected}`)
      return
    }
    if (expected > 0) plain++
  }
  t.ok(plain > 1000, `${plain} mutated queries were still plain: both verdicts were exercised`)
})

t.test('nameKey: ASCII case folded, nothing else; distinct names never share a key', async (t) => {
  const key = (buf: Buffer): string => nameKey(buf, HEADER_LENGTH, plainQuestionEnd(buf) - 4)
  t.equal(key(query('WeB.FrOnT')), key(query('web.front')))
  t.equal(key(query('web.front')), nameKeyOf('web.front'))
  t.not(nameKeyOf('w\\.eb'), nameKeyOf('w.eb'), 'a dot inside a label is not a label boundary')
  t.not(nameKeyOf('\\192x'), nameKeyOf('\\224x'), 'À and à are different bytes: only ASCII letters fold')
})

t.test('nameKeyOf spells plain names straight into the key encodeName would give, and fails where it fails', async (t) => {
  const viaWire = (name: string): string => { const wire = encodeName(name); return nameKey(wire, 0, wire.length) }
  const names = ['', '.', 'a', 'Web.Front', 'web.front.', 'tasks.API', '_http._tcp.web', '10.0.0.10.in-addr.arpa', 'x'.repeat(63),
    `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`, 'w\\.eb', '\\192x', 'sp ace', 'ünï.code', 'a~b!c[d]e']
  for (const name of names) t.equal(nameKeyOf(name), viaWire(name), JSON.stringify(name))
  for (const bad of ['a..b', '.a', 'x'.repeat(64), `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`]) {
    t.throws(() => nameKeyOf(bad), RangeError, `${JSON.stringify(bad.slice(0, 20))}: as encodeName`)
  }
})

t.test('prepared answers are the general path\'s bytes, for every name, type, transport and EDNS size', async (t) => {
  let compared = 0
  for (const view of tables.tasks.values()) {
    for (const [name, set] of view.names) {
      for (const type of ['A', 'PTR', 'SRV', 'AAAA'] as const) {
        for (const extra of [{}, edns(1232), edns(4096, { flags: dnsPacket.DNSSEC_OK })]) {
          for (const transport of ['udp', 'tcp'] as const) {
            for (const rotation of [0, 1, 2, 7]) {
              const buf = query(name.toUpperCase(), type, extra, 1000 + compared)
              const outcome = answerQuery(tables, view.task, buf, transport, rotation)
              if (outcome.kind !== 'answer') { t.fail(`${name} ${type}: ${outcome.kind}`); return }
              if (!outcome.response.equals(reference(buf, set, type, rotation, transport))) {
                t.fail(`${view.task} ${name} ${type} ${transport} rotation ${rotation}: bytes differ`)
                return
              }
              compared++
            }
          }
        }
      }
    }
  }
  t.ok(compared > 1000, `${compared} answers compared`)
})

t.test('a prepared dnsrr answer still rotates: n queries, n first addresses', async (t) => {
  const firsts = new Set<string>()
  for (let rotation = 0; rotation < 3; rotation++) {
    const outcome = answerQuery(tables, 'w1', query('api'), 'udp', rotation)
    if (outcome.kind !== 'answer') throw new Error(outcome.kind)
    firsts.add(String((dnsPacket.decode(outcome.response).answers![0] as { data: string }).data))
  }
  t.equal(firsts.size, 3)
})

t.test('plainResponse leaves a too-big answer to buildResponse (null), which truncates', async (t) => {
  const buf = query('tasks.api')
  const end = plainQuestionEnd(buf)
  const body = Buffer.alloc(16 * 40)
  t.equal(plainResponse(buf, end, body, 40, 0, 0, 'udp'), null, '40 A records do not fit 512 bytes')
  t.ok(plainResponse(buf, end, body, 40, 0, 0, 'tcp'), 'they fit a TCP message')
})

t.test('a forwarded name: the forward outcome carries what the cache needs, and getPlain answers like get', async (t) => {
  const cache = new ForwardCache({ now: () => 0 })
  const stored = makeQuery('www.example.com', { id: 1 })
  cache.set(stored, makeResponse(stored, { answers: [a('www.example.com', '192.0.2.1', 60)] }))
  for (const spec of [{ id: 7 }, { id: 8, edns: 1232 }, { id: 9, edns: 1232, dnssecOk: true }]) {
    const asked = makeQuery('WWW.Example.COM', spec)
    const outcome = answerQuery(tables, 'c1', asked, 'udp', 0)
    if (outcome.kind !== 'forward') throw new Error(outcome.kind)
    t.equal(outcome.questionEnd, plainQuestionEnd(asked))
    const plain = cache.getPlain(asked, outcome.questionEnd, outcome.nameKey)
    const walked = cache.get(asked)
    t.same(plain, walked, `same answer, EDNS ${spec.edns ?? 'none'}, DO ${spec.dnssecOk ?? false}`)
    if (spec.edns === undefined) t.equal(plain?.readUInt16BE(0), 7, 'with the client\'s ID')
    else t.equal(plain, null, 'EDNS presence and DO are part of the key')
  }
})

t.test('the forward cache evicts by second chance: a hit spares its entry once', async (t) => {
  const cache = new ForwardCache({ now: () => 0, maxEntries: 3 })
  const names = ['a.example', 'b.example', 'c.example', 'd.example', 'e.example']
  const store = (name: string): void => { const q = makeQuery(name); cache.set(q, makeResponse(q, { answers: [a(name, '192.0.2.1', 60)] })) }
  const has = (name: string): boolean => cache.get(makeQuery(name)) !== null
  for (const name of names.slice(0, 3)) store(name)
  t.ok(has('a.example'), 'a is hit')
  store('d.example')
  t.same(['a.example', 'b.example', 'c.example', 'd.example'].map(has), [true, false, true, true], 'b, not a, made room for d')
  // Every entry is now marked (all were just hit): one full pass clears the marks, the oldest goes.
  store('e.example')
  t.equal(cache.size, 3)
  t.notOk(cache.get(makeQuery('e.example')) === null, 'the newest entry is never the one evicted')
})
