/**
 * dnsd's wire format: the query reader's policy (drop / FORMERR / NOTIMP /
 * REFUSED / BADVERS), response assembly and truncation. Queries are built and
 * responses read with dns-packet, never with the code under test.
 */
import t from 'tap'
import dnsPacket, { type Answer } from 'dns-packet'
import {
  buildResponse, encodeName, errorResponse, isWireProblem, parseQuery, truncateForUdp, udpLimitFor,
  type ParsedQuery, type WireProblem
} from '../../dnsd/wire.ts'
import { decode, edns, query } from '../helpers/dnsd.ts'

function parsed (buf: Buffer): ParsedQuery {
  const result = parseQuery(buf)
  if (isWireProblem(result)) throw new Error(`unexpected problem: ${result.kind} ${'rcode' in result ? result.rcode : ''} ${result.reason}`)
  return result
}

function problem (buf: Buffer): WireProblem {
  const result = parseQuery(buf)
  if (!isWireProblem(result)) throw new Error(`parsed, expected a problem: ${result.name}`)
  return result
}

/** The rcode an error problem answers with, after a round trip through errorResponse and dns-packet. */
function answeredRcode (buf: Buffer): { rcode: string, id: number | undefined, questions: number } {
  const p = problem(buf)
  if (p.kind !== 'error') return { rcode: `drop: ${p.reason}`, id: undefined, questions: 0 }
  const reply = decode(errorResponse(buf, p.partial, p.rcode))
  t.equal(reply.type, 'response')
  return { rcode: p.rcode === 'BADVERS' ? 'BADVERS' : reply.rcode, id: reply.id, questions: reply.questions?.length ?? 0 }
}

/** An A record pre-encoded with owner = pointer to the question, like records.ts makes them. */
function aRecord (ip: string, ttl = 5): Buffer {
  const rr = Buffer.alloc(16)
  rr.writeUInt16BE(0xc00c, 0)
  rr.writeUInt16BE(1, 2)
  rr.writeUInt16BE(1, 4)
  rr.writeUInt32BE(ttl, 6)
  rr.writeUInt16BE(4, 10)
  ip.split('.').forEach((part, i) => { rr[12 + i] = Number(part) })
  return rr
}

t.test('a plain query: id, lower-cased name, type, class, question end', async (t) => {
  const buf = query('Web.Front.', 'AAAA', {}, 777)
  const p = parsed(buf)
  t.equal(p.id, 777)
  t.equal(p.name, 'web.front')
  t.equal(p.qtype, 28)
  t.equal(p.qclass, 1)
  t.equal(p.questionEnd, buf.length)
  t.equal(p.edns, null)
  t.ok(p.rd)
})

t.test('labels with dots or odd bytes are escaped, so they never match a plain name', async (t) => {
  const buf = Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 0x77, 0x2e, 0x65, 0x62, 0x00, 0, 0, 1, 0, 1]) // "w.eb\000"
  t.equal(parsed(buf).name, 'w\\.eb\\000')
  t.equal(parsed(query('.', 'NS')).name, '', 'the root is the empty name')
})

t.test('EDNS0: payload size, DO bit; version ≠ 0 is BADVERS with an OPT in the answer', async (t) => {
  const p = parsed(query('web', 'A', edns(1400, { flags: dnsPacket.DNSSEC_OK })))
  t.same(p.edns, { udpPayloadSize: 1400, version: 0, dnssecOk: true })
  t.equal(udpLimitFor(p.edns), 1400)
  t.equal(udpLimitFor(null), 512)
  t.equal(udpLimitFor({ udpPayloadSize: 100, version: 0, dnssecOk: false }), 512, 'below 512 counts as 512')
  t.equal(udpLimitFor({ udpPayloadSize: 65000, version: 0, dnssecOk: false }), 4096, 'capped at 4096')

  const v1 = query('web', 'A', edns(1232, { ednsVersion: 1 }), 99)
  const p1 = problem(v1)
  t.equal(p1.kind === 'error' && p1.rcode, 'BADVERS')
  if (p1.kind !== 'error') return
  const reply = decode(errorResponse(v1, p1.partial, p1.rcode))
  t.equal(reply.id, 99)
  t.equal(reply.rcode, 'NOERROR', 'the header carries the low 4 bits of 16')
  const opt = (reply.additionals ?? []).find((a) => a.type === 'OPT') as { extendedRcode: number, ednsVersion: number } | undefined
  t.equal(opt?.extendedRcode, 1, 'the OPT carries the upper bits: 1 << 4 = 16 = BADVERS')
  t.equal(opt?.ednsVersion, 0)
})

t.test('too short for a header, or a response (QR set): dropped', async (t) => {
  for (let length = 0; length < 12; length++) t.equal(problem(query('web').subarray(0, length)).kind, 'drop', `${length} bytes`)
  const response = query('web')
  response[2] = response[2]! | 0x80
  t.equal(problem(response).kind, 'drop')
})

