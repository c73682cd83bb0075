/**
 * The forwarder: every query that is not a cluster name goes to the node's
 * upstream resolvers, in order, one attempt each.
 *
 * - Each attempt carries a fresh random 16-bit ID; a reply counts only if its
 *   ID, source address:port and question match the attempt (anything else is
 *   counted and dropped, so a spoofer must guess all three).
 * - UDP goes through one connected socket per upstream, shared by all queries
 *   to it and replaced after UDP_SOCKET_QUERIES queries so the source port
 *   changes now and then. Connecting it makes the kernel filter foreign sources
 *   and report ICMP port-unreachable as ECONNREFUSED, so a dead upstream fails
 *   fast instead of after a timeout. Sockets are created in this process, i.e.
 *   in the node's namespace, never in a task's.
 * - An attempt fails on timeout, socket error, ICMP refusal or an upstream
 *   SERVFAIL/REFUSED; the next upstream is tried. A truncated UDP answer is
 *   asked again over TCP (RFC 1035 §4.2.2 length framing) of the same upstream.
 *   When every upstream fails, the client gets SERVFAIL built from its query.
 * - Malformed or mismatching replies never settle an attempt: the attempt
 *   waits for a good one or times out.
 *
 * The answer keeps the client's ID and question bytes and is never truncated
 * here (TCP answers may exceed the client's UDP size: the server truncates).
 * Byte-level work lives in pure modules: rr-walk.ts, forward-message.ts,
 * forward-cache.ts.
 */
import { randomInt } from 'node:crypto'
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram'
import { connect, isIP, type Socket as TcpSocket } from 'node:net'
import type { Logger } from 'pino'
import { z } from 'zod'
import { DnsdError } from './errors.ts'
import type { ForwardCache } from './forward-cache.ts'
import { buildServfail, restoreClientView, withId } from './forward-message.ts'
import type { ForwarderMetrics } from './forwarder-metrics.ts'
import { sameQuestion, walkMessage, type WalkedMessage, type WalkedQuestion } from './rr-walk.ts'
import { RCODE } from './wire.ts'

export interface Upstream {
  readonly address: string
  readonly port: number
}

export interface ForwarderOptions {
  readonly upstreams: readonly Upstream[]
  /** Per attempt, in milliseconds; default 1500. */
  readonly timeoutMs?: number
  readonly cache?: ForwardCache | null
  /** This component's child logger, e.g. `log.child({ component: 'forwarder' })`. */
  readonly log: Logger
  readonly metrics?: ForwarderMetrics
}

export interface ForwardResult {
  readonly response: Buffer
  readonly source: 'cache' | 'upstream' | 'servfail'
  /** `address:port` (`[v6]:port`) of the upstream that answered, else null. */
  readonly upstream: string | null
  readonly transport: 'udp' | 'tcp' | null
}

export interface ForwarderStats {
  readonly ignoredUnknownId: number
  readonly ignoredMismatch: number
  readonly ignoredMalformed: number
  /** UDP sockets currently open (one per upstream in use, plus retiring ones). */
  readonly udpSockets: number
  readonly tcpConnections: number
}

export const FORWARDER_DEFAULTS = Object.freeze({ timeoutMs: 1500 })
// Queries sent through one UDP socket before a fresh one (new source port) takes over.
const UDP_SOCKET_QUERIES = 5000
// Tries to find a 16-bit ID not in flight on a socket before giving up on the attempt.
const ID_TRIES = 16

const upstreamSchema = z.object({
  address: z.string().refine((a) => isIP(a) !== 0, 'must be an IPv4 or IPv6 address'),
  port: z.number().int().min(1).max(65535)
})
const optionsSchema = z.object({
  upstreams: z.array(upstreamSchema),
  timeoutMs: z.number().int().min(1).max(60_000).default(FORWARDER_DEFAULTS.timeoutMs)
})

