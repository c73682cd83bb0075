/**
 * The manager API over mutual TLS on 127.0.0.1: who may connect, who may
 * call what, calls, errors, timeouts, server-push streams, and a peer that
 * sends an oversize or malformed frame (its connection closes, the server
 * goes on).
 */
import t from 'tap'
import tls from 'node:tls'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { z } from 'zod'
import { bootstrapCluster } from '../../manager/ca/bootstrap.ts'
import { CaError } from '../../manager/ca/errors.ts'
import { issueNodeCredentials, type NodeCredentials } from '../../manager/ca/root-ca.ts'
import { ApiError } from '../../manager/api/errors.ts'
import { encodeFrame, FrameReader } from '../../manager/api/frame.ts'
import { connectNode, connectPinned, MtlsServer } from '../../manager/api/mtls.ts'

const NOW = new Date()
const DAY = 24 * 3600 * 1000
const cluster = await bootstrapCluster({ now: NOW, nodeId: 'manager1' })
const ca = cluster.rootCa
const worker = await issueNodeCredentials(ca, { nodeId: 'worker1', role: 'worker', clusterId: ca.clusterId }, { now: NOW })
const manager2 = await issueNodeCredentials(ca, { nodeId: 'manager2', role: 'manager', clusterId: ca.clusterId }, { now: NOW })
const expired = await issueNodeCredentials(ca, { nodeId: 'old1', role: 'worker', clusterId: ca.clusterId }, { now: new Date(NOW.getTime() - 100 * DAY) })
const foreign = await bootstrapCluster({ now: NOW, nodeId: 'intruder' })

const unsubscribed: string[] = []
const server = new MtlsServer({ credentials: cluster.credentials, maxFrameBytes: 64 * 1024 })
server.handle('echo', (params) => params)
server.handle('whoami', (_params, peer) => peer)
server.handle('nodes.remove', () => 'removed', { allow: ['manager'] })
server.handle('add', ({ a, b }) => a + b, { params: z.strictObject({ a: z.number(), b: z.number() }) })
server.handle('fail.coded', () => { throw new CaError('CA_ERR_INVALID', 'a coded failure\nwith a second line') })
server.handle('fail.internal', () => { throw new Error('secret internals') })
server.handle('hang', async () => await new Promise(() => {}))
server.handle('big', () => 'x'.repeat(100 * 1024))
server.stream<{ count: number }>('ticks', async ({ count }, _peer, push) => {
  for (let i = 1; i <= count; i++) push({ tick: i })
}, { params: z.strictObject({ count: z.number().int() }) })
server.stream('forever', async (_params, peer, push, signal) => {
  push({ hello: peer.kind === 'node' ? peer.nodeId : 'anonymous' })
  await once(signal, 'abort')
  unsubscribed.push(peer.kind === 'node' ? peer.nodeId : 'anonymous')
})
server.stream('broken', async (_params, _peer, push) => {
  push('one')
  throw new ApiError('API_ERR_BUSY', 'the stream gave up')
})
const { port } = await server.listen(0, '127.0.0.1')
t.teardown(async () => await server.close())

async function as (credentials: NodeCredentials): Promise<Awaited<ReturnType<typeof connectNode>>> {
  const client = await connectNode({ host: '127.0.0.1', port, credentials })
  t.teardown(async () => await client.close())
  return client
}

t.test('a node calls and the manager knows who it is', async (t) => {
  const client = await as(worker)
  t.same(await client.call('echo', { x: [1, 'two'] }), { x: [1, 'two'] })
  t.match(await client.call('whoami'), { kind: 'node', nodeId: 'worker1', role: 'worker' })
  t.equal(await client.call('add', { a: 2, b: 3 }), 5)
  const answers = await Promise.all([1, 2, 3, 4, 5].map(async (n) => await client.call('echo', n)))
  t.same(answers, [1, 2, 3, 4, 5], 'concurrent calls are matched to their answers')
})

