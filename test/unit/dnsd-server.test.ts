/**
 * DnsServer with its real collaborators: a forwarder and cache in front of a
 * fake upstream on 127.0.0.1, the rate limiter, the query counters, and
 * sockets on port 0 adopted the way `dnsd serve` adopts them. Nothing leaves
 * loopback.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { connect, createServer, type Server } from 'node:net'
import { join } from 'node:path'
import dnsPacket from 'dns-packet'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import t from 'tap'
import { createDnsServer } from '../../dnsd/create-server.ts'
import { ForwardCache } from '../../dnsd/forward-cache.ts'
import { Forwarder } from '../../dnsd/forwarder.ts'
import { createDnsMetrics } from '../../dnsd/metrics.ts'
import { RateLimiter } from '../../dnsd/rate-limit.ts'
import { DnsServer } from '../../dnsd/server.ts'
import { decode, edns, fixture, query } from '../helpers/dnsd.ts'
import { a, makeResponse } from './dnsd-forward-fixtures.ts'

const log = pino({ level: 'silent' })

/** An upstream answering every A question with `count` addresses, over UDP; counts what it is asked. */
async function fakeUpstream (t: { teardown (fn: () => unknown): void }, count: number): Promise<{ port: number, asked: () => number }> {
  const socket = createSocket('udp4')
  let asked = 0
  socket.on('message', (message, peer) => {
    asked++
    const name = dnsPacket.decode(message).questions![0]!.name
    const answers = Array.from({ length: count }, (_, i) => a(name, `192.0.2.${i + 1}`, 60))
    socket.send(makeResponse(message, { answers }), peer.port, peer.address)
  })
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => socket.close(() => resolve())))
  return { port: socket.address().port, asked: () => asked }
}

async function setup (t: { teardown (fn: () => unknown): void }, options: { answers?: number, rate?: number } = {}) {
  const upstream = await fakeUpstream(t, options.answers ?? 1)
  const registry = new Registry()
  const forwarder = new Forwarder({ upstreams: [{ address: '127.0.0.1', port: upstream.port }], cache: new ForwardCache(), log })
  const rate = options.rate ?? 1_000_000
  const server = new DnsServer({ forwarder, limiter: new RateLimiter({ ratePerSecond: rate, burst: rate }), metrics: createDnsMetrics(registry), log }, fixture())
  t.teardown(() => server.close())
  const counted = async (outcome: string, transport = 'udp'): Promise<number> => {
    const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === 'weft_dnsd_queries_total')
    return metric?.values.find((v) => v.labels.outcome === outcome && v.labels.transport === transport)?.value ?? 0
  }
  return { server, upstream, counted }
}

t.test('local names answered at once; a dnsrr name rotates from one query to the next', async (t) => {
  const { server, counted } = await setup(t)
  const firsts = new Set<unknown>()
  for (let i = 0; i < 3; i++) {
    const reply = decode((await server.resolve('w1', query('api'), 'udp'))!)
    t.equal(reply.answers?.length, 3)
    firsts.add((reply.answers![0] as { data: unknown }).data)
  }
  t.equal(firsts.size, 3, 'each query starts at the next address')
  t.equal(await counted('local'), 3)
})

t.test('a forwarded name: upstream once, then from the cache, with the ID and spelling the client sent', async (t) => {
  const { server, upstream, counted } = await setup(t)
  const first = decode((await server.resolve('c1', query('www.example.org', 'A', {}, 1), 'udp'))!)
  const second = decode((await server.resolve('c1', query('WWW.example.org', 'A', {}, 2), 'udp'))!)
  t.equal(upstream.asked(), 1, 'the second answer came from the cache')
  t.equal(second.id, 2)
  t.equal(second.questions?.[0]?.name, 'WWW.example.org', 'the question as the client spelled it')
  t.same(second.answers?.map((r) => (r as { data: unknown }).data), first.answers?.map((r) => (r as { data: unknown }).data))
  t.equal(await counted('forwarded'), 1)
  t.equal(await counted('cached'), 1)
})

t.test('a cached answer too big for the client\'s UDP size is truncated; over TCP it is whole', async (t) => {
  const { server } = await setup(t, { answers: 60 })
  const big = decode((await server.resolve('c1', query('many.example', 'A', edns(4096)), 'udp'))!)
  t.equal(big.answers?.length, 60, 'fetched with a 4096-byte EDNS size')
  const classic = (await server.resolve('c1', query('many.example'), 'udp'))!
  t.ok(classic.length <= 512)
  t.not((decode(classic).flags ?? 0) & dnsPacket.TRUNCATED_RESPONSE, 0, 'TC: no EDNS0, 512 bytes')
  t.equal(decode((await server.resolve('c1', query('many.example'), 'tcp'))!).answers?.length, 60)
})

t.test('over the rate limit: no answer, counted', async (t) => {
  const { server, counted } = await setup(t, { rate: 2 })
  const answered = await Promise.all(Array.from({ length: 5 }, async () => await server.resolve('c1', query('web'), 'udp')))
  t.equal(answered.filter((r) => r !== null).length, 2, 'the burst')
  t.equal(await counted('rate_limited'), 3)
})

t.test('adopted sockets on port 0: answers over UDP and TCP', async (t) => {
  const { server } = await setup(t)
  const udp = createSocket('udp4')
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve))
  const tcp: Server = createServer()
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve))
  server.adopt('c1', 'test', udp, tcp)

  const client: UdpSocket = createSocket('udp4')
  t.teardown(() => client.close())
  const overUdp = await new Promise<Buffer>((resolve) => {
    client.once('message', resolve)
    client.send(query('web', 'A', {}, 77), udp.address().port, '127.0.0.1')
  })
  t.equal(decode(overUdp).id, 77)
  t.same(decode(overUdp).answers?.map((r) => (r as { data: unknown }).data), ['10.0.1.100'])

  const overTcp = await new Promise<Buffer>((resolve, reject) => {
    const socket = connect((tcp.address() as { port: number }).port, '127.0.0.1')
    const message = query('tasks.web', 'A', {}, 78)
    const frame = Buffer.alloc(2 + message.length)
    frame.writeUInt16BE(message.length, 0)
    message.copy(frame, 2)
    let got = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk])
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) { socket.destroy(); resolve(got.subarray(2)) }
    })
    socket.on('error', reject)
    socket.write(frame)
  })
  t.equal(decode(overTcp).id, 78)
  t.equal(decode(overTcp).answers?.length, 2)
})

t.test('createDnsServer registers the server\'s and the forwarder\'s metrics on the caller\'s registry', async (t) => {
  const dir = t.testdir({ 'resolv.conf': 'nameserver 127.0.0.1\n' })
  const registry = new Registry()
  const { server } = await createDnsServer({ resolvConfPath: join(dir, 'resolv.conf'), registry, log }, fixture())
  t.teardown(() => server.close())
  const names = (await registry.getMetricsAsJSON()).map((m) => m.name)
  for (const name of ['weft_dnsd_queries_total', 'weft_dnsd_forward_results_total', 'weft_dnsd_forward_attempts_total', 'weft_dnsd_forward_cache_entries']) {
    t.ok(names.includes(name), name)
  }
})