type Failure = 'timeout' | 'port_unreachable' | 'error' | 'closed' | 'busy'
type Outcome =
  | { readonly kind: 'answer', readonly response: Buffer, readonly walked: WalkedMessage }
  | { readonly kind: 'failed', readonly reason: Failure }
type IgnoreReason = 'unknown_id' | 'mismatch' | 'malformed'

interface Pending {
  readonly question: WalkedQuestion
  settle (outcome: Outcome): void
}

interface UdpChannel {
  readonly key: string
  readonly upstream: Upstream
  readonly canonical: string
  readonly socket: UdpSocket
  readonly ready: Promise<boolean>
  readonly pending: Map<number, Pending>
  sent: number
  retired: boolean
  closed: boolean
}

/** Comparable form of an address: zone dropped, IPv6 compressed canonically. */
export function canonicalAddress (address: string): string {
  const bare = address.split('%')[0] ?? address
  if (!bare.includes(':')) return bare
  try {
    return new URL(`http://[${bare}]/`).hostname.slice(1, -1)
  } catch {
    return bare.toLowerCase()
  }
}

export function upstreamLabel (upstream: Upstream): string {
  return upstream.address.includes(':') ? `[${upstream.address}]:${upstream.port}` : `${upstream.address}:${upstream.port}`
}

