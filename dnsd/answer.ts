/**
 * The answering chain for one query, CoreDNS-style: each step either answers
 * or falls through to the next, explicitly.
 *
 *   wire    malformed → drop, or FORMERR / NOTIMP / BADVERS / REFUSED
 *   task    the asking task is unknown → REFUSED
 *   local   the name exists on a network the task is on → answer (or NODATA)
 *   forward everything else → the server hands the original bytes to the forwarder
 *
 * Pure: tables, bytes and a rotation counter in; bytes out. No clock, no I/O.
 *
 * The hot path decodes nothing: a well-formed query (plainQuestionEnd) for a
 * cluster name is looked up by its wire bytes (nameKey) and answered by
 * copying the record set's prepared sections (plainResponse). Errors, zone
 * transfers, ANY and answers too big for the client's UDP size take the
 * general path, parseQuery and buildResponse, which gives the same bytes.
 */
import dnsPacket from 'dns-packet'
import { A_RR_LENGTH, taskView, type DnsTables, type RecordSet, type RecordType } from './records.ts'
import {
  HEADER_LENGTH, TYPE_A, TYPE_ANY, TYPE_AXFR, TYPE_IXFR, TYPE_PTR, TYPE_SRV,
  buildResponse, errorResponse, nameKey, parseQuery, plainQuestionEnd, plainResponse, udpLimitFor,
  type ParsedQuery, type WireProblem
} from './wire.ts'
import { DnsdError } from './errors.ts'

export type Outcome =
  | { kind: 'answer', response: Buffer, rule: string, networks: string[] }
  /** What the hot path read, for the forward cache's lookup and the UDP fit: plainQuestionEnd, nameKey. */
  | { kind: 'forward', questionEnd: number, nameKey: string }
  | { kind: 'error', response: Buffer, rcode: string }
  | { kind: 'drop', reason: string }

export type Transport = 'udp' | 'tcp'

const EMPTY: readonly Buffer[] = []
const EMPTY_WIRE = Buffer.alloc(0)

/**
 * Answers `query` as `task` (task id, or a local task's name) would get it.
 * `rotation` is any integer that changes per query: dnsrr and tasks.<name>
 * answers start at `rotation mod n`.
 */
export function answerQuery (tables: DnsTables, task: string, query: Buffer, transport: Transport, rotation: number): Outcome {
  const end = plainQuestionEnd(query)
  // Not plain means parseQuery has a problem to report (wire.ts keeps the two in step).
  if (end < 0) return rejected(query, parseQuery(query) as WireProblem)
  const view = taskView(tables, task)
  if (view === undefined) return refused(query)
  const key = nameKey(query, HEADER_LENGTH, end - 4)
  const set = view.byKey.get(key)
  if (set === undefined) return { kind: 'forward', questionEnd: end, nameKey: key }
  const qtype = query.readUInt16BE(end - 4)
  // Zone transfers of cluster names are not offered.
  if (qtype === TYPE_AXFR || qtype === TYPE_IXFR) return refused(query)
  const response = prepared(set, qtype, query, end, transport, rotation) ?? built(set, qtype, query, transport, rotation)
  return { kind: 'answer', response, rule: set.rule, networks: set.networks as string[] }
}

function rejected (query: Buffer, problem: WireProblem): Outcome {
  if (problem.kind === 'drop') return { kind: 'drop', reason: problem.reason }
  return { kind: 'error', response: errorResponse(query, problem.partial, problem.rcode), rcode: problem.rcode }
}

/** REFUSED for a plain query (one parseQuery accepts). */
function refused (query: Buffer): Outcome {
  return { kind: 'error', response: errorResponse(query, parseQuery(query) as ParsedQuery, 'REFUSED'), rcode: 'REFUSED' }
}

/** The answer from the prepared sections, or null for the general path (ANY, or too big for UDP). */
function prepared (set: RecordSet, qtype: number, query: Buffer, end: number, transport: Transport, rotation: number): Buffer | null {
  switch (qtype) {
    case TYPE_A: return plainResponse(query, end, set.aWire, set.a.length, 0, set.rotate ? rotationStart(set.a.length, rotation) * A_RR_LENGTH : 0, transport)
    case TYPE_PTR: return plainResponse(query, end, set.ptrWire, set.ptr.length, 0, 0, transport)
    case TYPE_SRV: return plainResponse(query, end, set.srvWire, set.srv.length, set.additionals.length, 0, transport)
    case TYPE_ANY: return null
    default: return plainResponse(query, end, EMPTY_WIRE, 0, 0, 0, transport)
  }
}

function built (set: RecordSet, qtype: number, query: Buffer, transport: Transport, rotation: number): Buffer {
  const parsed = parseQuery(query) as ParsedQuery
  const { answers, additionals } = select(set, qtype, rotation)
  return buildResponse({
    query, parsed, rcode: 'NOERROR', aa: true, answers, additionals,
    udpLimit: transport === 'udp' ? udpLimitFor(parsed.edns) : null
  })
}

/** The records of `set` for `qtype`; none (NODATA) when the name has no record of that type. */
function select (set: RecordSet, qtype: number, rotation: number): { answers: readonly Buffer[], additionals: readonly Buffer[] } {
  switch (qtype) {
    case TYPE_A: return { answers: rotated(set, rotation), additionals: EMPTY }
    case TYPE_PTR: return { answers: set.ptr, additionals: EMPTY }
    case TYPE_SRV: return { answers: set.srv, additionals: set.additionals }
    case TYPE_ANY: return { answers: [...rotated(set, rotation), ...set.ptr, ...set.srv], additionals: set.additionals }
    default: return { answers: EMPTY, additionals: EMPTY }
  }
}

