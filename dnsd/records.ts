/**
 * The names dnsd answers, as each local task sees them, computed once per
 * desired-state document: every answer's resource records are encoded here,
 * so the hot path only copies bytes.
 *
 * Scoping: a task sees what is on the networks it is attached to, nothing
 * else. Tables are built per network, then folded per distinct *set* of
 * networks (most tasks share one set, and share its table object).
 *
 * When two names collide on a network, the higher-ranked rule wins and
 * equal ranks are merged (two services with one alias resolve to both VIPs;
 * a service on two of the task's networks resolves to both VIPs):
 *   service name (vip or dnsrr) > alias > tasks.<name> > task name.
 * PTR and SRV owners live in their own corners of the namespace.
 *
 * TTLs (README "TTL"): 5 s for what hangs on a VIP, 1 s for anything that
 * names individual tasks.
 */
import type { DesiredState, Endpoint, RemoteEndpoint, Service } from '../netd/desired-state.ts'
import { parseIpv4 } from '../netd/ipv4.ts'
import { CLASS_IN, TYPE_A, TYPE_PTR, TYPE_SRV, encodeName, nameKeyOf } from './wire.ts'

/** A VIP lives as long as its service: changes only when the service is removed or re-attached. */
export const VIP_TTL = 5
/** Task-level answers change whenever a task starts, stops or changes health. */
export const TASK_TTL = 1

export type Rule = 'service-vip' | 'service-dnsrr' | 'alias' | 'tasks' | 'task-name' | 'ptr' | 'srv'
export type RecordType = 'A' | 'PTR' | 'SRV'

export interface RecordValue {
  readonly type: RecordType
  /** Presentation form of the RDATA: `10.0.1.5`, `web.1.k3j2.`, `0 0 80 web.`. */
  readonly value: string
  readonly ttl: number
  readonly network: string
}

/** Everything one name answers for one task. RRs are complete, owner = pointer to the question (0xC00C). */
export interface RecordSet {
  /** Lower-case, no trailing dot. */
  readonly name: string
  readonly rule: Rule
  readonly networks: readonly string[]
  readonly ttl: number
  readonly a: readonly Buffer[]
  /** The answerer rotates `a` per query (dnsrr names and tasks.<name>). */
  readonly rotate: boolean
  readonly ptr: readonly Buffer[]
  readonly srv: readonly Buffer[]
  /** A records of the SRV targets (full owner names), for the additional section. */
  readonly additionals: readonly Buffer[]
  readonly values: readonly RecordValue[]
  /**
   * The answer sections the hot path copies, concatenated once per document:
   * `a` (every A RR is A_RR_LENGTH bytes, so rotating is moving whole records
   * from the front to the back), `ptr`, and `srv` followed by `additionals`.
   */
  readonly aWire: Buffer
  readonly ptrWire: Buffer
  readonly srvWire: Buffer
}

export interface TaskView {
  readonly task: string
  /** The task's DNS name, when the document gives one. */
  readonly name: string | null
  /** The networks the task is attached to: the only ones it sees names on. */
  readonly networks: readonly string[]
  readonly names: ReadonlyMap<string, RecordSet>
  /** The same record sets by the wire form of their name (`nameKey`): the hot path's lookup, no decoding. */
  readonly byKey: ReadonlyMap<string, RecordSet>
}

export interface DnsTables {
  readonly revision: number
  /** Local task id → what it sees. */
  readonly tasks: ReadonlyMap<string, TaskView>
  /** Local task name → task id (`netd dns --as NAME`). */
  readonly taskIds: ReadonlyMap<string, string>
}

/** A task id or a local task's name → its view, or undefined. */
export function taskView (tables: DnsTables, task: string): TaskView | undefined {
  const view = tables.tasks.get(task)
  if (view !== undefined) return view
  const id = tables.taskIds.get(task.toLowerCase().replace(/\.$/, ''))
  return id === undefined ? undefined : tables.tasks.get(id)
}

// ---------------------------------------------------------------------------
// Logical entries, per network, before encoding.

type Kind = 'a' | 'ptr' | 'srv'

interface SrvValue { readonly port: number, readonly target: string, readonly network: string }
interface Glue { readonly name: string, readonly ip: string, readonly network: string }
interface Value { readonly value: string, readonly network: string }

interface Entry {
  rule: Rule
  rank: number
  kind: Kind
  ttl: number
  rotate: boolean
  networks: string[]
  /** IPs (a) or target names (ptr). */
  values: Value[]
  srv: SrvValue[]
  glue: Glue[]
}

