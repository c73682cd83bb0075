/**
 * Framing: each message is one JSON document preceded by its length in
 * bytes, a 4-byte unsigned big-endian integer. The limit is checked on the
 * length prefix, before any of the body is buffered, so an oversize frame
 * costs the receiver four bytes of memory, not four gigabytes.
 *
 * A reader that has thrown is done: after a bad frame the byte stream has no
 * trustworthy boundary left, so the connection must be closed.
 */
import { ApiError } from './errors.ts'

export const HEADER_BYTES = 4
/** Default bound on one frame's body: room for a large desired-state document. */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
/** What a 4-byte length can say. */
export const MAX_FRAME_LIMIT = 0xffff_ffff

/** One message as a frame; throws API_ERR_FRAME_TOO_LARGE past `maxFrameBytes`. */
export function encodeFrame (message: unknown, maxFrameBytes: number): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8')
  if (body.length > maxFrameBytes) {
    throw new ApiError('API_ERR_FRAME_TOO_LARGE', `message of ${body.length} bytes exceeds the frame limit of ${maxFrameBytes} bytes`)
  }
  const frame = Buffer.allocUnsafe(HEADER_BYTES + body.length)
  frame.writeUInt32BE(body.length, 0)
  body.copy(frame, HEADER_BYTES)
  return frame
}

/** Turns the chunks of a byte stream back into messages. */
export class FrameReader {
  readonly #maxFrameBytes: number
  readonly #chunks: Buffer[] = []
  #buffered = 0
  /** Body length announced by the last header, while its body is awaited. */
  #expected: number | undefined
  #failed = false

  constructor (maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    if (!(Number.isInteger(maxFrameBytes) && maxFrameBytes >= 1 && maxFrameBytes <= MAX_FRAME_LIMIT)) {
      throw new ApiError('API_ERR_CONFIG', `maxFrameBytes must be an integer from 1 to ${MAX_FRAME_LIMIT}, not ${maxFrameBytes}`)
    }
    this.#maxFrameBytes = maxFrameBytes
  }

  /** The messages completed by `chunk` (possibly none). Throws API_ERR_FRAME_TOO_LARGE or API_ERR_PROTOCOL. */
  push (chunk: Buffer): unknown[] {
    if (this.#failed) throw new ApiError('API_ERR_PROTOCOL', 'frame reader used after a bad frame')
    this.#chunks.push(chunk)
    this.#buffered += chunk.length
    const messages: unknown[] = []
    try {
      for (;;) {
        if (this.#expected === undefined) {
          if (this.#buffered < HEADER_BYTES) break
          const length = this.#take(HEADER_BYTES).readUInt32BE(0)
          if (length === 0) throw new ApiError('API_ERR_PROTOCOL', 'empty frame')
          if (length > this.#maxFrameBytes) {
            throw new ApiError('API_ERR_FRAME_TOO_LARGE', `frame of ${length} bytes exceeds the limit of ${this.#maxFrameBytes} bytes`)
          }
          this.#expected = length
        }
        if (this.#buffered < this.#expected) break
        const body = this.#take(this.#expected)
        this.#expected = undefined
        messages.push(parseBody(body))
      }
    } catch (error) {
      this.#failed = true
      this.#chunks.length = 0
      this.#buffered = 0
      throw error
    }
    return messages
  }

  /** Bytes received but not yet part of a whole frame. */
  get buffered (): number {
    return this.#buffered
  }

  /** The next `count` buffered bytes; copies only when they span chunks. */
  #take (count: number): Buffer {
    let result: Buffer
    const first = this.#chunks[0]!
    if (first.length >= count) {
      result = first.subarray(0, count)
      if (first.length === count) this.#chunks.shift()
      else this.#chunks[0] = first.subarray(count)
    } else {
      result = Buffer.allocUnsafe(count)
      let filled = 0
      while (filled < count) {
        const chunk = this.#chunks[0]!
        const used = Math.min(chunk.length, count - filled)
        chunk.copy(result, filled, 0, used)
        filled += used
        if (used === chunk.length) this.#chunks.shift()
        else this.#chunks[0] = chunk.subarray(used)
      }
    }
    this.#buffered -= count
    return result
  }
}

function parseBody (body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    throw new ApiError('API_ERR_PROTOCOL', 'frame is not valid JSON')
  }
}
