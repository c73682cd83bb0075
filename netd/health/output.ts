/**
 * Probe output, kept to HEALTH_OUTPUT_BYTES. A check may print megabytes (a
 * `curl -v`, a stack trace): only the first bytes are kept, as Docker keeps
 * the first 4 KiB, and the rest is read and dropped so the probe never
 * blocks on a full pipe. Pure: no streams here, only chunks.
 */
import { HEALTH_OUTPUT_BYTES } from './health-spec.ts'

/** True for the second, third and fourth bytes of a UTF-8 sequence. */
function isContinuationByte (byte: number): boolean {
  return (byte & 0xc0) === 0x80
}

/**
 * The longest prefix of `bytes` that is at most `maxBytes` long and does not end inside a UTF-8
 * sequence, decoded: a cut never leaves a replacement character behind.
 */
export function decodeTruncated (bytes: Uint8Array, maxBytes: number = HEALTH_OUTPUT_BYTES): string {
  if (bytes.length <= maxBytes) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8')
  let end = maxBytes
  // Back up to the first byte of the sequence the cut falls in, and drop that sequence whole.
  while (end > 0 && isContinuationByte(bytes[end] as number)) end--
  return Buffer.from(bytes.buffer, bytes.byteOffset, end).toString('utf8')
}

/** `text` kept to at most `maxBytes` of UTF-8. */
export function truncateOutput (text: string, maxBytes: number = HEALTH_OUTPUT_BYTES): string {
  // A string of n UTF-16 units is at most 3n bytes of UTF-8: most outputs need no encoding at all.
  if (text.length * 3 <= maxBytes) return text
  return decodeTruncated(Buffer.from(text, 'utf8'), maxBytes)
}

/** Collects the first `maxBytes` of what a probe prints (stdout and stderr interleaved, as written). */
export class BoundedOutput {
  readonly #maxBytes: number
  readonly #chunks: Buffer[] = []
  #kept = 0

  constructor (maxBytes: number = HEALTH_OUTPUT_BYTES) {
    this.#maxBytes = maxBytes
  }

  /** Keeps what fits; one byte more than the limit is kept so decodeTruncated can tell where a character ends. */
  push (chunk: Buffer): void {
    const room = this.#maxBytes + 1 - this.#kept
    if (room <= 0) return
    const kept = chunk.length <= room ? chunk : chunk.subarray(0, room)
    this.#chunks.push(kept)
    this.#kept += kept.length
  }

  text (): string {
    return decodeTruncated(Buffer.concat(this.#chunks), this.#maxBytes)
  }
}