const RANK: Record<Rule, number> = { 'service-vip': 0, 'service-dnsrr': 0, alias: 1, tasks: 2, 'task-name': 3, ptr: 0, srv: 0 }

function entry (rule: Rule, kind: Kind, ttl: number, rotate: boolean, network: string): Entry {
  return { rule, rank: RANK[rule], kind, ttl, rotate, networks: [network], values: [], srv: [], glue: [] }
}

/** Folds `incoming` into the entry for `name`: a better rank replaces, an equal rank of the same kind merges. */
function fold (map: Map<string, Entry>, name: string, incoming: Entry, copy: boolean): void {
  const existing = map.get(name)
  if (existing === undefined || incoming.rank < existing.rank) {
    map.set(name, copy ? { ...incoming, networks: [...incoming.networks], values: [...incoming.values], srv: [...incoming.srv], glue: [...incoming.glue] } : incoming)
    return
  }
  if (incoming.rank > existing.rank || incoming.kind !== existing.kind) return
  existing.ttl = Math.min(existing.ttl, incoming.ttl)
  existing.rotate ||= incoming.rotate
  for (const network of incoming.networks) if (!existing.networks.includes(network)) existing.networks.push(network)
  existing.values.push(...incoming.values)
  existing.srv.push(...incoming.srv)
  existing.glue.push(...incoming.glue)
}

interface Member { readonly ip: string, readonly name: string | undefined, readonly healthy: boolean }

/** Each network's names, as anyone attached to it sees them. */
function networkEntries (doc: DesiredState): Map<string, Map<string, Entry>> {
  const byNetwork = new Map<string, Map<string, Entry>>()
  // The routing mesh's network carries published ports, not discovery (as in Docker): names resolve
  // to addresses on the networks tasks share on purpose, never to the ingress VIPs or task addresses.
  const ingress = new Set(doc.networks.filter((n) => n.ingress).map((n) => n.id))
  const tableOf = (network: string): Map<string, Entry> => {
    let table = byNetwork.get(network)
    if (table === undefined) byNetwork.set(network, table = new Map())
    return table
  }
  // Service members per (service id, network): local and remote endpoints alike, document order.
  const members = new Map<string, Member[]>()
  const addEndpoint = (e: Endpoint | RemoteEndpoint): void => {
    if (ingress.has(e.network)) return
    const table = tableOf(e.network)
    if (e.name !== undefined) {
      const named = entry('task-name', 'a', TASK_TTL, false, e.network)
      named.values.push({ value: e.ip, network: e.network })
      fold(table, e.name, named, false)
      const ptr = entry('ptr', 'ptr', TASK_TTL, false, e.network)
      ptr.values.push({ value: e.name, network: e.network })
      fold(table, reverseName(e.ip), ptr, false)
    }
    if (e.service !== undefined) {
      const key = `${e.service}\u0000${e.network}`
      let list = members.get(key)
      if (list === undefined) members.set(key, list = [])
      list.push({ ip: e.ip, name: e.name, healthy: e.healthy })
    }
  }
  for (const e of doc.endpoints) addEndpoint(e)
  for (const e of doc.remoteEndpoints) addEndpoint(e)

  for (const service of doc.services) {
    for (const attachment of service.networks) {
      const network = attachment.network
      if (ingress.has(network)) continue
      const table = tableOf(network)
      const healthy = (members.get(`${service.id}\u0000${network}`) ?? []).filter((m) => m.healthy)
      const vip = service.endpointMode === 'vip' ? attachment.vip : undefined
      addServiceNames(table, service, network, vip, healthy, attachment.aliases)
    }
  }
  return byNetwork
}

function addServiceNames (
  table: Map<string, Entry>, service: Service, network: string, vip: string | undefined, healthy: readonly Member[], aliases: readonly string[]
): void {
  const taskAddresses = (rule: Rule): Entry => {
    const e = entry(rule, 'a', TASK_TTL, true, network)
    for (const m of healthy) e.values.push({ value: m.ip, network })
    return e
  }
  const serviceAddresses = (rule: Rule): Entry => {
    if (vip === undefined) return taskAddresses(rule)
    const e = entry(rule, 'a', VIP_TTL, false, network)
    e.values.push({ value: vip, network })
    return e
  }
  fold(table, service.name, serviceAddresses(vip === undefined ? 'service-dnsrr' : 'service-vip'), false)
  fold(table, `tasks.${service.name}`, taskAddresses('tasks'), false)
  for (const alias of aliases) {
    fold(table, alias, serviceAddresses('alias'), false)
    fold(table, `tasks.${alias}`, taskAddresses('tasks'), false)
  }
  if (vip !== undefined) {
    const ptr = entry('ptr', 'ptr', VIP_TTL, false, network)
    ptr.values.push({ value: service.name, network })
    fold(table, reverseName(vip), ptr, false)
  }
  for (const port of service.ports) {
    if (port.name === undefined) continue
    const srv = entry('srv', 'srv', vip === undefined ? TASK_TTL : VIP_TTL, false, network)
    if (vip !== undefined) {
      srv.srv.push({ port: port.target, target: service.name, network })
      srv.glue.push({ name: service.name, ip: vip, network })
    } else {
      for (const m of healthy) {
        if (m.name === undefined) continue
        srv.srv.push({ port: port.target, target: m.name, network })
        srv.glue.push({ name: m.name, ip: m.ip, network })
      }
    }
    fold(table, `_${port.name}._${port.protocol}.${service.name}`, srv, false)
  }
}