t.test('opcode other than QUERY: NOTIMP, header only', async (t) => {
  const buf = query('web')
  buf[2] = (buf[2]! & 0x87) | (2 << 3) // STATUS
  t.same(answeredRcode(buf), { rcode: 'NOTIMP', id: 4242, questions: 0 })
})

t.test('FORMERR: counts, compression, label and name length, truncation, additionals', async (t) => {
  const cases: Array<[string, (b: Buffer) => Buffer]> = [
    ['QDCOUNT 0', (b) => { b.writeUInt16BE(0, 4); return b }],
    ['QDCOUNT 2', (b) => { b.writeUInt16BE(2, 4); return b }],
    ['ANCOUNT 1', (b) => { b.writeUInt16BE(1, 6); return b }],
    ['NSCOUNT 65535', (b) => { b.writeUInt16BE(65535, 8); return b }],
    ['ARCOUNT 2', (b) => { b.writeUInt16BE(2, 10); return b }],
    ['ARCOUNT 1 with nothing there', (b) => { b.writeUInt16BE(1, 10); return b }],
    ['question name is a pointer to itself', (b) => { b[12] = 0xc0; b[13] = 12; return b }],
    ['extended label type 0x40', (b) => { b[12] = 0x40; return b }],
    ['question cut inside the name', (b) => b.subarray(0, 14)],
    ['question cut before type and class', (b) => b.subarray(0, b.length - 3)],
    ['qtype OPT', (b) => { b.writeUInt16BE(41, b.length - 4); return b }]
  ]
  for (const [what, mutate] of cases) t.equal(answeredRcode(mutate(query('web'))).rcode, 'FORMERR', what)

  const long = Buffer.concat([query('web').subarray(0, 12), ...Array.from({ length: 5 }, () => Buffer.from([63, ...Buffer.alloc(63, 0x61)])), Buffer.from([0, 0, 1, 0, 1])])
  t.equal(answeredRcode(long).rcode, 'FORMERR', 'name of 321 bytes')

  const notOpt = Buffer.concat([query('web'), Buffer.from([0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4])])
  notOpt.writeUInt16BE(1, 10)
  t.equal(answeredRcode(notOpt).rcode, 'FORMERR', 'the additional is an A record, not OPT')

  const shortOpt = query('web', 'A', edns(1232)).subarray(0, -3)
  t.equal(answeredRcode(shortOpt).rcode, 'FORMERR', 'OPT cut short')
})

t.test('a FORMERR after the question was read echoes it', async (t) => {
  const buf = query('Web', 'A', edns(1232))
  buf[buf.length - 11] = 1 // the OPT owner is no longer the root
  t.same(answeredRcode(buf), { rcode: 'FORMERR', id: 4242, questions: 1 })
})

t.test('class other than IN: REFUSED, question echoed', async (t) => {
  const buf = query('version.bind', 'TXT')
  buf.writeUInt16BE(3, buf.length - 2) // CHAOS
  t.same(answeredRcode(buf), { rcode: 'REFUSED', id: 4242, questions: 1 })
})

t.test('buildResponse: flags, question bytes verbatim (0x20), OPT echoed with DO', async (t) => {
  const buf = query('wEb.FrOnT', 'A', edns(1232, { flags: dnsPacket.DNSSEC_OK }), 31337)
  const p = parsed(buf)
  const out = buildResponse({ query: buf, parsed: p, rcode: 'NOERROR', aa: true, answers: [aRecord('10.0.1.100')], additionals: [], udpLimit: 512 })
  t.same(out.subarray(12, p.questionEnd), buf.subarray(12, p.questionEnd), 'question bytes as received')
  const reply = decode(out)
  t.equal(reply.id, 31337)
  t.equal(reply.type, 'response')
  t.ok(reply.flag_aa)
  t.ok(reply.flag_rd)
  t.ok(reply.flag_ra)
  t.notOk(reply.flag_tc)
  t.equal(reply.questions?.[0]?.name, 'wEb.FrOnT')
  t.same(reply.answers?.map((a) => [a.name, a.type, 'data' in a && a.data, 'ttl' in a && a.ttl]), [['wEb.FrOnT', 'A', '10.0.1.100', 5]])
  const opt = reply.additionals?.find((a) => a.type === 'OPT') as Answer & { flag_do: boolean, udpPayloadSize: number }
  t.ok(opt, 'OPT present')
  t.equal(opt.flag_do, true, 'DO echoed')
  t.equal(opt.udpPayloadSize, 1232)

  const plain = decode(buildResponse({ query: query('web'), parsed: parsed(query('web')), rcode: 'NOERROR', aa: true, answers: [], additionals: [], udpLimit: 512 }))
  t.same(plain.additionals, [], 'no OPT without EDNS0 in the query')
})

