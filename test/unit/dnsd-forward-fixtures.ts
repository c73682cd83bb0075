/**
 * DNS messages for the forwarder and cache tests, built with dns-packet so the
 * code under test (a hand-written walker) is checked against an independent
 * encoder.
 */
import dnsPacket, { type Answer, type RecordType } from 'dns-packet'

export const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const

export interface QuerySpec {
  id?: number
  type?: RecordType
  /** Add an OPT record (EDNS0) with this payload size. */
  edns?: number
  dnssecOk?: boolean
}

export function makeQuery (name: string, spec: QuerySpec = {}): Buffer {
  const additionals: Answer[] = spec.edns === undefined
    ? []
    : [{ type: 'OPT', name: '.', udpPayloadSize: spec.edns, flags: spec.dnssecOk === true ? dnsPacket.DNSSEC_OK : 0, options: [] } as unknown as Answer]
  return dnsPacket.encode({
    type: 'query',
    id: spec.id ?? 0x1234,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: spec.type ?? 'A', name, class: 'IN' }],
    additionals
  })
}

export interface ResponseSpec {
  answers?: Answer[]
  authorities?: Answer[]
  additionals?: Answer[]
  rcode?: number
  truncated?: boolean
  /** Override the ID (default: the query's). */
  id?: number
}

/** An upstream's answer to `query` (raw bytes), echoing its ID and question. */
export function makeResponse (query: Buffer, spec: ResponseSpec = {}): Buffer {
  const q = dnsPacket.decode(query)
  const flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (spec.truncated === true ? dnsPacket.TRUNCATED_RESPONSE : 0) | (spec.rcode ?? 0)
  return dnsPacket.encode({
    type: 'response',
    id: spec.id ?? q.id ?? 0,
    flags,
    questions: q.questions ?? [],
    answers: spec.answers ?? [],
    authorities: spec.authorities ?? [],
    additionals: spec.additionals ?? []
  })
}

export function a (name: string, address: string, ttl: number): Answer {
  return { type: 'A', name, ttl, class: 'IN', data: address }
}

export function soa (zone: string, ttl: number, minimum: number): Answer {
  return {
    type: 'SOA',
    name: zone,
    ttl,
    class: 'IN',
    data: { mname: `ns.${zone}`, rname: `hostmaster.${zone}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum }
  }
}

export function decode (message: Buffer) {
  return dnsPacket.decode(message)
}

/** The TTLs of every non-OPT RR, section by section. */
export function ttls (message: Buffer): number[] {
  const p = dnsPacket.decode(message)
  return [...(p.answers ?? []), ...(p.authorities ?? []), ...(p.additionals ?? [])]
    .filter((r) => r.type !== 'OPT')
    .map((r) => (r as { ttl?: number }).ttl ?? -1)
}

export function rcodeOf (message: Buffer): number {
  return message.readUInt16BE(2) & 0xf
}

/** The RDATA of every answer, as dns-packet decodes it (addresses for A). */
export function answerData (message: Buffer): unknown[] {
  return (dnsPacket.decode(message).answers ?? []).map((r) => (r as { data?: unknown }).data)
}