function reverseName (ip: string): string {
  const [a, b, c, d] = ip.split('.')
  return `${d}.${c}.${b}.${a}.in-addr.arpa`
}

// ---------------------------------------------------------------------------
// Encoding. All answer RRs point at the question name, so an A RR depends
// only on (TTL, address) and is shared by every name and task that has it.

/** An answer A RR: owner pointer (2), type, class, TTL, RDLENGTH (10), address (4). */
export const A_RR_LENGTH = 16

class Encoder {
  /** TTL → address → RR: two levels, so a lookup builds no key string (one per A value of the document). */
  readonly #answerA = new Map<number, Map<string, Buffer>>()
  readonly #names = new Map<string, Buffer>()

  name (name: string): Buffer {
    let wire = this.#names.get(name)
    if (wire === undefined) this.#names.set(name, wire = encodeName(name))
    return wire
  }

  answerA (ttl: number, ip: string): Buffer {
    let byIp = this.#answerA.get(ttl)
    if (byIp === undefined) this.#answerA.set(ttl, byIp = new Map())
    let rr = byIp.get(ip)
    if (rr === undefined) {
      rr = Buffer.allocUnsafe(A_RR_LENGTH)
      rr.writeUInt16BE(0xc00c, 0)
      writeRrHeader(rr, 2, TYPE_A, ttl, 4)
      writeIPv4(rr, 12, ip)
      byIp.set(ip, rr)
    }
    return rr
  }

  glueA (ttl: number, name: string, ip: string): Buffer {
    const owner = this.name(name)
    const rr = Buffer.allocUnsafe(owner.length + 14)
    owner.copy(rr, 0)
    writeRrHeader(rr, owner.length, TYPE_A, ttl, 4)
    writeIPv4(rr, owner.length + 10, ip)
    return rr
  }

  answerPtr (ttl: number, target: string): Buffer {
    const rdata = this.name(target)
    const rr = Buffer.allocUnsafe(12 + rdata.length)
    rr.writeUInt16BE(0xc00c, 0)
    writeRrHeader(rr, 2, TYPE_PTR, ttl, rdata.length)
    rdata.copy(rr, 12)
    return rr
  }

  answerSrv (ttl: number, port: number, target: string): Buffer {
    const name = this.name(target) // uncompressed, as RFC 2782 requires
    const rr = Buffer.allocUnsafe(18 + name.length)
    rr.writeUInt16BE(0xc00c, 0)
    writeRrHeader(rr, 2, TYPE_SRV, ttl, 6 + name.length)
    rr.writeUInt16BE(0, 12) // priority
    rr.writeUInt16BE(0, 14) // weight
    rr.writeUInt16BE(port, 16)
    name.copy(rr, 18)
    return rr
  }
}

function writeRrHeader (rr: Buffer, at: number, type: number, ttl: number, rdlength: number): void {
  rr.writeUInt16BE(type, at)
  rr.writeUInt16BE(CLASS_IN, at + 2)
  rr.writeUInt32BE(ttl, at + 4)
  rr.writeUInt16BE(rdlength, at + 8)
}

/** `ip` comes from a validated document, so it parses. */
function writeIPv4 (rr: Buffer, at: number, ip: string): void {
  rr.writeUInt32BE(parseIpv4(ip)!, at)
}

const EMPTY: readonly Buffer[] = Object.freeze([])
const EMPTY_WIRE = Buffer.alloc(0)

/**
 * RRs as one section. A lone RR is its own section: nothing ever writes into
 * a table's buffers (answers copy from them), so sharing is safe, and most
 * names have one RR or none; concatenating each would allocate 90,000 buffers
 * for a 10,000-service document.
 */
function section (rrs: readonly Buffer[]): Buffer {
  return rrs.length === 0 ? EMPTY_WIRE : rrs.length === 1 ? rrs[0]! : Buffer.concat(rrs)
}

