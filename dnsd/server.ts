/**
 * dnsd's sockets: for every task, a UDP socket and a TCP listener bound to
 * 127.0.0.11:53 inside the task's namespace (created there by the native
 * addon, native-sockets.ts), all served by this one process. The socket a
 * query arrives on names the asking task, so no address mapping or NAT is
 * needed. UDP is served in batches (one call per batch of datagrams).
 *
 * Cluster names are answered from precomputed tables (answer.ts); anything
 * else goes to the forwarder. Tables are swapped whole on every document
 * change, so an answer never mixes two documents.
 */
import { join } from 'node:path'
import type { Socket as UdpSocket } from 'node:dgram'
import { createServer, type Server as TcpServer, type Socket as TcpSocket } from 'node:net'
import type { Logger } from 'pino'
import type { DesiredState } from '../netd/desired-state.ts'
import { answerQuery } from './answer.ts'
import { buildDnsTables, type DnsTables } from './records.ts'
import { fitForUdp, plainQuestionEnd } from './wire.ts'
import type { Forwarder } from './forwarder.ts'
import type { RateLimiter } from './rate-limit.ts'
import type { DnsMetrics } from './metrics.ts'
import { BatchUdpSocket, bindInNamespace, closeDescriptor } from './native-sockets.ts'

export const DNS_ADDRESS = '127.0.0.11'
const NETNS_DIR = '/run/netns'
const TCP_BACKLOG = 512
const TCP_IDLE_MS = 10_000
const TCP_MAX_PENDING = 2 * 65_537
/** What #answerNow returns when the answer has to come from an upstream resolver. */
const UPSTREAM = Symbol('upstream')

interface Listener {
  netns: string
  /** Stops serving UDP and releases its socket. */
  closeUdp: () => void
  tcp: TcpServer
  connections: Set<TcpSocket>
}

export interface DnsServerOptions {
  forwarder: Forwarder
  limiter: RateLimiter
  metrics: DnsMetrics
  log: Logger
  port?: number
}

export class DnsServer {
  readonly #forwarder: Forwarder
  readonly #limiter: RateLimiter
  readonly #metrics: DnsMetrics
  readonly #log: Logger
  readonly #port: number
  readonly #listeners = new Map<string, Listener>()
  readonly #attaching = new Map<string, Promise<void>>()
  #tables: DnsTables
  #rotation = 0

  constructor (options: DnsServerOptions, doc: DesiredState) {
    this.#forwarder = options.forwarder
    this.#limiter = options.limiter
    this.#metrics = options.metrics
    this.#log = options.log
    this.#port = options.port ?? 53
    this.#tables = buildDnsTables(doc)
  }

  get tables (): DnsTables {
    return this.#tables
  }

  get forwarder (): Forwarder {
    return this.#forwarder
  }

  /** New answers take effect for the very next query. */
  update (doc: DesiredState): void {
    this.#tables = buildDnsTables(doc)
  }

