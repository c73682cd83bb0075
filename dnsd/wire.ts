/**
 * The DNS wire format on dnsd's hot path: read a query's header, its one
 * question and its EDNS0 OPT record, and assemble responses from pre-encoded
 * resource records. No packet library, no decoding of anything we do not use.
 *
 * Safety: `parseQuery` reads untrusted bytes. It never throws, every read is
 * bounds checked, and its work is bounded by the first 12 + 255 + 4 + 11
 * bytes whatever the counts or the length say: the question name must not be
 * compressed (a pointer there is FORMERR, so no loop can exist), and at most
 * one additional record (the OPT) is read.
 *
 * Policy, most conservative first (see README "Malformed queries"):
 * - shorter than a header, or QR set (a response sent to us): drop;
 * - opcode other than QUERY: NOTIMP;
 * - QDCOUNT ≠ 1, ANCOUNT or NSCOUNT ≠ 0, ARCOUNT > 1, an additional record
 *   other than an OPT with root owner, a malformed or compressed question
 *   name, a name longer than 255 bytes, qtype OPT: FORMERR;
 * - EDNS version ≠ 0: BADVERS (with an OPT, as RFC 6891 §6.1.3 requires);
 * - class other than IN: REFUSED.
 * Bytes after the last record are ignored.
 */

export const HEADER_LENGTH = 12
export const MAX_NAME_WIRE_LENGTH = 255

export const TYPE_A = 1
export const TYPE_PTR = 12
export const TYPE_AAAA = 28
export const TYPE_SRV = 33
export const TYPE_OPT = 41
export const TYPE_IXFR = 251
export const TYPE_AXFR = 252
export const TYPE_ANY = 255
export const CLASS_IN = 1

export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** Extended (12 bits): upper 8 bits travel in the OPT record. */
  BADVERS: 16
} as const
export type RcodeName = keyof typeof RCODE

const FLAG_QR = 0x8000
const FLAG_AA = 0x0400
const FLAG_TC = 0x0200
const FLAG_RD = 0x0100
const FLAG_RA = 0x0080
const FLAG_CD = 0x0010

/** Classic DNS over UDP without EDNS0 (RFC 1035 §4.2.1). */
export const CLASSIC_UDP_LIMIT = 512
/** The largest UDP answer dnsd sends whatever the client advertises. */
export const MAX_UDP_LIMIT = 4096
/** What dnsd advertises in its OPT: the DNS Flag Day 2020 size (same as the forwarder's). */
export const ADVERTISED_UDP_PAYLOAD = 1232
const MAX_MESSAGE = 65535
const OPT_LENGTH = 11

export interface Edns {
  /** As the client advertised it (may be below 512; `udpLimitFor` clamps). */
  readonly udpPayloadSize: number
  /** The DNSSEC OK bit, echoed in responses (RFC 3225 §3). */
  readonly dnssecOk: boolean
  readonly version: number
}

export interface ParsedQuery {
  readonly id: number
  readonly rd: boolean
  readonly cd: boolean
  /**
   * Lower-cased presentation form without the trailing dot ('' for the root).
   * Bytes other than letters, digits, '-' and '_' are escaped (`\.`, `\DDD`),
   * so a lookup never confuses a label containing a dot with two labels.
   */
  readonly name: string
  readonly qtype: number
  readonly qclass: number
  /** Offset just after the question (name, type, class): header + question = query[0, questionEnd). */
  readonly questionEnd: number
  readonly edns: Edns | null
}

/** What is known of a query that cannot be answered normally. */
export interface PartialQuery {
  readonly id: number
  readonly opcode: number
  readonly rd: boolean
  readonly cd: boolean
  /** Set when the question was read: the error response echoes it. */
  readonly questionEnd: number | null
  readonly edns: Edns | null
}

export type WireProblem =
  | { readonly kind: 'drop', readonly reason: string }
  | { readonly kind: 'error', readonly rcode: RcodeName, readonly reason: string, readonly partial: PartialQuery }

export function isWireProblem (value: ParsedQuery | WireProblem): value is WireProblem {
  return 'kind' in value
}

