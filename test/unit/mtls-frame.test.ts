/** Framing: 4-byte big-endian length + JSON; bounded before buffering; a bad frame ends the reader. */
import t from 'tap'
import { encodeFrame, FrameReader } from '../../manager/api/frame.ts'

t.test('messages survive any chunking', async (t) => {
  const messages = [{ type: 'call', id: 1, method: 'a' }, { text: 'ünïcödé ✓' }, [1, 2, 3], 'x', null]
  const bytes = Buffer.concat(messages.map((m) => encodeFrame(m, 1024)))
  t.same(new FrameReader(1024).push(bytes), messages, 'all in one chunk')
  const reader = new FrameReader(1024)
  const out: unknown[] = []
  for (const byte of bytes) out.push(...reader.push(Buffer.from([byte])))
  t.same(out, messages, 'one byte at a time')
  t.equal(reader.buffered, 0)
})

t.test('the length counts bytes, not characters', async (t) => {
  const frame = encodeFrame('é', 1024)
  t.equal(frame.readUInt32BE(0), 4, '"é" is 4 bytes of JSON')
})

t.test('an oversize frame is refused from its header alone', async (t) => {
  const reader = new FrameReader(1024)
  const header = Buffer.alloc(4)
  header.writeUInt32BE(0xffff_fff0)
  t.throws(() => reader.push(header), { code: 'API_ERR_FRAME_TOO_LARGE', message: /4294967280 bytes exceeds the limit of 1024/ })
  t.equal(reader.buffered, 0, 'nothing kept')
  t.throws(() => reader.push(encodeFrame({}, 1024)), { code: 'API_ERR_PROTOCOL' }, 'a reader that failed stays failed')
  t.throws(() => encodeFrame('x'.repeat(2000), 1024), { code: 'API_ERR_FRAME_TOO_LARGE' }, 'nor is one sent')
})

t.test('empty frames and bytes that are not JSON are protocol errors', async (t) => {
  t.throws(() => new FrameReader(1024).push(Buffer.alloc(4)), { code: 'API_ERR_PROTOCOL', message: /empty frame/ })
  const bad = Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('{x}')])
  t.throws(() => new FrameReader(1024).push(bad), { code: 'API_ERR_PROTOCOL', message: /not valid JSON/ })
})

t.test('limits must be sane', async (t) => {
  t.throws(() => new FrameReader(0), { code: 'API_ERR_CONFIG' })
  t.throws(() => new FrameReader(2 ** 32), { code: 'API_ERR_CONFIG' })
})
