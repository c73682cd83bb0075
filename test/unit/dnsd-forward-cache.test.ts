/**
 * The forwarding cache and the RR walker under it: TTL ageing on a fake
 * clock, RFC 2308 negative caching, what is never cached, the key, LRU, and
 * hostile compression pointers.
 */
import t from 'tap'
import { ForwardCache } from '../../dnsd/forward-cache.ts'
import { walkMessage } from '../../dnsd/rr-walk.ts'
import { RCODE, a, decode, makeQuery, makeResponse, soa, ttls } from './dnsd-forward-fixtures.ts'

function clock (start = 1_000_000) {
  const c = { ms: start, now: () => c.ms }
  return c
}

t.test('a hit has the client ID and TTLs aged by whole elapsed seconds, OPT untouched', async (t) => {
  const c = clock()
  const cache = new ForwardCache({ now: c.now })
  const stored = makeQuery('www.example.com', { id: 1, edns: 1232 })
  const response = makeResponse(stored, {
    answers: [a('www.example.com', '192.0.2.1', 100), a('www.example.com', '192.0.2.2', 120)],
    authorities: [{ type: 'NS', name: 'example.com', ttl: 3, class: 'IN', data: 'ns.example.com' }],
    additionals: [a('ns.example.com', '192.0.2.53', 500), { type: 'OPT', name: '.', udpPayloadSize: 4096, flags: 0, options: [] } as never]
  })
  t.equal(cache.set(stored, response), true)
  t.equal(cache.size, 1)

  c.ms += 10_900 // 10.9 s: ten whole seconds
  const hit = cache.get(makeQuery('www.example.com', { id: 0xbeef, edns: 1232 }))
  t.ok(hit)
  t.equal(hit!.readUInt16BE(0), 0xbeef)
  t.same(ttls(hit!), [90, 110, 0, 490], 'decremented, clamped at 0')
  const opt = decode(hit!).additionals!.find((r) => r.type === 'OPT') as unknown as { udpPayloadSize: number }
  t.equal(opt.udpPayloadSize, 4096, 'the OPT "TTL" (flags) and class are not aged')
  t.equal(cache.hits, 1)
  t.equal(cache.misses, 0)

  const again = cache.get(makeQuery('www.example.com', { id: 7, edns: 1232 }))
  t.same(ttls(again!), [90, 110, 0, 490], 'the stored copy was not modified by the first hit')
})

t.test('positive entries live for the smallest answer TTL, capped by maxTtl', async (t) => {
  const c = clock()
  const cache = new ForwardCache({ now: c.now, maxTtl: 300 })
  const q = makeQuery('short.example')
  cache.set(q, makeResponse(q, { answers: [a('short.example', '192.0.2.1', 30), a('short.example', '192.0.2.2', 5)] }))
  c.ms += 4_999
  t.same(ttls(cache.get(q)!), [26, 1])
  c.ms += 1
  t.equal(cache.get(q), null, 'gone at 5 s')
  t.equal(cache.size, 0, 'an expired entry is dropped when met')

  const long = makeQuery('long.example')
  cache.set(long, makeResponse(long, { answers: [a('long.example', '192.0.2.1', 86400)] }))
  c.ms += 299_000
  t.ok(cache.get(long))
  c.ms += 1_000
  t.equal(cache.get(long), null, 'capped at maxTtl = 300 s')
})

t.test('negative answers: NXDOMAIN and NODATA live min(SOA TTL, SOA MINIMUM), capped at 60 s', async (t) => {
  const c = clock()
  const cache = new ForwardCache({ now: c.now })
  const nx = makeQuery('nope.example')
  t.equal(cache.set(nx, makeResponse(nx, { rcode: RCODE.NXDOMAIN, authorities: [soa('example', 3600, 20)] })), true)
  const nodata = makeQuery('v4only.example', { type: 'AAAA' })
  t.equal(cache.set(nodata, makeResponse(nodata, { authorities: [soa('example', 10, 900)] })), true)
  const long = makeQuery('long-negative.example')
  t.equal(cache.set(long, makeResponse(long, { rcode: RCODE.NXDOMAIN, authorities: [soa('example', 3600, 3600)] })), true)

  c.ms += 9_000
  const hit = cache.get(makeQuery('nope.example', { id: 99 }))
  t.equal(hit!.readUInt16BE(2) & 0xf, RCODE.NXDOMAIN)
  t.same(ttls(hit!), [3591], 'the SOA TTL ages too')
  t.ok(cache.get(nodata), 'NODATA alive at 9 s')
  c.ms += 1_000
  t.equal(cache.get(nodata), null, 'NODATA gone at min(10, 900) = 10 s')
  t.ok(cache.get(nx))
  c.ms += 10_000
  t.equal(cache.get(nx), null, 'NXDOMAIN gone at min(3600, 20) = 20 s')
  t.ok(cache.get(long))
  c.ms += 40_000
  t.equal(cache.get(long), null, 'capped at 60 s')
})