function validUpstreams (upstreams: readonly Upstream[], timeoutMs?: number): { upstreams: readonly Upstream[], timeoutMs: number } {
  const parsed = optionsSchema.safeParse({ upstreams, timeoutMs })
  if (!parsed.success) {
    throw new DnsdError('DNSD_ERR_CONFIG', 'invalid forwarder options', parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`))
  }
  return { upstreams: Object.freeze(parsed.data.upstreams.map((u) => Object.freeze({ ...u }))), timeoutMs: parsed.data.timeoutMs }
}

/** The walked query, or DNSD_ERR_BAD_QUERY for bytes that are not a query with one readable question. */
function walkQuery (query: Buffer): WalkedMessage & { question: WalkedQuestion } {
  const walked = walkMessage(query)
  if (walked === null || walked.qr || walked.qdcount !== 1 || walked.question === null) {
    throw new DnsdError('DNSD_ERR_BAD_QUERY', 'not a DNS query with exactly one readable question')
  }
  return walked as WalkedMessage & { question: WalkedQuestion }
}

export class Forwarder {
  #upstreams: readonly Upstream[]
  readonly #timeoutMs: number
  readonly #cache: ForwardCache | null
  readonly #log: Logger
  readonly #metrics: ForwarderMetrics | null
  // Live channel per upstream key; #open also holds retired ones still draining.
  readonly #channels = new Map<string, UdpChannel>()
  readonly #open = new Set<UdpChannel>()
  readonly #tcp = new Map<TcpSocket, (outcome: Outcome) => void>()
  readonly #ignored = { unknown_id: 0, mismatch: 0, malformed: 0 }
  #closed = false

  constructor (options: ForwarderOptions) {
    const valid = validUpstreams(options.upstreams, options.timeoutMs)
    this.#upstreams = valid.upstreams
    this.#timeoutMs = valid.timeoutMs
    this.#cache = options.cache ?? null
    // The caller binds the component's child logger (netd's convention).
    this.#log = options.log
    this.#metrics = options.metrics ?? null
    if (this.#upstreams.length === 0) this.#log.warn('no upstream resolvers: every forwarded query will get SERVFAIL')
  }

  get upstreams (): readonly Upstream[] { return this.#upstreams }

  get stats (): ForwarderStats {
    return {
      ignoredUnknownId: this.#ignored.unknown_id,
      ignoredMismatch: this.#ignored.mismatch,
      ignoredMalformed: this.#ignored.malformed,
      udpSockets: this.#open.size,
      tcpConnections: this.#tcp.size
    }
  }

  /** Replaces the upstream list; attempts in flight finish against the old one. */
  setUpstreams (upstreams: readonly Upstream[]): void {
    const valid = validUpstreams(upstreams, this.#timeoutMs)
    this.#upstreams = valid.upstreams
    const keep = new Set(valid.upstreams.map((u) => this.#key(u)))
    for (const channel of [...this.#channels.values()]) {
      if (!keep.has(channel.key)) this.#retire(channel)
    }
    if (this.#upstreams.length === 0) this.#log.warn('no upstream resolvers: every forwarded query will get SERVFAIL')
  }

  /**
   * Answers `query` (raw bytes from a client) from the cache or upstream, or
   * with SERVFAIL. Throws DNSD_ERR_BAD_QUERY only for bytes that are not a
   * query with one readable question; the server should have answered those
   * with FORMERR already.
   */
  async resolve (query: Buffer): Promise<ForwardResult> {
    const walked = walkQuery(query)
    const cached = this.#cache === null ? null : this.#cache.get(query, walked)
    if (cached !== null) return { response: cached, source: 'cache', upstream: null, transport: null }
    return await this.#fromUpstream(query, walked)
  }

  /**
   * The cached answer to a query wire.ts calls plain (`plainQuestionEnd`
   * gave `end`, `nameKey` gave `name`), synchronously: dnsd's hot path for
   * forwarded names, no promise and no walk. Null on a miss;
   * `resolveUpstream` takes it from there.
   */
  cached (query: Buffer, end: number, name: string): Buffer | null {
    return this.#cache === null ? null : this.#cache.getPlain(query, end, name)
  }

  /** `resolve` without looking in the cache, for a query `cached` just missed. */
  async resolveUpstream (query: Buffer): Promise<ForwardResult> {
    return await this.#fromUpstream(query, walkQuery(query))
  }

  async #fromUpstream (query: Buffer, walked: WalkedMessage & { question: WalkedQuestion }): Promise<ForwardResult> {
    const failures: string[] = []
    // A snapshot: setUpstreams replaces the array, never mutates it.
    for (const upstream of this.#upstreams) {
      if (this.#closed) break
      const label = upstreamLabel(upstream)
      let transport: 'udp' | 'tcp' = 'udp'
      let outcome = await this.#timed('udp', () => this.#udpAttempt(upstream, query, walked))
      if (outcome.kind === 'answer' && outcome.walked.tc) {
        this.#metrics?.attempts.inc({ upstream: label, transport, outcome: 'truncated' })
        transport = 'tcp'
        outcome = await this.#timed('tcp', () => this.#tcpAttempt(upstream, query, walked))
      }
      let result: string = outcome.kind === 'failed' ? outcome.reason : 'answer'
      if (outcome.kind === 'answer' && outcome.walked.rcode === RCODE.SERVFAIL) result = 'servfail'
      if (outcome.kind === 'answer' && outcome.walked.rcode === RCODE.REFUSED) result = 'refused'
      this.#metrics?.attempts.inc({ upstream: label, transport, outcome: result })
      if (outcome.kind === 'failed' || result !== 'answer') {
        failures.push(`${label}/${transport}: ${result}`)
        this.#log.debug({ upstream: label, transport, outcome: result }, 'upstream attempt failed')
        continue
      }
      const response = restoreClientView(Buffer.from(outcome.response), outcome.walked, query, walked)
      this.#cache?.set(query, response, walked, outcome.walked)
      if (this.#metrics !== null) this.#metrics.answered.upstream++
      return { response, source: 'upstream', upstream: label, transport }
    }
    if (this.#metrics !== null) this.#metrics.answered.servfail++
    this.#log.warn({ qname: walked.question.name, qtype: walked.question.type, failures }, 'every upstream failed, answering SERVFAIL')
    return { response: buildServfail(query, walked), source: 'servfail', upstream: null, transport: null }
  }

  /** Fails what is in flight (those queries get SERVFAIL) and releases every socket. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const finish of [...this.#tcp.values()]) finish({ kind: 'failed', reason: 'closed' })
    const closing: Promise<void>[] = []
    for (const channel of [...this.#open]) {
      this.#failAll(channel, 'closed')
      closing.push(this.#closeChannel(channel))
    }
    this.#channels.clear()
    await Promise.all(closing)
  }

  async #timed (transport: 'udp' | 'tcp', attempt: () => Promise<Outcome>): Promise<Outcome> {
    const end = this.#metrics?.attemptSeconds.startTimer({ transport })
    try {
      return await attempt()
    } finally {
      end?.()
    }
  }

  #key (upstream: Upstream): string {
    return `${canonicalAddress(upstream.address)}|${upstream.port}`
  }

  #ignore (reason: IgnoreReason): void {
    this.#ignored[reason]++
    this.#metrics?.ignoredReplies.inc({ reason })
  }

  #channelFor (upstream: Upstream): UdpChannel {
    const key = this.#key(upstream)
    const existing = this.#channels.get(key)
    if (existing !== undefined && !existing.retired) return existing
    const socket = createSocket({ type: isIP(upstream.address) === 6 ? 'udp6' : 'udp4' })
    let connected: (ok: boolean) => void = () => {}
    const channel: UdpChannel = {
      key,
      upstream,
      canonical: canonicalAddress(upstream.address),
      socket,
      ready: new Promise<boolean>((resolve) => { connected = resolve }),
      pending: new Map(),
      sent: 0,
      retired: false,
      closed: false
    }
    socket.on('message', (message, rinfo) => this.#onReply(channel, message, rinfo))
    socket.on('error', (error) => this.#onSocketError(channel, error))
    socket.on('close', () => { channel.closed = true; this.#open.delete(channel) })
    // The callback receives the error at runtime although @types/node omits it.
    socket.connect(upstream.port, upstream.address, ((error?: Error) => {
      if (error !== undefined && error !== null) {
        this.#log.warn({ upstream: upstreamLabel(upstream), err: error }, 'cannot connect UDP socket to upstream')
        this.#retire(channel)
        connected(false)
      } else {
        connected(true)
      }
    }) as () => void)
    this.#channels.set(key, channel)
    this.#open.add(channel)
    return channel
  }

  async #udpAttempt (upstream: Upstream, query: Buffer, walked: WalkedMessage): Promise<Outcome> {
    if (this.#closed) return { kind: 'failed', reason: 'closed' }
    const channel = this.#channelFor(upstream)
    if (!(await channel.ready) || channel.closed) return { kind: 'failed', reason: 'error' }
    if (this.#closed) return { kind: 'failed', reason: 'closed' }
    let id = -1
    for (let i = 0; i < ID_TRIES && id < 0; i++) {
      const candidate = randomInt(65536)
      if (!channel.pending.has(candidate)) id = candidate
    }
    if (id < 0) return { kind: 'failed', reason: 'busy' }
    const question = walked.question as WalkedQuestion
    const packet = withId(query, id)
    return await new Promise<Outcome>((resolve) => {
      let done = false
      const pending: Pending = {
        question,
        settle: (outcome) => {
          if (done) return
          done = true
          clearTimeout(timer)
          if (channel.pending.get(id) === pending) channel.pending.delete(id)
          if (channel.retired && channel.pending.size === 0) void this.#closeChannel(channel)
          resolve(outcome)
        }
      }
      const timer = setTimeout(() => pending.settle({ kind: 'failed', reason: 'timeout' }), this.#timeoutMs)
      channel.pending.set(id, pending)
      channel.socket.send(packet, (error) => {
        if (error) pending.settle({ kind: 'failed', reason: 'error' })
      })
      if (++channel.sent >= UDP_SOCKET_QUERIES) this.#retire(channel)
    })
  }

  #onReply (channel: UdpChannel, message: Buffer, rinfo: RemoteInfo): void {
    if (message.length < 12) return this.#ignore('malformed')
    const pending = channel.pending.get(message.readUInt16BE(0))
    if (pending === undefined) return this.#ignore('unknown_id')
    if (rinfo.port !== channel.upstream.port || canonicalAddress(rinfo.address) !== channel.canonical) return this.#ignore('mismatch')
    const walked = walkMessage(message)
    if (walked === null) return this.#ignore('malformed')
    if (!walked.qr || walked.qdcount !== 1 || !sameQuestion(walked.question, pending.question)) return this.#ignore('mismatch')
    pending.settle({ kind: 'answer', response: message, walked })
  }

  #onSocketError (channel: UdpChannel, error: NodeJS.ErrnoException): void {
    // On a connected socket ECONNREFUSED is the ICMP port-unreachable of the
    // one upstream it talks to: everything in flight there is lost, the socket
    // itself stays usable.
    if (error.code === 'ECONNREFUSED') {
      this.#log.debug({ upstream: upstreamLabel(channel.upstream) }, 'upstream port unreachable')
      this.#failAll(channel, 'port_unreachable')
      return
    }
    this.#log.warn({ upstream: upstreamLabel(channel.upstream), err: error }, 'UDP socket error, replacing the socket')
    this.#failAll(channel, 'error')
    this.#retire(channel)
  }

  #failAll (channel: UdpChannel, reason: Failure): void {
    for (const pending of [...channel.pending.values()]) pending.settle({ kind: 'failed', reason })
  }

  #retire (channel: UdpChannel): void {
    channel.retired = true
    if (this.#channels.get(channel.key) === channel) this.#channels.delete(channel.key)
    if (channel.pending.size === 0) void this.#closeChannel(channel)
  }

  async #closeChannel (channel: UdpChannel): Promise<void> {
    if (channel.closed) return
    channel.closed = true
    this.#open.delete(channel)
    await new Promise<void>((resolve) => {
      try {
        channel.socket.close(() => resolve())
      } catch {
        resolve() // already closed by an error path
      }
    })
  }

  #tcpAttempt (upstream: Upstream, query: Buffer, walked: WalkedMessage): Promise<Outcome> {
    if (this.#closed) return Promise.resolve({ kind: 'failed', reason: 'closed' })
    const question = walked.question as WalkedQuestion
    const id = randomInt(65536)
    const packet = withId(query, id)
    const frame = Buffer.alloc(2 + packet.length)
    frame.writeUInt16BE(packet.length, 0)
    packet.copy(frame, 2)
    return new Promise<Outcome>((resolve) => {
      const socket = connect({ host: upstream.address, port: upstream.port, noDelay: true })
      let buffered: Buffer = Buffer.alloc(0)
      let done = false
      const finish = (outcome: Outcome): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        this.#tcp.delete(socket)
        socket.destroy()
        resolve(outcome)
      }
      const timer = setTimeout(() => finish({ kind: 'failed', reason: 'timeout' }), this.#timeoutMs)
      this.#tcp.set(socket, finish)
      socket.on('connect', () => socket.write(frame))
      socket.on('data', (chunk: Buffer) => {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
        if (buffered.length < 2) return
        const length = buffered.readUInt16BE(0)
        if (buffered.length < 2 + length) return
        // The connection is ours alone: a wrong reply on it is a failed attempt.
        const message = Buffer.from(buffered.subarray(2, 2 + length))
        const reply = walkMessage(message)
        if (reply === null) {
          this.#ignore('malformed')
          return finish({ kind: 'failed', reason: 'error' })
        }
        if (reply.id !== id || !reply.qr || reply.qdcount !== 1 || !sameQuestion(reply.question, question)) {
          this.#ignore('mismatch')
          return finish({ kind: 'failed', reason: 'error' })
        }
        finish({ kind: 'answer', response: message, walked: reply })
      })
      socket.on('error', (error: NodeJS.ErrnoException) => finish({ kind: 'failed', reason: error.code === 'ECONNREFUSED' ? 'port_unreachable' : 'error' }))
      socket.on('close', () => finish({ kind: 'failed', reason: 'error' }))
    })
  }
}