t.test('a worker certificate is refused on a manager-only method; a manager\'s is not', async (t) => {
  const w = await as(worker)
  await t.rejects(w.call('nodes.remove'), { code: 'API_ERR_FORBIDDEN', message: 'nodes.remove is for managers; node worker1 is a worker' })
  const m = await as(manager2)
  t.equal(await m.call('nodes.remove'), 'removed')
})

t.test('a client without a certificate may not call node methods', async (t) => {
  const { client } = await connectPinned({ host: '127.0.0.1', port, caDigest: ca.digest })
  t.teardown(async () => await client.close())
  await t.rejects(client.call('echo', 1), { code: 'API_ERR_UNAUTHENTICATED', message: 'echo needs a node certificate: join the swarm first' })
  await t.rejects(client.subscribe('forever', {}, () => {}), { code: 'API_ERR_UNAUTHENTICATED' })
  await t.rejects(client.call('nodes.remove'), { code: 'API_ERR_UNAUTHENTICATED' })
})

t.test('a certificate from another CA is refused with the reason', async (t) => {
  const refusedBefore = server.stats.refused
  // Trusts this swarm's manager, but presents a certificate of another swarm.
  const client = await as({ caCertPem: ca.certPem, certPem: foreign.credentials.certPem, keyPem: foreign.credentials.keyPem })
  await t.rejects(client.call('echo', 1), { code: 'API_ERR_UNAUTHENTICATED', message: /client certificate refused: not issued by this swarm's CA/ })
  await client.closed
  t.equal(client.failure?.code, 'API_ERR_UNAUTHENTICATED', 'the manager\'s reason, not the socket error that followed')
  t.equal(server.stats.refused, refusedBefore + 1)
})

t.test('an expired certificate is refused with the reason', async (t) => {
  const client = await as(expired)
  await t.rejects(client.call('echo', 1), { code: 'API_ERR_UNAUTHENTICATED', message: /expired/ })
})

t.test('a node of another swarm does not trust this manager', async (t) => {
  await t.rejects(connectNode({ host: '127.0.0.1', port, credentials: foreign.credentials }), { code: 'API_ERR_MANAGER_UNTRUSTED', message: /does not trust/ })
})

t.test('only a manager serves the API', async (t) => {
  t.throws(() => new MtlsServer({ credentials: worker }), { code: 'API_ERR_CONFIG', message: /a worker's/ })
  t.throws(() => new MtlsServer({ credentials: { ...cluster.credentials, caCertPem: foreign.rootCa.certPem } }), { code: 'API_ERR_CONFIG' })
  t.throws(() => new MtlsServer({ credentials: cluster.credentials, maxFrameBytes: 10 }), { code: 'API_ERR_CONFIG', message: /maxFrameBytes/ })
})

t.test('errors cross the wire as code and one line; other failures stay in the manager', async (t) => {
  const client = await as(worker)
  await t.rejects(client.call('fail.coded'), { code: 'CA_ERR_INVALID', message: 'a coded failure' })
  const internal = await client.call('fail.internal').catch((error: ApiError) => error)
  t.match(internal, { code: 'API_ERR_INTERNAL' })
  t.notMatch((internal as Error).message, /secret internals/)
  await t.rejects(client.call('no.such.method'), { code: 'API_ERR_UNKNOWN_METHOD' })
  await t.rejects(client.call('ticks', { count: 1 }), { code: 'API_ERR_UNKNOWN_METHOD', message: /subscribe to it/ })
  await t.rejects(client.call('add', { a: 1 }), { code: 'API_ERR_INVALID_PARAMS', message: /b:/ })
  await t.rejects(client.call('big'), { code: 'API_ERR_FRAME_TOO_LARGE' }, 'an answer too large to frame becomes an error')
  t.equal(await client.call('echo', 'still here'), 'still here', 'the connection survives them all')
})

t.test('a call that gets no answer times out', async (t) => {
  const client = await as(worker)
  await t.rejects(client.call('hang', undefined, { timeoutMs: 100 }), { code: 'API_ERR_TIMEOUT', message: 'no answer to hang within 100 ms' })
  t.equal(await client.call('echo', 1), 1)
})

t.test('a request too large to send is refused before it is sent', async (t) => {
  const client = await as(worker)
  const small = await connectNode({ host: '127.0.0.1', port, credentials: worker, maxFrameBytes: 1024 })
  t.teardown(async () => await small.close())
  await t.rejects(small.call('echo', 'x'.repeat(2000)), { code: 'API_ERR_FRAME_TOO_LARGE' })
  t.equal(await small.call('echo', 'ok'), 'ok')
  t.equal(await client.call('echo', 'ok'), 'ok')
})

t.test('subscribe: events in order, then the end', async (t) => {
  const client = await as(worker)
  const events: unknown[] = []
  const subscription = await client.subscribe('ticks', { count: 5 }, (event) => events.push(event))
  await subscription.done
  t.same(events, [1, 2, 3, 4, 5].map((tick) => ({ tick })))
  await t.rejects(client.subscribe('ticks', { count: 'many' }, () => {}), { code: 'API_ERR_INVALID_PARAMS' })
  await t.rejects(client.subscribe('echo', {}, () => {}), { code: 'API_ERR_UNKNOWN_METHOD', message: /is a call/ })
})

t.test('unsubscribe aborts the manager\'s handler', async (t) => {
  const client = await as(manager2)
  const events: unknown[] = []
  const subscription = await client.subscribe('forever', {}, (event) => events.push(event))
  for (let i = 0; i < 100 && events.length === 0; i++) await sleep(5)
  t.same(events, [{ hello: 'manager2' }])
  subscription.unsubscribe()
  await subscription.done
  for (let i = 0; i < 100 && !unsubscribed.includes('manager2'); i++) await sleep(5)
  t.ok(unsubscribed.includes('manager2'), 'the handler saw the abort')
})

t.test('a stream that fails ends with its error', async (t) => {
  const client = await as(worker)
  const events: unknown[] = []
  const subscription = await client.subscribe('broken', {}, (event) => events.push(event))
  await t.rejects(subscription.done, { code: 'API_ERR_BUSY', message: 'the stream gave up' })
  t.same(events, ['one'])
})

t.test('a lost connection ends streams with API_ERR_CLOSED and aborts their handlers', async (t) => {
  const client = await connectNode({ host: '127.0.0.1', port, credentials: worker })
  const before = unsubscribed.length
  const subscription = await client.subscribe('forever', {}, () => {})
  const pending = t.rejects(client.call('hang', undefined, { timeoutMs: 5000 }), { code: 'API_ERR_CLOSED' })
  await client.close()
  await subscription.done // a local close ends the stream normally
  await pending
  await t.rejects(client.call('echo', 1), { code: 'API_ERR_CLOSED' }, 'a closed client refuses new calls')
  for (let i = 0; i < 100 && unsubscribed.length === before; i++) await sleep(5)
  t.equal(unsubscribed.length, before + 1)
})

/** A raw TLS connection with a worker certificate, to send bytes no RpcClient would. */
async function raw (): Promise<{ socket: tls.TLSSocket, messages: unknown[], closed: Promise<unknown> }> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca: [ca.certPem], cert: worker.certPem, key: worker.keyPem, checkServerIdentity: () => undefined })
  await once(socket, 'secureConnect')
  const reader = new FrameReader(1024 * 1024)
  const messages: unknown[] = []
  socket.on('data', (chunk: Buffer) => messages.push(...reader.push(chunk)))
  socket.on('error', () => {})
  return { socket, messages, closed: once(socket, 'close') }
}

t.test('an oversize frame closes that connection, and the server goes on', async (t) => {
  const { socket, messages, closed } = await raw()
  const header = Buffer.alloc(4)
  header.writeUInt32BE(0x7fff_ffff)
  socket.write(header)
  await closed
  t.same(messages, [{ type: 'error', id: null, error: { code: 'API_ERR_FRAME_TOO_LARGE', message: 'frame of 2147483647 bytes exceeds the limit of 65536 bytes' } }])
  const client = await as(worker)
  t.equal(await client.call('echo', 'alive'), 'alive')
})

t.test('a frame just over the limit, sent whole, is refused the same way', async (t) => {
  const { socket, messages, closed } = await raw()
  socket.write(encodeFrame({ type: 'call', id: 1, method: 'echo', params: 'x'.repeat(70 * 1024) }, 1024 * 1024), () => {})
  await closed
  t.match(messages, [{ type: 'error', id: null, error: { code: 'API_ERR_FRAME_TOO_LARGE' } }])
})

t.test('a malformed request closes that connection with API_ERR_PROTOCOL', async (t) => {
  const { socket, messages, closed } = await raw()
  socket.write(encodeFrame({ type: 'call', id: -1, method: 'echo' }, 1024))
  await closed
  t.match(messages, [{ type: 'error', id: null, error: { code: 'API_ERR_PROTOCOL', message: /malformed request/ } }])
})

t.test('a reused request id is refused, the connection kept', async (t) => {
  const { socket, messages } = await raw()
  t.teardown(() => socket.destroy())
  socket.write(encodeFrame({ type: 'call', id: 7, method: 'hang' }, 1024))
  socket.write(encodeFrame({ type: 'call', id: 7, method: 'echo', params: 1 }, 1024))
  socket.write(encodeFrame({ type: 'call', id: 8, method: 'echo', params: 2 }, 1024))
  for (let i = 0; i < 100 && messages.length < 2; i++) await sleep(5)
  t.match(messages, [{ type: 'error', id: 7, error: { code: 'API_ERR_PROTOCOL', message: /already in use/ } }, { type: 'result', id: 8, result: 2 }])
})

t.test('server close ends connections; clients see it', async (t) => {
  const other = new MtlsServer({ credentials: cluster.credentials })
  other.handle('hang', async () => await new Promise(() => {}))
  const address = await other.listen(0, '127.0.0.1')
  const client = await connectNode({ host: '127.0.0.1', port: address.port, credentials: worker })
  const pending = t.rejects(client.call('hang'), { code: 'API_ERR_CLOSED' })
  await sleep(20)
  await other.close()
  await pending
  await client.closed
})

t.test('limits: calls in flight per connection, anonymous lifetime, a peer that does not read', async (t) => {
  const limited = new MtlsServer({ credentials: cluster.credentials, maxPending: 2, anonymousTimeoutMs: 100, maxFrameBytes: 1024, maxBufferedBytes: 4096 })
  limited.handle('hang', async () => await new Promise(() => {}))
  limited.stream('flood', (_params, _peer, push) => {
    for (let i = 0; i < 10_000; i++) push('y'.repeat(500))
  })
  const address = await limited.listen(0, '127.0.0.1')
  t.teardown(async () => await limited.close())

  const client = await connectNode({ host: '127.0.0.1', port: address.port, credentials: worker })
  t.teardown(async () => await client.close())
  const hanging = [client.call('hang', undefined, { timeoutMs: 60_000 }), client.call('hang', undefined, { timeoutMs: 60_000 })]
  for (const call of hanging) call.catch(() => {})
  await t.rejects(client.call('hang'), { code: 'API_ERR_BUSY' })

  const { client: anonymous } = await connectPinned({ host: '127.0.0.1', port: address.port, caDigest: ca.digest })
  await anonymous.closed
  t.match(anonymous.failure, { code: 'API_ERR_TIMEOUT', message: /without a node certificate may last 100 ms/ })

  const socket = tls.connect({ host: '127.0.0.1', port: address.port, ca: [ca.certPem], cert: worker.certPem, key: worker.keyPem, checkServerIdentity: () => undefined })
  socket.on('error', () => {})
  await once(socket, 'secureConnect')
  socket.pause() // reads nothing from here on
  for (let i = 0; i < 200 && limited.stats.connections < 3; i++) await sleep(10) // the manager has seen it too
  const openBefore = limited.stats.open
  t.equal(openBefore, 2, 'the worker\'s client and the silent peer')
  socket.write(encodeFrame({ type: 'subscribe', id: 1, method: 'flood' }, 1024))
  for (let i = 0; i < 200 && limited.stats.open >= openBefore; i++) await sleep(10)
  t.equal(limited.stats.open, openBefore - 1, 'the manager cut the connection instead of buffering 5 MB for it')
  socket.destroy()
})
