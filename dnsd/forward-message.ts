/**
 * Pure byte edits the forwarder and its cache make on DNS messages: give a
 * response the client's ID and question bytes back, and build SERVFAIL from a
 * query. Inputs have already been walked (rr-walk.ts), so offsets are trusted.
 */
import type { WalkedMessage } from './rr-walk.ts'
import { HEADER_LENGTH, RCODE, TYPE_OPT } from './wire.ts'

// The UDP payload size dnsd advertises in the OPT of answers it builds: the
// DNS Flag Day 2020 value, safe from fragmentation on any path.
export const ADVERTISED_UDP_PAYLOAD = 1232

/** A copy of `message` with `id` in its header. */
export function withId (message: Buffer, id: number): Buffer {
  const copy = Buffer.from(message)
  copy.writeUInt16BE(id, 0)
  return copy
}

/**
 * In place: the client's ID and, when the layouts allow it, its exact question
 * bytes (so 0x20-style mixed case comes back as sent, also from a cache entry
 * stored under another spelling). Names in answers compressed against the
 * question then read as the client spelled them, as from any resolver.
 */
export function restoreClientView (response: Buffer, walked: WalkedMessage, query: Buffer, queryWalked: WalkedMessage): Buffer {
  const q = queryWalked.question
  return q === null || q.compressed
    ? restoreClient(response, walked, query, queryWalked.id, -1, -1)
    : restoreClient(response, walked, query, queryWalked.id, q.start, q.end)
}

/**
 * `restoreClientView` for a query known only by its ID and the bounds of its
 * uncompressed question, query[start, end) (-1: none to copy): the cache's
 * hot path, which does not walk queries.
 */
export function restoreClient (response: Buffer, walked: WalkedMessage, query: Buffer, id: number, start: number, end: number): Buffer {
  response.writeUInt16BE(id, 0)
  const r = walked.question
  if (start >= 0 && r !== null && !r.compressed && r.end - r.start === end - start) query.copy(response, r.start, start, end)
  return response
}

/**
 * SERVFAIL for a query every upstream failed: same ID, opcode, question, RD
 * and CD; RA set (we do recurse, it just failed). When the query carried EDNS
 * the answer does too (RFC 6891 §7), echoing DO.
 */
export function buildServfail (query: Buffer, walked: WalkedMessage): Buffer {
  const q = walked.question
  const questionBytes = q === null ? Buffer.alloc(0) : query.subarray(q.start, q.end)
  const optLength = walked.opt === null ? 0 : 11
  const out = Buffer.alloc(HEADER_LENGTH + questionBytes.length + optLength)
  const flags = 0x8000 | (walked.opcode << 11) | (walked.rd ? 0x0100 : 0) | 0x0080 | (walked.cd ? 0x0010 : 0) | RCODE.SERVFAIL
  out.writeUInt16BE(walked.id, 0)
  out.writeUInt16BE(flags, 2)
  out.writeUInt16BE(q === null ? 0 : 1, 4)
  out.writeUInt16BE(walked.opt === null ? 0 : 1, 10)
  questionBytes.copy(out, HEADER_LENGTH)
  if (walked.opt !== null) {
    const at = HEADER_LENGTH + questionBytes.length
    out[at] = 0 // root owner
    out.writeUInt16BE(TYPE_OPT, at + 1)
    out.writeUInt16BE(ADVERTISED_UDP_PAYLOAD, at + 3)
    out.writeUInt32BE(walked.opt.dnssecOk ? 0x8000 : 0, at + 5)
    out.writeUInt16BE(0, at + 9)
  }
  return out
}