  /**
   * Makes the set of served task namespaces equal `tasks` (task id → namespace):
   * binds where missing, closes where gone. Failures are reported, not thrown:
   * the caller retries on its next reconcile.
   */
  async sync (tasks: ReadonlyMap<string, string>): Promise<string[]> {
    for (const [task, listener] of this.#listeners) {
      if (tasks.get(task) !== listener.netns) this.#detach(task)
    }
    const missing = [...tasks].filter(([task]) => !this.#listeners.has(task))
    const results = await Promise.allSettled(missing.map(async ([task, netns]) => await this.#attach(task, netns)))
    const errors = results.flatMap((result, index) => result.status === 'rejected' ? [`${missing[index]![0]}: ${(result.reason as Error).message}`] : [])
    this.#metrics.listeners.set(this.#listeners.size)
    return errors
  }

  async close (): Promise<void> {
    for (const task of [...this.#listeners.keys()]) this.#detach(task)
    this.#metrics.listeners.set(0)
    await this.#forwarder.close()
  }

  /** Serves a query as if it came from `task` (standalone mode, tests, `netd dns query`). */
  async resolve (task: string, query: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | null> {
    const now = this.#answerNow(task, query, transport)
    return now === UPSTREAM ? await this.#fromUpstream(query, transport) : now
  }

  async #attach (task: string, netns: string): Promise<void> {
    const pending = this.#attaching.get(task)
    if (pending) return await pending
    const attaching = this.#bind(netns).then(({ udp, tcp }) => {
      this.adoptBatch(task, netns, udp, tcp)
      this.#log.debug({ task, netns }, 'serving task namespace')
    }, (error: Error) => {
      this.#metrics.attachFailures.inc()
      this.#log.warn({ err: error, task, netns }, 'cannot bind DNS in task namespace')
      throw error
    }).finally(() => this.#attaching.delete(task))
    this.#attaching.set(task, attaching)
    await attaching
  }

  /**
   * Serves `task`'s queries on a UDP descriptor from bindInNamespace (in batches) and a TCP listener:
   * netd's task namespaces, or the standalone server on IPv4, where `place` names the listen address.
   */
  adoptBatch (task: string, place: string, udpFd: number, tcp: TcpServer): void {
    const listener = this.#listen(task, place, tcp)
    const udp: BatchUdpSocket = new BatchUdpSocket(udpFd, (query, peer) => this.#answerDatagram(task, listener, query, (response) => udp.send(response, peer)),
      (error) => this.#udpFailed(task, error))
    listener.closeUdp = () => udp.close()
  }

  /** `adoptBatch` for a node:dgram socket: the standalone server on IPv6, and tests. */
  adopt (task: string, place: string, udp: UdpSocket, tcp: TcpServer): void {
    const listener = this.#listen(task, place, tcp)
    listener.closeUdp = () => udp.close()
    udp.on('message', (message, peer) => {
      const send = (response: Buffer): void => { udp.send(response, peer.port, peer.address) }
      const now = this.#answerDatagram(task, listener, message, send)
      if (now !== null) send(now)
    })
    udp.on('error', (error) => this.#log.warn({ err: error, task }, 'udp socket error'))
  }

  #listen (task: string, place: string, tcp: TcpServer): Listener {
    const listener: Listener = { netns: place, closeUdp: () => {}, tcp, connections: new Set() }
    tcp.on('connection', (connection) => this.#onConnection(task, listener, connection))
    tcp.on('error', (error) => this.#log.warn({ err: error, task }, 'tcp listener error'))
    this.#listeners.set(task, listener)
    return listener
  }

  /**
   * The answer to a UDP query to send now, or null. An answer that must come from upstream is
   * given to `sendLater` when it arrives, if `listener` still serves `task` (a detached socket is closed).
   */
  #answerDatagram (task: string, listener: Listener, query: Buffer, sendLater: (response: Buffer) => void): Buffer | null {
    let now: Buffer | null | typeof UPSTREAM
    try {
      now = this.#answerNow(task, query, 'udp')
    } catch (error) {
      // Answered by silence: a UDP client retries.
      this.#udpFailed(task, error)
      return null
    }
    if (now !== UPSTREAM) return now
    // A batch's query is a view into the receive buffer the next batch reuses: the wait needs a copy.
    this.#fromUpstream(Buffer.from(query), 'udp').then((response) => {
      if (this.#listeners.get(task) === listener) sendLater(response)
    }, (error: unknown) => this.#udpFailed(task, error))
    return null
  }

  #detach (task: string): void {
    const listener = this.#listeners.get(task)
    if (!listener) return
    this.#listeners.delete(task)
    listener.closeUdp()
    listener.tcp.close()
    for (const connection of listener.connections) connection.destroy()
  }

  /** 127.0.0.11:port inside `netns`: a UDP descriptor and a listening TCP server. */
  async #bind (netns: string): Promise<{ udp: number, tcp: TcpServer }> {
    const path = join(NETNS_DIR, netns)
    const udp = bindInNamespace(path, 'udp', DNS_ADDRESS, this.#port)
    let tcpFd: number
    try {
      tcpFd = bindInNamespace(path, 'tcp', DNS_ADDRESS, this.#port)
    } catch (error) {
      closeDescriptor(udp)
      throw error
    }
    const tcp = createServer()
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject)
        tcp.listen({ fd: tcpFd, backlog: TCP_BACKLOG }, () => { tcp.off('error', reject); resolve() })
      })
    } catch (error) {
      closeDescriptor(udp)
      tcp.close()
      throw error
    }
    return { udp, tcp }
  }

  #udpFailed (task: string, error: unknown): void {
    this.#log.error({ err: error, task }, 'udp query failed')
  }

  #onConnection (task: string, listener: Listener, connection: TcpSocket): void {
    listener.connections.add(connection)
    connection.setTimeout(TCP_IDLE_MS, () => connection.destroy())
    connection.on('close', () => listener.connections.delete(connection))
    connection.on('error', () => connection.destroy())
    let pending: Buffer = Buffer.alloc(0)
    connection.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      if (pending.length > TCP_MAX_PENDING) {
        connection.destroy()
        return
      }
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const message = pending.subarray(2, 2 + pending.readUInt16BE(0))
        pending = pending.subarray(2 + message.length)
        this.resolve(task, Buffer.from(message), 'tcp').then((response) => {
          if (!response || connection.destroyed) return
          const frame = Buffer.allocUnsafe(2 + response.length)
          frame.writeUInt16BE(response.length, 0)
          response.copy(frame, 2)
          connection.write(frame)
        }, (error: unknown) => this.#log.error({ err: error, task }, 'tcp query failed'))
      }
    })
  }

  /**
   * Everything that needs no waiting: local answers, errors, drops (null) and
   * forward-cache hits; UPSTREAM when an upstream resolver has to be asked.
   */
  #answerNow (task: string, query: Buffer, transport: 'udp' | 'tcp'): Buffer | null | typeof UPSTREAM {
    if (!this.#limiter.allow(task, Date.now())) {
      this.#metrics.queries.add('rate_limited', transport)
      return null
    }
    this.#rotation = (this.#rotation + 1) & 0x3fffffff
    const outcome = answerQuery(this.#tables, task, query, transport, this.#rotation)
    switch (outcome.kind) {
      case 'answer':
        this.#metrics.queries.add('local', transport)
        return outcome.response
      case 'error':
        this.#metrics.queries.add('error', transport)
        return outcome.response
      case 'drop':
        this.#metrics.queries.add('dropped', transport)
        return null
      case 'forward': {
        const cached = this.#forwarder.cached(query, outcome.questionEnd, outcome.nameKey)
        if (cached === null) return UPSTREAM
        this.#metrics.queries.add('cached', transport)
        return transport === 'udp' ? fitForUdp(cached, query, outcome.questionEnd) : cached
      }
    }
  }

  /** A query #answerNow passed on (a plain one, wire.ts: a forward outcome). */
  async #fromUpstream (query: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer> {
    const stopTimer = this.#metrics.forwardSeconds.startTimer()
    const result = await this.#forwarder.resolveUpstream(query)
    stopTimer()
    this.#metrics.queries.add(result.source === 'servfail' ? 'servfail' : 'forwarded', transport)
    return transport === 'udp' ? fitForUdp(result.response, query, plainQuestionEnd(query)) : result.response
  }
}
