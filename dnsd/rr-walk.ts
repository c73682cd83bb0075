/**
 * A minimal, allocation-light reader of DNS messages for the forwarding path:
 * header, the question, and where every RR's TTL field sits, without decoding
 * RDATA (only SOA, for the negative-caching TTL of RFC 2308, and OPT).
 *
 * It reads untrusted bytes (clients and upstreams), so every read is bounds
 * checked and compression pointers must point strictly backwards (before the
 * start of the segment being read): that alone makes loops impossible, and the
 * jump counter is a second bound. Anything that does not walk cleanly yields
 * null; callers treat that as "malformed" and never throw.
 */

import { HEADER_LENGTH, MAX_NAME_WIRE_LENGTH, TYPE_OPT } from './wire.ts'

const MAX_POINTER_JUMPS = 127
const TYPE_SOA = 6

export interface WalkedName {
  /** Lower-cased presentation form without the trailing dot ('' is the root). */
  readonly name: string
  /** Offset just after the name's bytes in place (after a pointer, if any). */
  readonly end: number
  /** Whether the in-place bytes end with a compression pointer. */
  readonly compressed: boolean
}

export interface WalkedQuestion {
  readonly name: string
  readonly type: number
  readonly class: number
  /** Offsets of the question entry: [start, end) covers name, type and class. */
  readonly start: number
  readonly end: number
  readonly compressed: boolean
}

export interface WalkedOpt {
  readonly udpPayload: number
  readonly extendedRcode: number
  readonly version: number
  readonly dnssecOk: boolean
}

export interface WalkedMessage {
  readonly id: number
  readonly qr: boolean
  readonly opcode: number
  readonly tc: boolean
  readonly rd: boolean
  readonly cd: boolean
  /** The 4-bit header RCODE (the OPT record may extend it). */
  readonly rcode: number
  readonly qdcount: number
  readonly ancount: number
  readonly nscount: number
  readonly arcount: number
  /** The first question, or null when QDCOUNT is 0. */
  readonly question: WalkedQuestion | null
  /** Offsets of the 32-bit TTL field of every RR except OPT (whose "TTL" carries flags). */
  readonly ttlOffsets: readonly number[]
  /** Smallest TTL among answer RRs, null without answers. */
  readonly minAnswerTtl: number | null
  /** RFC 2308 negative TTL: min(SOA TTL, SOA MINIMUM) of the first SOA in authority, or null. */
  readonly negativeTtl: number | null
  readonly opt: WalkedOpt | null
}

// DNS names compare case-insensitively in ASCII only (RFC 4343); other bytes
// are escaped so distinct names never share a key.
function labelText (buf: Buffer, start: number, length: number): string {
  let out = ''
  for (let i = start; i < start + length; i++) {
    let c = buf[i]!
    if (c >= 0x41 && c <= 0x5a) c += 0x20
    if (c === 0x2e || c === 0x5c) out += '\\' + String.fromCharCode(c)
    else if (c > 0x20 && c < 0x7f) out += String.fromCharCode(c)
    else out += '\\' + String(c).padStart(3, '0')
  }
  return out
}

/**
 * Reads the name at `offset`. In-place bytes must lie below `limit` (the end of
 * the RDATA for names inside RDATA); pointer targets anywhere before.
 */
export function readName (buf: Buffer, offset: number, limit = buf.length): WalkedName | null {
  let pos = offset
  let segmentStart = offset
  let bound = Math.min(limit, buf.length)
  let end = -1
  let jumps = 0
  let wireLength = 0
  const labels: string[] = []
  for (;;) {
    if (pos >= bound) return null
    const length = buf[pos]!
    if (length === 0) {
      if (end < 0) end = pos + 1
      break
    }
    const kind = length & 0xc0
    if (kind === 0xc0) {
      if (pos + 1 >= bound) return null
      const target = ((length & 0x3f) << 8) | buf[pos + 1]!
      if (end < 0) end = pos + 2
      if (target >= segmentStart || ++jumps > MAX_POINTER_JUMPS) return null
      segmentStart = target
      pos = target
      bound = buf.length
      continue
    }
    // 0x40 and 0x80 are the obsolete extended/binary label types: reject.
    if (kind !== 0) return null
    if (pos + 1 + length > bound) return null
    wireLength += length + 1
    if (wireLength + 1 > MAX_NAME_WIRE_LENGTH) return null
    labels.push(labelText(buf, pos + 1, length))
    pos += 1 + length
  }
  return { name: labels.join('.'), end, compressed: jumps > 0 }
}

