/**
 * How members reach each other. Raft asks little of a transport: messages may
 * be lost, duplicated, delayed or reordered (the protocol copes), but a
 * message must arrive whole and from the member it claims to be from (the
 * mutual-TLS transport checks the sender's certificate against `from`).
 *
 * Here: the port, a wire encoding any byte transport can use, and an
 * in-memory network for tests that can partition members and drop messages.
 */
import { RaftError } from './errors.ts'
import type { Entry, Message, NodeId, Snapshot } from './types.ts'

export interface Transport {
  /** Best effort: never throws for an unreachable peer, never blocks. */
  send (to: NodeId, message: Message): void
  /** The one handler for messages addressed to this member. */
  onMessage (handler: (message: Message) => void): void
}

// ── Wire encoding ──────────────────────────────────────────────────────────

/** One message as JSON text; entry and snapshot data as base64. */
export function encodeMessage (message: Message): string {
  return JSON.stringify(message, function (this: Record<string, unknown>, key: string, value: unknown) {
    // The holder's own value, before a Buffer's toJSON() turned it into a list of numbers.
    const raw = this[key]
    if (raw instanceof Uint8Array) return { b64: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') }
    return value
  })
}

const TYPES = new Set(['vote', 'voteResponse', 'append', 'appendResponse', 'heartbeat', 'heartbeatResponse', 'snapshot', 'timeoutNow'])
const KINDS = new Set(['normal', 'config', 'noop'])

/** Parses and checks a message from the wire; RAFT_ERR_DECODE when it is not one. */
export function decodeMessage (text: string): Message {
  let value: unknown
  try {
    value = JSON.parse(text, (key, v: unknown) => {
      if (v !== null && typeof v === 'object' && typeof (v as { b64?: unknown }).b64 === 'string' && Object.keys(v).length === 1) {
        return new Uint8Array(Buffer.from((v as { b64: string }).b64, 'base64'))
      }
      return v
    })
  } catch {
    throw new RaftError('RAFT_ERR_DECODE', 'a raft message that is not JSON')
  }
  const m = value as Record<string, unknown>
  const problems: string[] = []
  const int = (field: string): void => { if (!Number.isSafeInteger(m[field]) || (m[field] as number) < 0) problems.push(`${field}: not an index or term`) }
  const bool = (field: string): void => { if (typeof m[field] !== 'boolean') problems.push(`${field}: not a boolean`) }
  if (m === null || typeof m !== 'object' || !TYPES.has(m.type as string)) throw new RaftError('RAFT_ERR_DECODE', 'not a raft message')
  if (typeof m.from !== 'string' || typeof m.to !== 'string') problems.push('from, to: not member ids')
  int('term')
  switch (m.type) {
    case 'vote': bool('preVote'); bool('transfer'); int('lastIndex'); int('lastTerm'); break
    case 'voteResponse': bool('preVote'); bool('granted'); break
    case 'append':
      int('prevIndex'); int('prevTerm'); int('commit')
      if (!Array.isArray(m.entries) || !m.entries.every(isEntry)) problems.push('entries: not a list of entries')
      break
    case 'appendResponse': bool('success'); int('index'); int('hintIndex'); int('hintTerm'); break
    case 'heartbeat': int('commit'); break
    case 'snapshot': if (!isSnapshot(m.snapshot)) problems.push('snapshot: not a snapshot'); break
    default:
  }
  if (problems.length > 0) throw new RaftError('RAFT_ERR_DECODE', `malformed ${String(m.type)} message: ${problems.join('; ')}`, problems)
  return m as unknown as Message
}

function isEntry (value: unknown): value is Entry {
  const e = value as Entry
  return e !== null && typeof e === 'object' && Number.isSafeInteger(e.index) && e.index > 0 && Number.isSafeInteger(e.term) && e.term > 0 &&
    KINDS.has(e.kind) && e.data instanceof Uint8Array
}

function isSnapshot (value: unknown): value is Snapshot {
  const s = value as Snapshot
  return s !== null && typeof s === 'object' && Number.isSafeInteger(s.index) && Number.isSafeInteger(s.term) && s.data instanceof Uint8Array &&
    s.conf !== null && typeof s.conf === 'object' && Array.isArray(s.conf.voters) && s.conf.voters.every((v) => typeof v === 'string')
}

// ── In memory ──────────────────────────────────────────────────────────────

/**
 * Members of one process talking through the event loop. Each message goes
 * through the wire encoding (so nothing is shared between members by
 * reference) and is delivered on a later turn of the event loop, unless the
 * two members are cut off from each other.
 */
export class InMemoryNetwork {
  readonly #handlers = new Map<NodeId, (message: Message) => void>()
  readonly #cut = new Set<string>()
  /** Messages sent, by type, for tests. */
  readonly sent = new Map<Message['type'], number>()

  transport (id: NodeId): Transport {
    return {
      send: (to, message) => { this.#send(id, to, message) },
      onMessage: (handler) => { this.#handlers.set(id, handler) }
    }
  }

  /** Cuts every link between the groups (links within a group stay). */
  partition (...groups: ReadonlyArray<readonly NodeId[]>): void {
    for (const [a, group] of groups.entries()) {
      for (const [b, other] of groups.entries()) {
        if (a === b) continue
        for (const x of group) for (const y of other) this.#cut.add(`${x}>${y}`)
      }
    }
  }

  /** Cuts `id` off from every other member. */
  isolate (id: NodeId): void {
    const others = [...this.#handlers.keys()].filter((other) => other !== id)
    this.partition([id], others)
  }

  heal (): void {
    this.#cut.clear()
  }

  #send (from: NodeId, to: NodeId, message: Message): void {
    this.sent.set(message.type, (this.sent.get(message.type) ?? 0) + 1)
    if (this.#cut.has(`${from}>${to}`)) return
    const wire = encodeMessage(message)
    setImmediate(() => {
      if (this.#cut.has(`${from}>${to}`)) return
      this.#handlers.get(to)?.(decodeMessage(wire))
    })
  }
}