const drop = (reason: string): WireProblem => ({ kind: 'drop', reason })
const fail = (rcode: RcodeName, reason: string, partial: PartialQuery): WireProblem => ({ kind: 'error', rcode, reason, partial })

/**
 * Reads a query. Returns the parsed query, or what to do instead: drop it, or
 * answer it with an error rcode (build that with `errorResponse`).
 */
export function parseQuery (buf: Buffer): ParsedQuery | WireProblem {
  if (buf.length < HEADER_LENGTH) return drop('shorter than a DNS header')
  const id = buf.readUInt16BE(0)
  const flags = buf.readUInt16BE(2)
  if ((flags & FLAG_QR) !== 0) return drop('QR set: a response, not a query')
  const opcode = (flags >> 11) & 0xf
  const rd = (flags & FLAG_RD) !== 0
  const cd = (flags & FLAG_CD) !== 0
  const headerOnly: PartialQuery = { id, opcode, rd, cd, questionEnd: null, edns: null }
  if (opcode !== 0) return fail('NOTIMP', `opcode ${opcode} is not QUERY`, headerOnly)
  if (buf.readUInt16BE(4) !== 1) return fail('FORMERR', 'QDCOUNT is not 1', headerOnly)
  if (buf.readUInt16BE(6) !== 0 || buf.readUInt16BE(8) !== 0) return fail('FORMERR', 'a query with answer or authority records', headerOnly)
  const arcount = buf.readUInt16BE(10)
  if (arcount > 1) return fail('FORMERR', 'more than one additional record', headerOnly)

  // The question name: uncompressed labels only.
  let name = ''
  let at = HEADER_LENGTH
  for (;;) {
    if (at >= buf.length) return fail('FORMERR', 'question name runs past the end', headerOnly)
    const length = buf[at]!
    if (length === 0) { at += 1; break }
    if ((length & 0xc0) !== 0) return fail('FORMERR', 'compressed or extended label in the question', headerOnly)
    const end = at + 1 + length
    if (end - HEADER_LENGTH + 1 > MAX_NAME_WIRE_LENGTH) return fail('FORMERR', 'question name longer than 255 bytes', headerOnly)
    if (end > buf.length) return fail('FORMERR', 'question name runs past the end', headerOnly)
    const label = labelText(buf, at + 1, end)
    name = name === '' ? label : `${name}.${label}`
    at = end
  }
  if (at + 4 > buf.length) return fail('FORMERR', 'question type or class missing', headerOnly)
  const qtype = buf.readUInt16BE(at)
  const qclass = buf.readUInt16BE(at + 2)
  const questionEnd = at + 4
  const withQuestion: PartialQuery = { id, opcode, rd, cd, questionEnd, edns: null }

  let edns: Edns | null = null
  if (arcount === 1) {
    at = questionEnd
    if (at + OPT_LENGTH > buf.length) return fail('FORMERR', 'additional record runs past the end', withQuestion)
    if (buf[at] !== 0 || buf.readUInt16BE(at + 1) !== TYPE_OPT) return fail('FORMERR', 'the additional record is not an OPT with root owner', withQuestion)
    const rdlength = buf.readUInt16BE(at + 9)
    if (at + OPT_LENGTH + rdlength > buf.length) return fail('FORMERR', 'OPT data runs past the end', withQuestion)
    edns = {
      udpPayloadSize: buf.readUInt16BE(at + 3),
      version: buf[at + 6]!,
      dnssecOk: (buf[at + 7]! & 0x80) !== 0
    }
    if (edns.version !== 0) return fail('BADVERS', `EDNS version ${edns.version}`, { ...withQuestion, edns })
  }
  const partial: PartialQuery = { ...withQuestion, edns }
  if (qtype === TYPE_OPT) return fail('FORMERR', 'OPT is not a question type', partial)
  if (qclass !== CLASS_IN) return fail('REFUSED', `class ${qclass} is not IN`, partial)
  return { id, rd, cd, name, qtype, qclass, questionEnd, edns }
}