/** Where a rotated answer of `n` records starts. */
function rotationStart (n: number, rotation: number): number {
  return ((rotation % n) + n) % n
}

function rotated (set: RecordSet, rotation: number): readonly Buffer[] {
  const a = set.a
  if (!set.rotate) return a
  const start = rotationStart(a.length, rotation)
  if (start === 0) return a
  const out = new Array<Buffer>(a.length)
  for (let i = 0; i < a.length; i++) out[i] = a[(start + i) % a.length]!
  return out
}

// ---------------------------------------------------------------------------
// Cold paths: `netd dns query NAME --as TASK` and `netd dns --as TASK`.

export interface Explanation {
  source: 'local' | 'forward'
  /** The rule that produced the answer; 'forward' when forwarded, 'refused' for an unknown task. */
  rule: string
  networks: string[]
  /** NOERROR for local answers (NODATA included), REFUSED for an unknown task; unknown until forwarded. */
  rcode: string | null
  /** Presentation form, e.g. `web. 5 IN A 10.0.1.5`; additionals follow the answers. */
  answers: string[]
}

/**
 * Runs `name`/`qtype` through `answerQuery` exactly as a query from `task`
 * would go, and says why. `name` may be an IPv4 address: it is asked as PTR.
 * Throws DNSD_ERR_BAD_QUERY for a name or type that cannot be put in a query.
 */
export function explain (tables: DnsTables, task: string, name: string, qtype: string | number): Explanation {
  let qname = name
  let type = typeof qtype === 'number' ? (TYPE_NAMES.get(qtype) ?? `TYPE${qtype}`) : qtype.toUpperCase()
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(name)) {
    qname = `${name.split('.').reverse().join('.')}.in-addr.arpa`
    type = 'PTR'
  }
  if (![...TYPE_NAMES.values()].includes(type)) {
    throw new DnsdError('DNSD_ERR_BAD_QUERY', `unknown record type ${JSON.stringify(String(qtype))}`)
  }
  let query: Buffer
  try {
    query = dnsPacket.encode({ type: 'query', id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: qname, type: type as dnsPacket.RecordType, class: 'IN' }] })
  } catch (error) {
    throw new DnsdError('DNSD_ERR_BAD_QUERY', `cannot ask for ${JSON.stringify(name)}: ${(error as Error).message}`)
  }
  const outcome = answerQuery(tables, task, query, 'tcp', 0)
  switch (outcome.kind) {
    case 'answer': {
      const decoded = dnsPacket.decode(outcome.response)
      const records = [...(decoded.answers ?? []), ...(decoded.additionals ?? [])]
      return { source: 'local', rule: outcome.rule, networks: outcome.networks, rcode: 'NOERROR', answers: records.map(present) }
    }
    case 'forward':
      return { source: 'forward', rule: 'forward', networks: [], rcode: null, answers: [] }
    case 'error':
      return { source: 'local', rule: taskView(tables, task) === undefined ? 'refused' : 'error', networks: [], rcode: outcome.rcode, answers: [] }
    case 'drop':
      // encode() above only makes well-formed queries; kept total for the type checker.
      throw new DnsdError('DNSD_ERR_BAD_QUERY', `query for ${JSON.stringify(name)} dropped: ${outcome.reason}`)
  }
}

/** The types `explain` asks about (dns-packet's typings do not export its table). */
const TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [1, 'A'], [2, 'NS'], [5, 'CNAME'], [6, 'SOA'], [12, 'PTR'], [15, 'MX'], [16, 'TXT'], [28, 'AAAA'],
  [33, 'SRV'], [35, 'NAPTR'], [43, 'DS'], [48, 'DNSKEY'], [252, 'AXFR'], [255, 'ANY'], [257, 'CAA']
])

function present (rr: dnsPacket.Answer): string {
  const ttl = 'ttl' in rr ? rr.ttl : 0
  const data = (rr as { data?: unknown }).data
  let text: string
  if (rr.type === 'SRV') {
    const srv = data as dnsPacket.SrvData
    text = `${srv.priority ?? 0} ${srv.weight ?? 0} ${srv.port} ${srv.target}.`
  } else if (rr.type === 'PTR') {
    text = `${String(data)}.`
  } else {
    text = String(data)
  }
  return `${rr.name}. ${ttl} IN ${rr.type} ${text}`
}

export interface ListedRecord {
  name: string
  type: RecordType
  value: string
  ttl: number
  rule: string
  network: string
}

/**
 * Every record `task` can resolve locally, one line per record and network,
 * sorted by name then type. Throws DNSD_ERR_BAD_QUERY for an unknown task.
 */
export function listRecords (tables: DnsTables, task: string): ListedRecord[] {
  const view = taskView(tables, task)
  if (view === undefined) throw new DnsdError('DNSD_ERR_BAD_QUERY', `no local task ${JSON.stringify(task)} on this node`)
  const out: ListedRecord[] = []
  for (const set of view.names.values()) {
    for (const v of set.values) out.push({ name: set.name, type: v.type, value: v.value, ttl: v.ttl, rule: set.rule, network: v.network })
  }
  return out.sort((x, y) => x.name < y.name ? -1 : x.name > y.name ? 1 : x.type < y.type ? -1 : x.type > y.type ? 1 : 0)
}