function ttlAt (buf: Buffer, offset: number): number {
  const ttl = buf.readUInt32BE(offset)
  // RFC 2181 §8: a TTL with the top bit set is treated as zero.
  return ttl > 0x7fffffff ? 0 : ttl
}

/** Walks a whole message; null when any part of it is malformed. */
export function walkMessage (buf: Buffer): WalkedMessage | null {
  if (buf.length < HEADER_LENGTH) return null
  const flags = buf.readUInt16BE(2)
  const qdcount = buf.readUInt16BE(4)
  const ancount = buf.readUInt16BE(6)
  const nscount = buf.readUInt16BE(8)
  const arcount = buf.readUInt16BE(10)
  let pos = HEADER_LENGTH
  let question: WalkedQuestion | null = null
  for (let i = 0; i < qdcount; i++) {
    const name = readName(buf, pos)
    if (name === null || name.end + 4 > buf.length) return null
    if (question === null) {
      question = {
        name: name.name,
        type: buf.readUInt16BE(name.end),
        class: buf.readUInt16BE(name.end + 2),
        start: pos,
        end: name.end + 4,
        compressed: name.compressed
      }
    }
    pos = name.end + 4
  }

  const ttlOffsets: number[] = []
  let minAnswerTtl: number | null = null
  let negativeTtl: number | null = null
  let opt: WalkedOpt | null = null
  const total = ancount + nscount + arcount
  for (let i = 0; i < total; i++) {
    const owner = readName(buf, pos)
    if (owner === null || owner.end + 10 > buf.length) return null
    const type = buf.readUInt16BE(owner.end)
    const ttlOffset = owner.end + 4
    const rdlength = buf.readUInt16BE(owner.end + 8)
    const rdata = owner.end + 10
    if (rdata + rdlength > buf.length) return null
    if (type === TYPE_OPT) {
      // Only one OPT, only in additional, owner must be the root (RFC 6891 §6.1.1).
      if (i < ancount + nscount || opt !== null || owner.name !== '') return null
      const extended = buf.readUInt32BE(ttlOffset)
      opt = {
        udpPayload: buf.readUInt16BE(owner.end + 2),
        extendedRcode: extended >>> 24,
        version: (extended >>> 16) & 0xff,
        dnssecOk: (extended & 0x8000) !== 0
      }
    } else {
      ttlOffsets.push(ttlOffset)
      const ttl = ttlAt(buf, ttlOffset)
      if (i < ancount) minAnswerTtl = minAnswerTtl === null ? ttl : Math.min(minAnswerTtl, ttl)
      if (type === TYPE_SOA && i >= ancount && i < ancount + nscount && negativeTtl === null) {
        const limit = rdata + rdlength
        const mname = readName(buf, rdata, limit)
        const rname = mname && readName(buf, mname.end, limit)
        if (!rname || rname.end + 20 !== limit) return null
        negativeTtl = Math.min(ttl, ttlAt(buf, rname.end + 16))
      }
    }
    pos = rdata + rdlength
  }
  // Trailing bytes after the last RR are tolerated, as most resolvers do.
  return {
    id: buf.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >>> 11) & 0xf,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    cd: (flags & 0x0010) !== 0,
    rcode: flags & 0xf,
    qdcount,
    ancount,
    nscount,
    arcount,
    question,
    ttlOffsets,
    minAnswerTtl,
    negativeTtl,
    opt
  }
}

/** Same question (name case-insensitively, type, class). */
export function sameQuestion (a: WalkedQuestion | null, b: WalkedQuestion | null): boolean {
  return a !== null && b !== null && a.name === b.name && a.type === b.type && a.class === b.class
}
