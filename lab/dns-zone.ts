/**
 * Pure answering for the lab's upstream resolver: query bytes in, response bytes out (or null
 * for "stay silent"). Authoritative for one zone, refuses everything else, never forwards.
 * Special names exercise clients: `big` needs TCP (truncated over UDP), `slow` never answers.
 */

import dnsPacket, { type Answer, type DecodedPacket, type Packet } from 'dns-packet'

export interface Zone {
  /** Lowercase, no trailing dot, e.g. `lab.test`. */
  readonly origin: string
  /** Lowercase host label → IPv4 address. */
  readonly hosts: ReadonlyMap<string, string>
  /** Address of `www.<origin>`. */
  readonly www: string
}

export type Transport = 'udp' | 'tcp'

const TTL = 60
const BIG_RECORDS = 100
const CLASSIC_UDP_LIMIT = 512
// What we advertise back in EDNS0: the DNS flag day 2020 size, safe for any MTU.
const OUR_UDP_PAYLOAD = 1232

const RCODE = { noError: 0, formErr: 1, nxDomain: 3, notImp: 4, refused: 5 } as const
const QR = 0x8000

export function parseHosts(spec: string): Map<string, string> {
  const hosts = new Map<string, string>()
  for (const pair of spec.split(',').filter((s) => s !== '')) {
    const [name, address, ...rest] = pair.split('=')
    if (!name || !address || rest.length > 0 || !/^\d{1,3}(\.\d{1,3}){3}$/.test(address)) {
      throw new Error(`invalid --hosts entry ${JSON.stringify(pair)}: expected NAME=IPV4`)
    }
    hosts.set(name.toLowerCase(), address)
  }
  return hosts
}

function soa(zone: Zone): Answer {
  return {
    type: 'SOA',
    name: zone.origin,
    ttl: TTL,
    data: {
      mname: `ns.${zone.origin}`,
      rname: `hostmaster.${zone.origin}`,
      serial: 1,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: TTL,
    },
  }
}

/** Records for a name inside the zone, or null when the name does not exist. */
function lookup(zone: Zone, label: string, qname: string): Answer[] | null {
  const a = (address: string): Answer => ({ type: 'A', name: qname, ttl: TTL, data: address })
  if (label === '') return [{ ...soa(zone), name: qname }]
  if (label === 'www') return [a(zone.www)]
  if (label === 'txt') return [{ type: 'TXT', name: qname, ttl: TTL, data: 'weft lab' }]
  if (label === 'big') return Array.from({ length: BIG_RECORDS }, (_, i) => a(`10.123.0.${i + 1}`))
  const host = zone.hosts.get(label)
  return host === undefined ? null : [a(host)]
}

function headerOnly(id: number, rcode: number): Buffer {
  const buf = Buffer.alloc(12)
  buf.writeUInt16BE(id, 0)
  buf.writeUInt16BE(QR | rcode, 2)
  return buf
}

export function respond(wire: Buffer, zone: Zone, transport: Transport): Buffer | null {
  let query: DecodedPacket
  try {
    query = dnsPacket.decode(wire)
  } catch {
    // Malformed: answer FORMERR if there is at least an id to answer to.
    return wire.length >= 12 && (wire.readUInt16BE(2) & QR) === 0 ? headerOnly(wire.readUInt16BE(0), RCODE.formErr) : null
  }
  if (query.type === 'response') return null
  const id = query.id ?? 0
  if ((query.flags ?? 0) & 0x7800) return headerOnly(id, RCODE.notImp)
  const question = query.questions?.[0]
  if (question === undefined || query.questions?.length !== 1) return headerOnly(id, RCODE.formErr)

  const opt = query.additionals?.find((r) => r.type === 'OPT')
  const udpLimit = opt && 'udpPayloadSize' in opt ? Math.max(CLASSIC_UDP_LIMIT, opt.udpPayloadSize) : CLASSIC_UDP_LIMIT
  const response: Packet = {
    type: 'response',
    id,
    flags: (query.flags ?? 0) & dnsPacket.RECURSION_DESIRED,
    questions: [question],
    answers: [],
    authorities: [],
    additionals: opt ? [{ type: 'OPT', name: '.', udpPayloadSize: OUR_UDP_PAYLOAD, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] : [],
  }

  const qname = question.name.toLowerCase().replace(/\.$/, '')
  const origin = zone.origin
  if (qname !== origin && !qname.endsWith(`.${origin}`)) {
    response.flags = (response.flags ?? 0) | RCODE.refused
    return dnsPacket.encode(response)
  }
  const label = qname === origin ? '' : qname.slice(0, -(origin.length + 1))
  if (label === 'slow') return null

  response.flags = (response.flags ?? 0) | dnsPacket.AUTHORITATIVE_ANSWER
  const records = lookup(zone, label, question.name)
  if (records === null) {
    response.flags |= RCODE.nxDomain
    response.authorities = [soa(zone)]
  } else {
    const matching = records.filter((r) => r.type === question.type)
    response.answers = matching
    if (matching.length === 0) response.authorities = [soa(zone)]
  }

  const full = dnsPacket.encode(response)
  if (transport === 'udp' && full.length > udpLimit) {
    return dnsPacket.encode({ ...response, flags: (response.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [] })
  }
  return full
}