/** Lower-cased text of one label; anything but [a-z0-9_-] escaped as in zone files. */
function labelText (buf: Buffer, start: number, end: number): string {
  let plain = true
  for (let i = start; i < end; i++) {
    const c = buf[i]!
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f || (c >= 0x41 && c <= 0x5a))) {
      plain = false
      break
    }
  }
  if (plain) return buf.toString('latin1', start, end).toLowerCase()
  let out = ''
  for (let i = start; i < end; i++) {
    const c = buf[i]!
    if (c >= 0x41 && c <= 0x5a) out += String.fromCharCode(c + 0x20)
    else if ((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f) out += String.fromCharCode(c)
    else if (c > 0x20 && c < 0x7f) out += `\\${String.fromCharCode(c)}`
    else out += `\\${String(c).padStart(3, '0')}`
  }
  return out
}

/**
 * The hot path's reader: for a query `parseQuery` accepts (no problem to
 * report), the offset where its question ends; -1 for anything else, which
 * the caller hands to `parseQuery` to decide the drop or the error rcode.
 * Same checks in the same bounds as `parseQuery`, but it builds no name text
 * and no objects: the header, the label lengths and the OPT's fixed fields.
 */
export function plainQuestionEnd (buf: Buffer): number {
  const length = buf.length
  if (length < HEADER_LENGTH) return -1
  // QR clear, opcode QUERY; exactly one question, no answer or authority records, at most the OPT.
  if ((buf[2]! & 0xf8) !== 0 || buf.readUInt16BE(4) !== 1 || buf.readUInt16BE(6) !== 0 || buf.readUInt16BE(8) !== 0 || buf.readUInt16BE(10) > 1) return -1
  let at = HEADER_LENGTH
  for (;;) {
    if (at >= length) return -1
    const label = buf[at]!
    if (label === 0) break
    // 0x40 and above: a compression pointer or an extended label type.
    if (label > 63) return -1
    at += 1 + label
    if (at - HEADER_LENGTH + 1 > MAX_NAME_WIRE_LENGTH) return -1
  }
  const end = at + 5
  if (end > length) return -1
  if (buf[11] === 1) {
    if (end + OPT_LENGTH > length || buf[end] !== 0 || buf.readUInt16BE(end + 1) !== TYPE_OPT) return -1
    if (end + OPT_LENGTH + buf.readUInt16BE(end + 9) > length || buf[end + 6] !== 0) return -1
  }
  if (buf.readUInt16BE(end - 4) === TYPE_OPT || buf.readUInt16BE(end - 2) !== CLASS_IN) return -1
  return end
}

const UPPER = /[A-Z]/
const UPPER_RUNS = /[A-Z]+/g
const lower = (run: string): string => run.toLowerCase()

/**
 * The lookup key of the uncompressed name at buf[start, end), its closing
 * zero included: the wire bytes as a latin1 string with ASCII letters lowered
 * (names compare case-insensitively in ASCII only, RFC 4343; length bytes are
 * at most 63, never a letter). Exact where presentation text needs escaping:
 * distinct names never share a key, and there is nothing to decode.
 */
export function nameKey (buf: Buffer, start: number, end: number): string {
  return lowerAscii(buf.toString('latin1', start, end))
}

function lowerAscii (key: string): string {
  return UPPER.test(key) ? key.replace(UPPER_RUNS, lower) : key
}

/** Printable ASCII but the backslash: a name whose wire form is its labels' own characters. */
const PLAIN_PRESENTATION = /^[!-[\]-~]*$/

/**
 * `nameKey` of a presentation name (escapes understood, see `encodeName`).
 * A plain name (every name of a valid document) is spelled straight into a
 * key: the tables key every name of a document, 90,000 at 10,000 services,
 * and encoding each to a buffer first was a tenth of building them.
 */
export function nameKeyOf (name: string): string {
  const text = name.endsWith('.') ? name.slice(0, -1) : name
  if (PLAIN_PRESENTATION.test(text)) {
    let key = ''
    for (const label of text === '' ? [] : text.split('.')) {
      // Invalid lengths fall through to encodeName, which says what is wrong.
      if (label.length === 0 || label.length > 63) return nameKeyOfWire(name)
      key += String.fromCharCode(label.length) + label
    }
    key += '\u0000'
    if (key.length <= MAX_NAME_WIRE_LENGTH) return lowerAscii(key)
  }
  return nameKeyOfWire(name)
}