t.test('never cached: SERVFAIL, REFUSED, truncated, TTL 0, negative without SOA, mismatched question', async (t) => {
  const cache = new ForwardCache({ now: clock().now })
  const q = makeQuery('x.example')
  t.equal(cache.set(q, makeResponse(q, { rcode: RCODE.SERVFAIL })), false, 'SERVFAIL')
  t.equal(cache.set(q, makeResponse(q, { rcode: RCODE.SERVFAIL, authorities: [soa('example', 60, 60)] })), false, 'SERVFAIL even with an SOA')
  t.equal(cache.set(q, makeResponse(q, { rcode: RCODE.REFUSED })), false, 'REFUSED')
  t.equal(cache.set(q, makeResponse(q, { truncated: true, answers: [a('x.example', '192.0.2.1', 60)] })), false, 'TC')
  t.equal(cache.set(q, makeResponse(q, { answers: [a('x.example', '192.0.2.1', 0)] })), false, 'TTL 0')
  t.equal(cache.set(q, makeResponse(q, { rcode: RCODE.NXDOMAIN })), false, 'NXDOMAIN without SOA')
  t.equal(cache.set(q, makeResponse(makeQuery('y.example'), { answers: [a('y.example', '192.0.2.1', 60)] })), false, 'another question')
  t.equal(cache.set(q, Buffer.from('garbage')), false, 'garbage')
  t.equal(cache.size, 0)
  t.equal(cache.get(q), null)
  t.equal(cache.misses, 1)
})

t.test('the key ignores case and the answer echoes the client\'s spelling', async (t) => {
  const cache = new ForwardCache({ now: clock().now })
  const q = makeQuery('www.example.com')
  cache.set(q, makeResponse(q, { answers: [a('www.example.com', '192.0.2.1', 60)] }))
  const hit = cache.get(makeQuery('WwW.ExAmPlE.CoM', { id: 4242 }))
  t.ok(hit)
  t.equal(hit!.readUInt16BE(0), 4242)
  t.equal(decode(hit!).questions![0]!.name, 'WwW.ExAmPlE.CoM')
})

t.test('the key separates type, DO bit and EDNS presence', async (t) => {
  const cache = new ForwardCache({ now: clock().now })
  const plain = makeQuery('k.example')
  cache.set(plain, makeResponse(plain, { answers: [a('k.example', '192.0.2.1', 60)] }))
  t.ok(cache.get(makeQuery('k.example')))
  t.equal(cache.get(makeQuery('k.example', { type: 'AAAA' })), null, 'qtype')
  t.equal(cache.get(makeQuery('k.example', { edns: 1232 })), null, 'EDNS present')
  const withDo = makeQuery('k.example', { edns: 1232, dnssecOk: true })
  t.equal(cache.get(withDo), null, 'DO bit')
  cache.set(withDo, makeResponse(withDo, { answers: [a('k.example', '192.0.2.9', 60)] }))
  t.equal(cache.get(makeQuery('k.example', { edns: 1232 })), null, 'a DO answer does not serve a non-DO query')
  t.ok(cache.get(makeQuery('k.example', { edns: 512, dnssecOk: true })), 'payload size is not part of the key')
})

t.test('LRU: the least recently used entry goes first', async (t) => {
  const cache = new ForwardCache({ now: clock().now, maxEntries: 2 })
  const [q1, q2, q3] = ['a.example', 'b.example', 'c.example'].map((n) => makeQuery(n)) as [Buffer, Buffer, Buffer]
  for (const [q, n] of [[q1, 'a.example'], [q2, 'b.example']] as const) cache.set(q, makeResponse(q, { answers: [a(n, '192.0.2.1', 60)] }))
  t.ok(cache.get(q1), 'touch a: b is now the oldest')
  cache.set(q3, makeResponse(q3, { answers: [a('c.example', '192.0.2.1', 60)] }))
  t.equal(cache.size, 2)
  t.ok(cache.get(q1))
  t.equal(cache.get(q2), null, 'b evicted')
  t.ok(cache.get(q3))
})

