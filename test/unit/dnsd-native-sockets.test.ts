/**
 * dnsd's native sockets on loopback (no namespace: test/e2e/dns.test.ts
 * binds them inside task namespaces): batches answered in order and in full,
 * replies sent later, datagrams too big for a slot dropped, errors named.
 */
import { createSocket, type Socket } from 'node:dgram'
import t from 'tap'
import { BatchUdpSocket, SLOT_BYTES, bindInNamespace, closeDescriptor, localPort } from '../../dnsd/native-sockets.ts'
import { DnsdError } from '../../dnsd/errors.ts'

async function client (t: { teardown (fn: () => unknown): void }): Promise<{ socket: Socket, replies: Buffer[], next: () => Promise<Buffer> }> {
  const socket = createSocket('udp4')
  const replies: Buffer[] = []
  const waiting: Array<(reply: Buffer) => void> = []
  socket.on('message', (reply) => {
    const wake = waiting.shift()
    if (wake) wake(reply)
    else replies.push(reply)
  })
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => socket.close(() => resolve())))
  const next = async (): Promise<Buffer> => replies.shift() ?? await new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reply within 5 s')), 5000)
    waiting.push((reply) => { clearTimeout(timer); resolve(reply) })
  })
  return { socket, replies, next }
}

t.test('every datagram of a burst is answered, each to its sender', async (t) => {
  const fd = bindInNamespace(null, 'udp', '127.0.0.1', 0)
  const port = localPort(fd)
  const seen: number[] = []
  const server = new BatchUdpSocket(fd, (query, peer) => {
    seen.push(peer.port)
    return Buffer.concat([Buffer.from('re:'), query])
  }, (error) => t.fail(String(error)))
  t.teardown(() => server.close())
  const { socket, next } = await client(t)
  // Within the receive buffers (212,992 bytes here: 256 small datagrams): a longer burst is dropped by the kernel, dgram or not.
  const count = 100
  for (let i = 0; i < count; i++) socket.send(`q${i}`, port, '127.0.0.1')
  const got = new Set<string>()
  for (let i = 0; i < count; i++) got.add((await next()).toString())
  t.equal(got.size, count)
  t.ok(got.has('re:q0') && got.has(`re:q${count - 1}`))
  t.ok(seen.every((p) => p === socket.address().port), 'the handler is told the sender')
})

t.test('a reply returned as null is not sent; one sent later with send() arrives', async (t) => {
  const fd = bindInNamespace(null, 'udp', '127.0.0.1', 0)
  const port = localPort(fd)
  const server = new BatchUdpSocket(fd, (query, peer) => {
    const copy = Buffer.from(query) // the view is reused by the next batch
    setTimeout(() => server.send(Buffer.concat([Buffer.from('late:'), copy]), peer), 20)
    return null
  }, (error) => t.fail(String(error)))
  t.teardown(() => server.close())
  const { socket, next } = await client(t)
  socket.send('slow', port, '127.0.0.1')
  t.equal((await next()).toString(), 'late:slow')
})

t.test('a datagram longer than a slot is dropped, the next one answered; a throwing handler does not stop the socket', async (t) => {
  const fd = bindInNamespace(null, 'udp', '127.0.0.1', 0)
  const port = localPort(fd)
  const errors: unknown[] = []
  const server = new BatchUdpSocket(fd, (query) => {
    if (query.toString() === 'boom') throw new Error('boom')
    return Buffer.from(`len ${query.length}`)
  }, (error) => errors.push(error))
  t.teardown(() => server.close())
  const { socket, next } = await client(t)
  socket.send(Buffer.alloc(SLOT_BYTES + 100, 1), port, '127.0.0.1')
  socket.send('boom', port, '127.0.0.1')
  socket.send(Buffer.alloc(SLOT_BYTES, 2), port, '127.0.0.1')
  t.equal((await next()).toString(), `len ${SLOT_BYTES}`, 'only the datagram that fits is answered')
  t.equal(errors.length, 1)
})

t.test('closing stops the service and frees the port', async (t) => {
  const fd = bindInNamespace(null, 'udp', '127.0.0.1', 0)
  const port = localPort(fd)
  const server = new BatchUdpSocket(fd, () => Buffer.from('x'), () => {})
  server.close()
  server.close()
  const again = bindInNamespace(null, 'udp', '127.0.0.1', port)
  t.ok(again >= 0, 'the port can be bound again')
  closeDescriptor(again)
})

t.test('binding errors name what could not be bound', async (t) => {
  const fd = bindInNamespace(null, 'udp', '127.0.0.1', 0)
  t.teardown(() => closeDescriptor(fd))
  t.throws(() => bindInNamespace(null, 'udp', '127.0.0.1', localPort(fd)), { name: DnsdError.name, message: /cannot bind UDP 127\.0\.0\.1:\d+: bind: Address already in use/ })
  t.throws(() => bindInNamespace('/run/netns/weft-no-such-namespace', 'tcp', '127.0.0.11', 53), { message: /in \/run\/netns\/weft-no-such-namespace: .*No such file/ })
  t.throws(() => bindInNamespace(null, 'udp', 'not-an-address', 53), { message: /not an IPv4 address/ })
})