function nameKeyOfWire (name: string): string {
  const wire = encodeName(name)
  return nameKey(wire, 0, wire.length)
}

/** The largest response to send over UDP: 512 without EDNS0, else the client's size within [512, 4096]. */
export function udpLimitFor (edns: Edns | null): number {
  return edns === null ? CLASSIC_UDP_LIMIT : clampUdpLimit(edns.udpPayloadSize)
}

function clampUdpLimit (advertised: number): number {
  return Math.max(CLASSIC_UDP_LIMIT, Math.min(advertised, MAX_UDP_LIMIT))
}

/** `udpLimitFor` of a plain query (`plainQuestionEnd` gave `end`), read from its bytes. */
function plainUdpLimit (query: Buffer, end: number): number {
  return query[11] === 1 ? clampUdpLimit(query.readUInt16BE(end + 3)) : CLASSIC_UDP_LIMIT
}

function writeOpt (out: Buffer, at: number, rcode: number, dnssecOk: boolean): void {
  out[at] = 0 // root owner
  out.writeUInt16BE(TYPE_OPT, at + 1)
  out.writeUInt16BE(ADVERTISED_UDP_PAYLOAD, at + 3)
  out[at + 5] = (rcode >> 4) & 0xff // extended rcode, upper 8 bits
  out[at + 6] = 0 // version
  out.writeUInt16BE(dnssecOk ? 0x8000 : 0, at + 7)
  out.writeUInt16BE(0, at + 9) // no options
}

function responseFlags (opcode: number, rd: boolean, cd: boolean, aa: boolean, tc: boolean, rcode: number): number {
  return FLAG_QR | (opcode << 11) | (aa ? FLAG_AA : 0) | (tc ? FLAG_TC : 0) | (rd ? FLAG_RD : 0) | FLAG_RA | (cd ? FLAG_CD : 0) | (rcode & 0xf)
}

/**
 * An error answer: same ID, opcode, RD and CD; the question echoed when it
 * was read (else QDCOUNT 0); an OPT when the query had one (always for
 * BADVERS, whose upper rcode bits live there).
 */
export function errorResponse (query: Buffer, parsed: ParsedQuery | PartialQuery, rcode: RcodeName): Buffer {
  const code = RCODE[rcode]
  const opcode = 'opcode' in parsed ? parsed.opcode : 0
  const questionEnd = parsed.questionEnd ?? HEADER_LENGTH
  const withOpt = parsed.edns !== null || code > 0xf
  const out = Buffer.allocUnsafe(questionEnd + (withOpt ? OPT_LENGTH : 0))
  out.writeUInt16BE(parsed.id, 0)
  out.writeUInt16BE(responseFlags(opcode, parsed.rd, parsed.cd, false, false, code), 2)
  out.writeUInt16BE(parsed.questionEnd === null ? 0 : 1, 4)
  out.writeUInt32BE(0, 6)
  out.writeUInt16BE(withOpt ? 1 : 0, 10)
  query.copy(out, HEADER_LENGTH, HEADER_LENGTH, questionEnd)
  if (withOpt) writeOpt(out, questionEnd, code, parsed.edns?.dnssecOk ?? false)
  return out
}

export interface ResponseParts {
  readonly query: Buffer
  readonly parsed: ParsedQuery
  readonly rcode: RcodeName
  /** Authoritative: set for names dnsd owns. */
  readonly aa: boolean
  /** Pre-encoded RRs, each complete (owner, type, class, TTL, RDATA); owner 0xC00C = the question name. */
  readonly answers: readonly Buffer[]
  readonly additionals: readonly Buffer[]
  /** Bytes the message may take (`udpLimitFor`), or null over TCP (65535). */
  readonly udpLimit: number | null
}