// Hand-built: header, question www.example.com A IN, one answer whose owner is
// a pointer to the question name (0xc00c).
function compressedResponse (ownerPointer: number[], ttl = 60): Buffer {
  const header = Buffer.from([0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0])
  const qname = Buffer.from([3, 0x77, 0x77, 0x77, 7, ...Buffer.from('example'), 3, ...Buffer.from('com'), 0])
  const question = Buffer.concat([qname, Buffer.from([0, 1, 0, 1])])
  const rr = Buffer.alloc(10 + 4)
  rr.writeUInt16BE(1, 0); rr.writeUInt16BE(1, 2); rr.writeUInt32BE(ttl, 4); rr.writeUInt16BE(4, 8); rr.set([192, 0, 2, 7], 10)
  return Buffer.concat([header, question, Buffer.from(ownerPointer), rr])
}

t.test('the walker follows compression pointers to find TTLs', async (t) => {
  const msg = compressedResponse([0xc0, 0x0c], 77)
  const walked = walkMessage(msg)
  t.ok(walked)
  t.same(walked!.ttlOffsets, [12 + 21 + 2 + 4])
  t.equal(walked!.minAnswerTtl, 77)
  t.equal(decode(msg).answers![0]!.name, 'www.example.com', 'dns-packet agrees it is well formed')
  const c = clock()
  const cache = new ForwardCache({ now: c.now })
  t.equal(cache.set(makeQuery('www.example.com'), msg), true)
  c.ms += 7_000
  t.same(ttls(cache.get(makeQuery('www.example.com'))!), [70])
})

t.test('the walker rejects loops, forward pointers, bad label types and truncation', async (t) => {
  const base = compressedResponse([0xc0, 0x0c])
  const ownerAt = 12 + 21
  t.equal(walkMessage(compressedResponse([0xc0, ownerAt])), null, 'pointer to itself')
  t.equal(walkMessage(compressedResponse([0xc0, 0xff])), null, 'pointer past the end')
  // A pointer forwards to a well-formed name placed after the RR: still refused,
  // pointers must go back (RFC 1035 §4.1.4 "a prior occurrence").
  const forward = Buffer.concat([compressedResponse([0xc0, ownerAt + 2 + 14]), Buffer.from([1, 0x62, 0])])
  t.equal(walkMessage(forward), null, 'pointer forwards to a valid name')
  t.equal(walkMessage(compressedResponse([0x01, 0x61, 0xc0, ownerAt])), null, 'loop through a label')
  t.equal(walkMessage(compressedResponse([0x80, 0x00])), null, 'reserved label type')
  t.equal(walkMessage(compressedResponse([0xc0, 0x02])), null, 'pointer into the header, where no name can end')
  for (let cut = 0; cut < base.length; cut++) {
    if (walkMessage(base.subarray(0, cut)) !== null) t.fail(`accepted a message cut at ${cut}`)
  }
  const absurd = Buffer.from(base)
  absurd.writeUInt16BE(0xffff, 6)
  t.equal(walkMessage(absurd), null, 'ANCOUNT beyond the bytes')
  const cache = new ForwardCache({ now: clock().now })
  t.equal(cache.set(makeQuery('www.example.com'), compressedResponse([0xc0, ownerAt])), false, 'never cached')
})

t.test('a name longer than 255 bytes is rejected', async (t) => {
  const labels = Array.from({ length: 5 }, () => [63, ...Buffer.alloc(63, 0x61)]).flat()
  const header = Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
  t.equal(walkMessage(Buffer.concat([header, Buffer.from([...labels, 0, 0, 1, 0, 1])])), null)
  const ok = Array.from({ length: 3 }, () => [63, ...Buffer.alloc(63, 0x61)]).flat()
  t.ok(walkMessage(Buffer.concat([header, Buffer.from([...ok, 0, 0, 1, 0, 1])])), '192 bytes is fine')
})