function encode (encoder: Encoder, name: string, e: Entry): RecordSet {
  const values: RecordValue[] = []
  let a = EMPTY
  let ptr = EMPTY
  let srv = EMPTY
  let additionals = EMPTY
  // An RRset holds no duplicates: the same address on two networks (overlapping subnets) is answered once.
  if (e.kind === 'a') {
    const seen = new Set<string>()
    const rrs: Buffer[] = []
    for (const v of e.values) {
      values.push({ type: 'A', value: v.value, ttl: e.ttl, network: v.network })
      if (seen.has(v.value)) continue
      seen.add(v.value)
      rrs.push(encoder.answerA(e.ttl, v.value))
    }
    a = rrs
  } else if (e.kind === 'ptr') {
    const seen = new Set<string>()
    const rrs: Buffer[] = []
    for (const v of e.values) {
      values.push({ type: 'PTR', value: `${v.value}.`, ttl: e.ttl, network: v.network })
      if (seen.has(v.value)) continue
      seen.add(v.value)
      rrs.push(encoder.answerPtr(e.ttl, v.value))
    }
    ptr = rrs
  } else {
    const seen = new Set<string>()
    const rrs: Buffer[] = []
    for (const v of e.srv) {
      const text = `0 0 ${v.port} ${v.target}.`
      values.push({ type: 'SRV', value: text, ttl: e.ttl, network: v.network })
      if (seen.has(text)) continue
      seen.add(text)
      rrs.push(encoder.answerSrv(e.ttl, v.port, v.target))
    }
    srv = rrs
    const glueSeen = new Set<string>()
    const glue: Buffer[] = []
    for (const g of e.glue) {
      const key = `${g.name} ${g.ip}`
      if (glueSeen.has(key)) continue
      glueSeen.add(key)
      glue.push(encoder.glueA(e.ttl, g.name, g.ip))
    }
    additionals = glue
  }
  return {
    name, rule: e.rule, networks: e.networks, ttl: e.ttl, a, rotate: e.rotate && a.length > 1, ptr, srv, additionals, values,
    aWire: section(a), ptrWire: section(ptr), srvWire: section(additionals.length === 0 ? srv : [...srv, ...additionals])
  }
}

function encodeTable (encoder: Encoder, entries: ReadonlyMap<string, Entry>): Map<string, RecordSet> {
  const out = new Map<string, RecordSet>()
  for (const [name, e] of entries) out.set(name, encode(encoder, name, e))
  return out
}

/**
 * The tables for one document. Pure: the same document gives equal tables.
 * Names that fail to encode cannot occur (the schema checks them); should one
 * slip through, encodeName's RangeError surfaces here, at document change
 * time, never per query.
 */
export function buildDnsTables (doc: DesiredState): DnsTables {
  const perNetwork = networkEntries(doc)
  const encoder = new Encoder()
  const bySet = new Map<string, { names: Map<string, RecordSet>, byKey: Map<string, RecordSet> }>()

  // The local tasks and their networks, in document order.
  const taskNetworks = new Map<string, string[]>()
  const taskNames = new Map<string, string>()
  for (const e of doc.endpoints) {
    let networks = taskNetworks.get(e.task)
    if (networks === undefined) taskNetworks.set(e.task, networks = [])
    if (!networks.includes(e.network)) networks.push(e.network)
    if (e.name !== undefined && !taskNames.has(e.task)) taskNames.set(e.task, e.name)
  }

  const tasks = new Map<string, TaskView>()
  const taskIds = new Map<string, string>()
  for (const [task, networks] of taskNetworks) {
    const sorted = [...networks].sort()
    const key = sorted.join('\u0000')
    let table = bySet.get(key)
    if (table === undefined) {
      let names: Map<string, RecordSet>
      if (sorted.length === 1) {
        names = encodeTable(encoder, perNetwork.get(sorted[0]!) ?? new Map())
      } else {
        const merged = new Map<string, Entry>()
        for (const network of sorted) {
          for (const [name, e] of perNetwork.get(network) ?? []) fold(merged, name, e, true)
        }
        names = encodeTable(encoder, merged)
      }
      table = { names, byKey: new Map([...names].map(([name, set]) => [nameKeyOf(name), set])) }
      bySet.set(key, table)
    }
    const name = taskNames.get(task) ?? null
    tasks.set(task, Object.freeze({ task, name, networks: Object.freeze(networks), names: table.names, byKey: table.byKey }))
    if (name !== null) taskIds.set(name, task)
  }
  return Object.freeze({ revision: doc.revision, tasks, taskIds })
}