t.test('buildResponse over UDP: whole RRs, TC when an answer is left out, not for additionals', async (t) => {
  const buf = query('tasks.web')
  const p = parsed(buf)
  const answers = Array.from({ length: 100 }, (_, i) => aRecord(`10.0.${i >> 8}.${i & 255}`))
  const out = buildResponse({ query: buf, parsed: p, rcode: 'NOERROR', aa: true, answers, additionals: [], udpLimit: 512 })
  t.ok(out.length <= 512)
  const reply = decode(out)
  t.ok(reply.flag_tc, 'TC set')
  t.equal(reply.answers?.length, Math.floor((512 - p.questionEnd) / 16), 'as many whole RRs as fit')
  t.equal(out.length, p.questionEnd + 16 * (reply.answers?.length ?? 0), 'no partial RR')

  const tcp = decode(buildResponse({ query: buf, parsed: p, rcode: 'NOERROR', aa: true, answers, additionals: [], udpLimit: null }))
  t.equal(tcp.answers?.length, 100)
  t.notOk(tcp.flag_tc)

  const glue = Array.from({ length: 40 }, () => aRecord('10.9.9.9'))
  const withGlue = decode(buildResponse({ query: buf, parsed: p, rcode: 'NOERROR', aa: true, answers: answers.slice(0, 2), additionals: glue, udpLimit: 512 }))
  t.equal(withGlue.answers?.length, 2)
  t.ok((withGlue.additionals?.length ?? 0) < 40, 'some additionals left out')
  t.notOk(withGlue.flag_tc, 'RFC 2181 §9: no TC for missing additionals')

  const e = query('tasks.web', 'A', edns(600))
  const pe = parsed(e)
  const big = buildResponse({ query: e, parsed: pe, rcode: 'NOERROR', aa: true, answers, additionals: [], udpLimit: udpLimitFor(pe.edns) })
  t.ok(big.length <= 600)
  const bigReply = decode(big)
  t.ok(bigReply.flag_tc)
  t.ok(bigReply.additionals?.some((a) => a.type === 'OPT'), 'the OPT survives truncation')
})

t.test('truncateForUdp: fits → same buffer; too big → header + question + TC (+ OPT)', async (t) => {
  const buf = query('Big.Lab.Test', 'A', {}, 555)
  const p = parsed(buf)
  const small = dnsPacket.encode({ type: 'response', id: 555, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: [{ name: 'Big.Lab.Test', type: 'A' }], answers: [{ type: 'A', name: 'Big.Lab.Test', ttl: 60, data: '10.1.1.1' }] })
  t.equal(truncateForUdp(small, p), small)

  const many = Array.from({ length: 60 }, (_, i): Answer => ({ type: 'A', name: 'Big.Lab.Test', ttl: 60, data: `10.1.1.${i}` }))
  const large = dnsPacket.encode({ type: 'response', id: 555, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | 3 /* NXDOMAIN, to see it kept */, questions: [{ name: 'Big.Lab.Test', type: 'A' }], answers: many })
  t.ok(large.length > 512)
  const cut = truncateForUdp(large, p)
  t.ok(cut.length <= 512)
  const reply = decode(cut)
  t.equal(reply.id, 555)
  t.ok(reply.flag_tc)
  t.equal(reply.rcode, 'NXDOMAIN')
  t.same(reply.answers, [])
  t.equal(reply.questions?.[0]?.name, 'Big.Lab.Test')

  const e = query('big.lab.test', 'A', edns(1232), 556)
  const withEdns = decode(truncateForUdp(dnsPacket.encode({ type: 'response', id: 556, questions: [{ name: 'big.lab.test', type: 'A' }], answers: [...many, ...many] }), parsed(e)))
  t.ok(withEdns.flag_tc)
  t.ok(withEdns.additionals?.some((a) => a.type === 'OPT'), 'OPT when the query had one')
})

t.test('encodeName: wire form, escapes, limits', async (t) => {
  t.same(encodeName('web.front'), Buffer.from([3, 0x77, 0x65, 0x62, 5, 0x66, 0x72, 0x6f, 0x6e, 0x74, 0]))
  t.same(encodeName('web.'), encodeName('web'))
  t.same(encodeName(''), Buffer.from([0]))
  t.same(encodeName('w\\.eb\\000'), Buffer.from([5, 0x77, 0x2e, 0x65, 0x62, 0, 0]))
  t.throws(() => encodeName('a'.repeat(64)), RangeError)
  t.throws(() => encodeName(Array.from({ length: 5 }, () => 'a'.repeat(60)).join('.')), RangeError)
  t.throws(() => encodeName('a..b'), RangeError)
})