/**
 * Header + the question bytes as received (0x20 case preserved) + answers +
 * additionals (+ OPT when the query had one). Over the limit, whole RRs are
 * left out from the end: a missing answer sets TC; missing additionals do not
 * (RFC 2181 §9: the client has its answer, glue can be asked for). The OPT is
 * never left out (RFC 6891 §7).
 */
export function buildResponse (parts: ResponseParts): Buffer {
  const { query, parsed, answers, additionals } = parts
  const code = RCODE[parts.rcode]
  const limit = parts.udpLimit ?? MAX_MESSAGE
  const withOpt = parsed.edns !== null
  const fixed = parsed.questionEnd + (withOpt ? OPT_LENGTH : 0)

  let size = fixed
  let answerCount = 0
  for (const rr of answers) {
    if (size + rr.length > limit) break
    size += rr.length
    answerCount++
  }
  const truncated = answerCount < answers.length
  let additionalCount = 0
  if (!truncated) {
    for (const rr of additionals) {
      if (size + rr.length > limit) break
      size += rr.length
      additionalCount++
    }
  }

  const out = Buffer.allocUnsafe(size)
  out.writeUInt16BE(parsed.id, 0)
  out.writeUInt16BE(responseFlags(0, parsed.rd, parsed.cd, parts.aa, truncated, code), 2)
  out.writeUInt16BE(1, 4)
  out.writeUInt16BE(answerCount, 6)
  out.writeUInt16BE(0, 8)
  out.writeUInt16BE(additionalCount + (withOpt ? 1 : 0), 10)
  query.copy(out, HEADER_LENGTH, HEADER_LENGTH, parsed.questionEnd)
  let at = parsed.questionEnd
  for (let i = 0; i < answerCount; i++) at += answers[i]!.copy(out, at)
  for (let i = 0; i < additionalCount; i++) at += additionals[i]!.copy(out, at)
  if (withOpt) writeOpt(out, at, code, parsed.edns.dnssecOk)
  return out
}

/**
 * `buildResponse` for a plain query (`plainQuestionEnd` gave `end`) and a
 * prepared answer, NOERROR and AA, byte for byte the same message: `body`
 * holds the answer RRs then the additional ones, `answers` and `additionals`
 * count them, and the first `rotateBy` bytes of the body go last (rotation by
 * whole records of equal size). Null when the message would not fit: then
 * `buildResponse` decides what to leave out.
 */
export function plainResponse (query: Buffer, end: number, body: Buffer, answers: number, additionals: number, rotateBy: number, transport: 'udp' | 'tcp'): Buffer | null {
  const withOpt = query[11] === 1
  const size = end + body.length + (withOpt ? OPT_LENGTH : 0)
  if (size > (transport === 'udp' ? plainUdpLimit(query, end) : MAX_MESSAGE)) return null
  const out = Buffer.allocUnsafe(size)
  // ID, counts and the question as received (0x20 case preserved); then the fields that differ.
  query.copy(out, 0, 0, end)
  out[2] = 0x84 | (query[2]! & 0x01) // QR, opcode QUERY, AA, RD as asked
  out[3] = 0x80 | (query[3]! & 0x10) // RA, CD as asked, NOERROR
  out.writeUInt16BE(answers, 6)
  out.writeUInt16BE(additionals + (withOpt ? 1 : 0), 10)
  if (rotateBy === 0) {
    body.copy(out, end)
  } else {
    body.copy(out, end, rotateBy)
    body.copy(out, end + body.length - rotateBy, 0, rotateBy)
  }
  if (withOpt) writeOpt(out, end + body.length, 0, (query[end + 7]! & 0x80) !== 0)
  return out
}

/**
 * `truncateForUdp` for a plain query: a forwarded response that fits is sent
 * as is without reading the query any further (the common case).
 */
export function fitForUdp (response: Buffer, query: Buffer, end: number): Buffer {
  if (response.length <= plainUdpLimit(query, end)) return response
  // A plain query is one parseQuery accepts.
  return truncateForUdp(response, parseQuery(query) as ParsedQuery)
}

/**
 * A forwarded response made to fit the client's UDP limit. Fits: returned as
 * is. Too big: the simplest correct form — the response's header with TC set
 * and the client's ID, the client's question, no records, plus dnsd's OPT
 * when the query had EDNS0 — so the client retries over TCP.
 */
