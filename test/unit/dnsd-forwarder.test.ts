/**
 * The forwarder against fake upstream resolvers on 127.0.0.1 (UDP and TCP on
 * one ephemeral port each): failover on timeout, garbage, SERVFAIL and ICMP
 * refusal; TCP retry on truncation; anti-spoofing; SERVFAIL when all fail;
 * the cache in front. Nothing leaves loopback.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { createServer, type Server, type Socket as TcpSocket } from 'node:net'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import t from 'tap'
import { ForwardCache } from '../../dnsd/forward-cache.ts'
import { Forwarder, type ForwarderOptions, type Upstream } from '../../dnsd/forwarder.ts'
import { createForwarderMetrics } from '../../dnsd/forwarder-metrics.ts'
import { HEADER_LENGTH, nameKey, plainQuestionEnd } from '../../dnsd/wire.ts'
import { RCODE, a, answerData, decode, makeQuery, makeResponse, rcodeOf, soa, ttls } from './dnsd-forward-fixtures.ts'

const log = pino({ level: 'silent' })
const TIMEOUT = 200

type Reply = (query: Buffer, transport: 'udp' | 'tcp', send: (message: Buffer) => void) => void

interface FakeUpstream extends Upstream {
  readonly seen: { transport: 'udp' | 'tcp', id: number, query: Buffer }[]
  close (): Promise<void>
}

async function fakeUpstream (reply: Reply): Promise<FakeUpstream> {
  // UDP on an ephemeral port, then TCP on the same number; retry if taken.
  for (let tries = 0; ; tries++) {
    const udp = createSocket('udp4')
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve))
    const port = udp.address().port
    const tcp = createServer()
    const ok = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false))
      tcp.listen(port, '127.0.0.1', () => resolve(true))
    })
    if (!ok) {
      udp.close()
      if (tries > 10) throw new Error('no port for a fake upstream')
      continue
    }
    return wire(udp, tcp, port, reply)
  }
}

function wire (udp: UdpSocket, tcp: Server, port: number, reply: Reply): FakeUpstream {
  const seen: FakeUpstream['seen'] = []
  const connections = new Set<TcpSocket>()
  udp.on('message', (message, rinfo) => {
    seen.push({ transport: 'udp', id: message.readUInt16BE(0), query: message })
    reply(message, 'udp', (out) => udp.send(out, rinfo.port, rinfo.address))
  })
  tcp.on('connection', (socket) => {
    connections.add(socket)
    socket.on('close', () => connections.delete(socket))
    socket.on('error', () => {})
    let buffered = Buffer.alloc(0)
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk])
      if (buffered.length < 2 || buffered.length < 2 + buffered.readUInt16BE(0)) return
      const message = buffered.subarray(2, 2 + buffered.readUInt16BE(0))
      seen.push({ transport: 'tcp', id: message.readUInt16BE(0), query: message })
      reply(message, 'tcp', (out) => {
        const frame = Buffer.alloc(2 + out.length)
        frame.writeUInt16BE(out.length, 0)
        out.copy(frame, 2)
        socket.write(frame)
      })
    })
  })
  return {
    address: '127.0.0.1',
    port,
    seen,
    async close () {
      for (const c of connections) c.destroy()
      await Promise.all([new Promise<void>((resolve) => udp.close(() => resolve())), new Promise<void>((resolve) => tcp.close(() => resolve()))])
    }
  }
}

const answerA: Reply = (query, _transport, send) => {
  const name = decode(query).questions![0]!.name
  send(makeResponse(query, { answers: [a(name, '192.0.2.1', 60)] }))
}
const silent: Reply = () => {}

async function setup (t: { teardown (fn: () => unknown): void }, replies: Reply[], extra: Partial<ForwarderOptions> = {}) {
  const upstreams = await Promise.all(replies.map((r) => fakeUpstream(r)))
  const forwarder = new Forwarder({ upstreams, timeoutMs: TIMEOUT, log, ...extra })
  t.teardown(async () => {
    await forwarder.close()
    await Promise.all(upstreams.map((u) => u.close()))
  })
  return { upstreams, forwarder }
}

async function timed<T> (fn: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now()
  const value = await fn()
  return [value, performance.now() - start]
}

t.test('a normal upstream: client ID and question back, a fresh random ID on the wire', async (t) => {
  const { upstreams: [up], forwarder } = await setup(t, [answerA])
  const results = []
  for (let i = 0; i < 6; i++) results.push(await forwarder.resolve(makeQuery('Www.Example.com', { id: 0xabcd, edns: 1232 })))
  for (const r of results) {
    t.equal(r.source, 'upstream')
    t.equal(r.transport, 'udp')
    t.equal(r.upstream, `127.0.0.1:${up!.port}`)
    t.equal(r.response.readUInt16BE(0), 0xabcd)
    const p = decode(r.response)
    t.equal(p.questions![0]!.name, 'Www.Example.com')
    t.same(answerData(r.response), ['192.0.2.1'])
  }
  const ids = new Set(up!.seen.map((s) => s.id))
  t.ok(ids.size > 1, 'IDs differ between attempts')
  t.ok(decode(up!.seen[0]!.query).additionals!.some((r) => r.type === 'OPT'), 'the client\'s EDNS0 OPT is forwarded')
  t.equal(forwarder.stats.udpSockets, 1)
})

t.test('an upstream that never answers: the next one answers after about one timeout', async (t) => {
  const { upstreams: [dead, live], forwarder } = await setup(t, [silent, answerA])
  const [r, ms] = await timed(() => forwarder.resolve(makeQuery('example.org', { id: 7 })))
  t.equal(r.source, 'upstream')
  t.equal(r.upstream, `127.0.0.1:${live!.port}`)
  t.equal(r.response.readUInt16BE(0), 7)
  t.equal(dead!.seen.length, 1)
  t.ok(ms >= TIMEOUT - 5 && ms < TIMEOUT + 250, `took ${ms.toFixed(0)} ms`)
})

t.test('a truncated UDP answer is asked again over TCP of the same upstream', async (t) => {
  const big: Reply = (query, transport, send) => {
    const name = decode(query).questions![0]!.name
    if (transport === 'udp') return send(makeResponse(query, { truncated: true }))
    send(makeResponse(query, { answers: Array.from({ length: 200 }, (_, i) => a(name, `10.0.${i >> 8}.${i & 255}`, 30)) }))
  }
  const { upstreams: [up], forwarder } = await setup(t, [big])
  const r = await forwarder.resolve(makeQuery('tasks.big.example', { id: 0x0102 }))
  t.equal(r.source, 'upstream')
  t.equal(r.transport, 'tcp')
  t.equal(r.response.readUInt16BE(0), 0x0102)
  t.equal(decode(r.response).answers!.length, 200, 'the full answer')
  t.ok(r.response.length > 512 && r.response.length <= 65535)
  t.equal((r.response.readUInt16BE(2) & 0x0200), 0, 'not truncated')
  t.same(up!.seen.map((s) => s.transport), ['udp', 'tcp'])
  t.not(up!.seen[1]!.id, 0x0102, 'a wire ID on TCP too') // 1 in 65536 chance of a false failure
})

t.test('replies with a wrong ID or another question are ignored and counted; the right one wins', async (t) => {
  const tricky: Reply = (query, _transport, send) => {
    const id = query.readUInt16BE(0)
    const name = decode(query).questions![0]!.name
    send(makeResponse(query, { id: id ^ 0x5555, answers: [a(name, '203.0.113.66', 60)] }))
    const other = makeQuery('evil.example', { id })
    send(makeResponse(other, { answers: [a('evil.example', '203.0.113.66', 60)] }))
    setTimeout(() => send(makeResponse(query, { answers: [a(name, '192.0.2.1', 60)] })), 20)
  }
  const { forwarder } = await setup(t, [tricky])
  const r = await forwarder.resolve(makeQuery('bank.example', { id: 1 }))
  t.equal(r.source, 'upstream')
  t.same(answerData(r.response), ['192.0.2.1'])
  t.equal(forwarder.stats.ignoredUnknownId, 1)
  t.equal(forwarder.stats.ignoredMismatch, 1)
})

t.test('garbage from an upstream is ignored, never crashes, and the next upstream answers', async (t) => {
  const junk: Reply = (query, _transport, send) => {
    send(Buffer.from([1, 2, 3]))
    const withId = Buffer.alloc(40, 0xc0)
    query.copy(withId, 0, 0, 2) // the right ID, then nonsense
    send(withId)
  }
  const registry = new Registry()
  const metrics = createForwarderMetrics(registry, null)
  const { upstreams: [, live], forwarder } = await setup(t, [junk, answerA], { metrics })
  const [r, ms] = await timed(() => forwarder.resolve(makeQuery('example.net', { id: 55 })))
  t.equal(r.upstream, `127.0.0.1:${live!.port}`)
  t.equal(r.response.readUInt16BE(0), 55)
  t.equal(forwarder.stats.ignoredMalformed, 2)
  t.ok(ms >= TIMEOUT - 5, 'the garbage did not end the attempt early')
  const text = await registry.metrics()
  t.match(text, /weft_dnsd_forward_ignored_replies_total\{reason="malformed"\} 2/)
  t.match(text, /weft_dnsd_forward_attempts_total\{upstream="127\.0\.0\.1:\d+",transport="udp",outcome="timeout"\} 1/)
})

t.test('SERVFAIL and REFUSED from an upstream move on to the next one', async (t) => {
  const fail = (rcode: number): Reply => (query, _t, send) => send(makeResponse(query, { rcode }))
  const { upstreams: [, , live], forwarder } = await setup(t, [fail(RCODE.SERVFAIL), fail(RCODE.REFUSED), answerA])
  const [r, ms] = await timed(() => forwarder.resolve(makeQuery('example.com')))
  t.equal(r.upstream, `127.0.0.1:${live!.port}`)
  t.equal(rcodeOf(r.response), RCODE.NOERROR)
  t.ok(ms < TIMEOUT, 'no timeout waited')
})

t.test('ICMP port unreachable fails the attempt at once', async (t) => {
  const closed = createSocket('udp4')
  await new Promise<void>((resolve) => closed.bind(0, '127.0.0.1', resolve))
  const deadPort = closed.address().port
  await new Promise<void>((resolve) => closed.close(() => resolve()))
  const live = await fakeUpstream(answerA)
  const registry = new Registry()
  const forwarder = new Forwarder({ upstreams: [{ address: '127.0.0.1', port: deadPort }, live], timeoutMs: 1000, log, metrics: createForwarderMetrics(registry, null) })
  t.teardown(async () => { await forwarder.close(); await live.close() })
  const [r, ms] = await timed(() => forwarder.resolve(makeQuery('example.com')))
  t.equal(r.upstream, `127.0.0.1:${live.port}`)
  t.ok(ms < 500, `took ${ms.toFixed(0)} ms, not the 1000 ms timeout`)
  t.match(await registry.metrics(), new RegExp(`upstream="127\\.0\\.0\\.1:${deadPort}",transport="udp",outcome="port_unreachable"\\} 1`))
  t.equal(forwarder.stats.udpSockets, 2, 'the refused socket stays usable for the next query')
})

t.test('answers are counted by source for /metrics, cache hits (also on the hot path) from the cache\'s own count', async (t) => {
  const registry = new Registry()
  const cache = new ForwardCache()
  const { forwarder } = await setup(t, [answerA], { cache, metrics: createForwarderMetrics(registry, cache) })
  t.equal((await forwarder.resolve(makeQuery('example.com'))).source, 'upstream')
  t.equal((await forwarder.resolve(makeQuery('example.com', { id: 2 }))).source, 'cache')
  const plain = makeQuery('example.com', { id: 3 })
  const end = plainQuestionEnd(plain)
  t.ok(forwarder.cached(plain, end, nameKey(plain, HEADER_LENGTH, end - 4)), 'the hot path hits')
  const text = await registry.metrics()
  t.match(text, /weft_dnsd_forward_results_total\{source="cache"\} 2\n/)
  t.match(text, /weft_dnsd_forward_results_total\{source="upstream"\} 1\n/)
  t.match(text, /weft_dnsd_forward_results_total\{source="servfail"\} 0\n/)
  t.match(text, /weft_dnsd_forward_cache_entries 1\n/)

  const failing = new Registry()
  const servfail: Reply = (query, _t, send) => send(makeResponse(query, { rcode: RCODE.SERVFAIL }))
  const { forwarder: down } = await setup(t, [servfail], { metrics: createForwarderMetrics(failing, null) })
  t.equal((await down.resolve(makeQuery('example.com'))).source, 'servfail')
  t.match(await failing.metrics(), /weft_dnsd_forward_results_total\{source="servfail"\} 1\n/)
  t.match(await failing.metrics(), /weft_dnsd_forward_cache_entries 0\n/)
})

t.test('every upstream failing gives SERVFAIL built from the query', async (t) => {
  const servfail: Reply = (query, _t, send) => send(makeResponse(query, { rcode: RCODE.SERVFAIL }))
  const { forwarder } = await setup(t, [silent, servfail])
  const [r, ms] = await timed(() => forwarder.resolve(makeQuery('Down.Example', { id: 0xfeed, edns: 1232, dnssecOk: true })))
  t.equal(r.source, 'servfail')
  t.equal(r.upstream, null)
  t.equal(r.transport, null)
  const p = decode(r.response)
  t.equal(p.id, 0xfeed)
  t.equal(rcodeOf(r.response), RCODE.SERVFAIL)
  t.equal(p.flag_qr, true)
  t.equal(p.flag_rd, true)
  t.equal(p.flag_ra, true)
  t.same(p.questions, [{ name: 'Down.Example', type: 'A', class: 'IN' }])
  const opt = p.additionals!.find((x) => x.type === 'OPT') as unknown as { flag_do: boolean } | undefined
  t.ok(opt, 'EDNS in, EDNS out')
  t.equal(opt?.flag_do, true)
  t.ok(ms >= TIMEOUT - 5 && ms < TIMEOUT + 250, `about one timeout: ${ms.toFixed(0)} ms`)

  const none = new Forwarder({ upstreams: [], log })
  const r2 = await none.resolve(makeQuery('x.example', { id: 3 }))
  t.equal(r2.source, 'servfail')
  t.equal(r2.response.readUInt16BE(0), 3)
  t.equal(decode(r2.response).additionals!.length, 0, 'no EDNS in, no OPT out')
  await none.close()
})

t.test('with a cache: hits age on the injected clock, keep the client ID, ignore case', async (t) => {
  const clock = { ms: 0 }
  const cache = new ForwardCache({ now: () => clock.ms })
  const { upstreams: [up], forwarder } = await setup(t, [answerA], { cache })
  const first = await forwarder.resolve(makeQuery('cached.example', { id: 1 }))
  t.equal(first.source, 'upstream')
  clock.ms += 12_000
  const second = await forwarder.resolve(makeQuery('CACHED.example', { id: 2 }))
  t.equal(second.source, 'cache')
  t.equal(second.upstream, null)
  t.equal(second.response.readUInt16BE(0), 2)
  t.equal(decode(second.response).questions![0]!.name, 'CACHED.example')
  t.same(ttls(second.response), [48])
  t.equal(up!.seen.length, 1, 'upstream asked once')
  clock.ms += 48_000
  t.equal((await forwarder.resolve(makeQuery('cached.example', { id: 3 }))).source, 'upstream', 'expired after 60 s')
  t.equal(up!.seen.length, 2)
})

t.test('with a cache: NXDOMAIN is cached, SERVFAIL is not', async (t) => {
  const cache = new ForwardCache({ now: () => 0 })
  const nx: Reply = (query, _t, send) => send(makeResponse(query, { rcode: RCODE.NXDOMAIN, authorities: [soa('example', 300, 30)] }))
  const servfail: Reply = (query, _t, send) => send(makeResponse(query, { rcode: RCODE.SERVFAIL }))
  const { upstreams: [nxUp], forwarder } = await setup(t, [nx], { cache })
  await forwarder.resolve(makeQuery('missing.example', { id: 1 }))
  const r = await forwarder.resolve(makeQuery('missing.example', { id: 2 }))
  t.equal(r.source, 'cache')
  t.equal(rcodeOf(r.response), RCODE.NXDOMAIN)
  t.equal(r.response.readUInt16BE(0), 2)
  t.equal(nxUp!.seen.length, 1)

  const sfCache = new ForwardCache({ now: () => 0 })
  const { upstreams: [sfUp], forwarder: sf } = await setup(t, [servfail], { cache: sfCache })
  t.equal((await sf.resolve(makeQuery('broken.example'))).source, 'servfail')
  t.equal((await sf.resolve(makeQuery('broken.example'))).source, 'servfail')
  t.equal(sfUp!.seen.length, 2, 'asked again')
  t.equal(sfCache.size, 0)
})

t.test('concurrent queries share one socket and each gets its own answer', async (t) => {
  const echoName: Reply = (query, _t, send) => {
    const name = decode(query).questions![0]!.name
    const n = Number(/^h(\d+)\./.exec(name)?.[1] ?? 0)
    // Answer in reverse order of arrival to shake out any FIFO assumption.
    setTimeout(() => send(makeResponse(query, { answers: [a(name, `10.1.0.${n}`, 60)] })), 50 - n)
  }
  const { forwarder } = await setup(t, [echoName])
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => forwarder.resolve(makeQuery(`h${i}.example`, { id: 1000 + i }))))
  results.forEach((r, i) => {
    t.equal(r.response.readUInt16BE(0), 1000 + i)
    t.same(answerData(r.response), [`10.1.0.${i}`])
  })
  t.equal(forwarder.stats.udpSockets, 1)
})

t.test('setUpstreams switches resolvers and releases the old socket', async (t) => {
  const { upstreams: [one, two], forwarder } = await setup(t, [answerA, answerA])
  forwarder.setUpstreams([one!])
  await forwarder.resolve(makeQuery('a.example'))
  forwarder.setUpstreams([two!])
  const r = await forwarder.resolve(makeQuery('a.example'))
  t.equal(r.upstream, `127.0.0.1:${two!.port}`)
  t.equal(one!.seen.length, 1)
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(forwarder.stats.udpSockets, 1, 'only the socket to the current upstream')
})

t.test('close() settles queries in flight with SERVFAIL and releases every socket', async (t) => {
  const upstream = await fakeUpstream(silent)
  t.teardown(() => upstream.close())
  const forwarder = new Forwarder({ upstreams: [upstream], timeoutMs: 5000, log })
  const pending = forwarder.resolve(makeQuery('slow.example', { id: 9 }))
  await new Promise((resolve) => setTimeout(resolve, 20))
  const [, closeMs] = await timed(() => forwarder.close())
  const r = await pending
  t.equal(r.source, 'servfail')
  t.equal(r.response.readUInt16BE(0), 9)
  t.equal(forwarder.stats.udpSockets, 0)
  t.ok(closeMs < 1000)
})

t.test('bad queries and bad options have stable error codes', async (t) => {
  const forwarder = new Forwarder({ upstreams: [], log })
  await t.rejects(forwarder.resolve(Buffer.from([1, 2, 3])), { code: 'DNSD_ERR_BAD_QUERY' })
  const response = makeResponse(makeQuery('x.example'))
  await t.rejects(forwarder.resolve(response), { code: 'DNSD_ERR_BAD_QUERY' }, 'a response is not a query')
  await forwarder.close()
  t.throws(() => new Forwarder({ upstreams: [{ address: 'resolver.example', port: 53 }], log }), { code: 'DNSD_ERR_CONFIG' })
  t.throws(() => new Forwarder({ upstreams: [{ address: '127.0.0.1', port: 0 }], log }), { code: 'DNSD_ERR_CONFIG' })
  t.throws(() => new Forwarder({ upstreams: [], timeoutMs: -1, log }), { code: 'DNSD_ERR_CONFIG' })
})