export function truncateForUdp (response: Buffer, parsed: ParsedQuery): Buffer {
  const limit = udpLimitFor(parsed.edns)
  if (response.length <= limit || response.length < HEADER_LENGTH) return response
  const withOpt = parsed.edns !== null
  const out = Buffer.allocUnsafe(parsed.questionEnd + (withOpt ? OPT_LENGTH : 0))
  const flags = response.readUInt16BE(2)
  out.writeUInt16BE(parsed.id, 0)
  out.writeUInt16BE((flags | FLAG_TC | FLAG_QR) & ~0x0060, 2) // Z and AD cleared: the records that were vouched for are gone
  out.writeUInt16BE(1, 4)
  out.writeUInt32BE(0, 6)
  out.writeUInt16BE(withOpt ? 1 : 0, 10)
  // The question as the client sent it: the response's own bytes would do,
  // but this header + question is exactly what the parsed query covers.
  questionBytesFrom(response, parsed).copy(out, HEADER_LENGTH)
  if (withOpt) writeOpt(out, parsed.questionEnd, flags & 0xf, parsed.edns.dnssecOk)
  return out
}

/**
 * The question section for a truncated forwarded answer: the response's when
 * it is byte-for-byte the same length as the query's (the forwarder restores
 * the client's spelling), else a copy of the qname rebuilt from `parsed`.
 */
function questionBytesFrom (response: Buffer, parsed: ParsedQuery): Buffer {
  const end = parsed.questionEnd
  if (response.length >= end && response.readUInt16BE(4) === 1 && sameQuestionLayout(response, end)) {
    return response.subarray(HEADER_LENGTH, end)
  }
  return encodeQuestion(parsed)
}

/** Whether `message` holds an uncompressed question name ending exactly at `end - 4`. */
function sameQuestionLayout (message: Buffer, end: number): boolean {
  let at = HEADER_LENGTH
  while (at < end - 4) {
    const length = message[at]!
    if (length === 0) return at + 1 === end - 4
    if ((length & 0xc0) !== 0) return false
    at += 1 + length
  }
  return false
}

function encodeQuestion (parsed: ParsedQuery): Buffer {
  const nameWire = encodeName(parsed.name)
  const out = Buffer.allocUnsafe(nameWire.length + 4)
  nameWire.copy(out, 0)
  out.writeUInt16BE(parsed.qtype, nameWire.length)
  out.writeUInt16BE(parsed.qclass, nameWire.length + 2)
  return out
}

/**
 * Wire form of a presentation name (trailing dot optional; `\.` and `\DDD`
 * escapes understood). Throws RangeError on a label over 63 bytes or a name
 * over 255: callers on the cold path validate, the tables only hold names
 * the document schema already checked.
 */
export function encodeName (name: string): Buffer {
  const labels: Buffer[] = []
  let current: number[] = []
  const text = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i)
    if (ch === 0x5c /* \ */ && i + 1 < text.length) {
      const digits = text.slice(i + 1, i + 4)
      if (/^\d{3}$/.test(digits)) {
        current.push(Number(digits) & 0xff)
        i += 3
      } else {
        current.push(text.charCodeAt(i + 1) & 0xff)
        i += 1
      }
    } else if (ch === 0x2e /* . */) {
      labels.push(Buffer.from(current))
      current = []
    } else {
      current.push(ch & 0xff)
    }
  }
  if (text !== '') labels.push(Buffer.from(current))
  let size = 1
  for (const label of labels) {
    if (label.length === 0 || label.length > 63) throw new RangeError(`invalid label length ${label.length} in ${JSON.stringify(name)}`)
    size += 1 + label.length
  }
  if (size > MAX_NAME_WIRE_LENGTH) throw new RangeError(`name longer than 255 bytes: ${JSON.stringify(name)}`)
  const out = Buffer.allocUnsafe(size)
  let at = 0
  for (const label of labels) {
    out[at++] = label.length
    at += label.copy(out, at)
  }
  out[at] = 0
  return out
}
