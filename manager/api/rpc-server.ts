/**
 * The manager side of the API, over any authenticated byte stream: a table
 * of methods, and one session per connection that reads requests, checks
 * who may call what, runs handlers and writes their answers.
 *
 * Who the peer is comes from the transport (mtls.ts: the certificate the
 * peer presented, or nobody), never from a message. Each method says which
 * roles may call it; by default any node with a certificate, never an
 * anonymous peer — only the join method admits those.
 *
 * A session never lets a peer hurt the server: a bad or oversize frame
 * closes that connection alone; requests in flight are bounded; a peer that
 * stops reading is disconnected before its unread answers pile up; a
 * handler's failure becomes an error answer, and one without a registry
 * code is logged here and reported only as API_ERR_INTERNAL.
 */
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { z } from 'zod'
import type { NodeIdentity, NodeRole } from '../ca/node-identity.ts'
import { ApiError, REGISTRY_CODE } from './errors.ts'
import { encodeFrame, FrameReader } from './frame.ts'
import { requestSchema, type Request, type Response, type WireError } from './protocol.ts'

/** A peer that presented a node certificate of this swarm. */
export interface NodePeer extends NodeIdentity {
  readonly kind: 'node'
  /** `ip:port` of the connection. */
  readonly address: string
}

/** A peer without a certificate: it may only join. */
export interface AnonymousPeer {
  readonly kind: 'anonymous'
  readonly address: string
}

export type Peer = NodePeer | AnonymousPeer

/** Who may call a method: node roles, and `anonymous` for peers without a certificate. */
export type Access = NodeRole | 'anonymous'

export const NODES: readonly Access[] = Object.freeze(['worker', 'manager'])

export interface MethodOptions<P> {
  /** Default: any node (worker or manager); never anonymous unless listed. */
  readonly allow?: readonly Access[]
  /** Checked before the handler runs; a mismatch answers API_ERR_INVALID_PARAMS. */
  readonly params?: z.ZodType<P>
}

export type CallHandler<P = unknown> = (params: P, peer: Peer) => unknown
/**
 * Runs for as long as the stream lasts: sends events with `push`, and
 * returns (or its promise settles) when the stream is over — resolved: the
 * node sees the end; rejected: the node sees the error. `signal` aborts when
 * the node unsubscribes or disconnects, or the server closes; the handler
 * should then release what it holds and return. Pushes after that are dropped.
 */
export type StreamHandler<P = unknown> = (params: P, peer: Peer, push: (event: unknown) => void, signal: AbortSignal) => unknown

interface Method {
  readonly kind: 'call' | 'stream'
  readonly allow: readonly Access[]
  readonly params: z.ZodType | undefined
  readonly handler: CallHandler<never> | StreamHandler<never>
}

export interface SessionLimits {
  readonly maxFrameBytes: number
  /** Calls and streams in flight at once on one connection. */
  readonly maxPending: number
  /** Unsent bytes a connection may hold before its peer counts as not reading. */
  readonly maxBufferedBytes: number
}

export interface SessionStats {
  requests: number
}

export class RpcRouter {
  readonly #methods = new Map<string, Method>()

  handle<P = unknown> (method: string, handler: CallHandler<P>, options: MethodOptions<P> = {}): void {
    this.#add(method, 'call', handler as CallHandler<never>, options)
  }

  stream<P = unknown> (method: string, handler: StreamHandler<P>, options: MethodOptions<P> = {}): void {
    this.#add(method, 'stream', handler as StreamHandler<never>, options)
  }

  get (method: string): Method | undefined {
    return this.#methods.get(method)
  }

  #add (name: string, kind: Method['kind'], handler: Method['handler'], options: MethodOptions<unknown>): void {
    if (this.#methods.has(name)) throw new ApiError('API_ERR_CONFIG', `method ${name} is already registered`)
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(name)) throw new ApiError('API_ERR_CONFIG', `method name "${name}" must be 1-128 letters, digits, dots, dashes and underscores`)
    const allow = Object.freeze([...(options.allow ?? NODES)])
    if (allow.length === 0) throw new ApiError('API_ERR_CONFIG', `method ${name} allows nobody`)
    this.#methods.set(name, { kind, allow, params: options.params, handler })
  }
}

/** One connection's requests, answered in the order their handlers finish. */
export class ServerSession {
  readonly #socket: Duplex
  readonly #peer: Peer
  readonly #router: RpcRouter
  readonly #limits: SessionLimits
  readonly #log: Logger
  readonly #stats: SessionStats
  readonly #reader: FrameReader
  /** Calls in flight (value undefined) and open streams (their abort controller), by id. */
  readonly #pending = new Map<number, AbortController | undefined>()
  #closed = false

  constructor (socket: Duplex, peer: Peer, router: RpcRouter, limits: SessionLimits, log: Logger, stats: SessionStats) {
    this.#socket = socket
    this.#peer = peer
    this.#router = router
    this.#limits = limits
    this.#log = log
    this.#stats = stats
    this.#reader = new FrameReader(limits.maxFrameBytes)
    socket.on('data', (chunk: Buffer) => this.#receive(chunk))
    socket.on('close', () => this.#abortAll())
  }

  get peer (): Peer {
    return this.#peer
  }

  /** Sends a connection-level error, then ends the connection. */
  fail (error: WireError): void {
    if (this.#closed) return
    this.#send({ type: 'error', id: null, error })
    this.#close()
  }

  /** Aborts every stream and ends the connection gracefully. */
  close (): void {
    this.#close()
  }

  #close (): void {
    if (this.#closed) return
    this.#closed = true
    this.#abortAll()
    this.#socket.end()
  }

  #abortAll (): void {
    this.#closed = true
    for (const controller of this.#pending.values()) controller?.abort()
    this.#pending.clear()
  }

  #receive (chunk: Buffer): void {
    if (this.#closed) return
    let messages: unknown[]
    try {
      messages = this.#reader.push(chunk)
    } catch (error) {
      const wire = toWire(error)
      this.#log.warn({ peer: describe(this.#peer), code: wire.code, err: error }, 'closing connection after a bad frame')
      this.fail(wire)
      return
    }
    for (const message of messages) {
      if (this.#closed) return
      const parsed = requestSchema.safeParse(message)
      if (!parsed.success) {
        this.#log.warn({ peer: describe(this.#peer), issues: parsed.error.issues.length }, 'closing connection after a malformed request')
        this.fail({ code: 'API_ERR_PROTOCOL', message: `malformed request: ${parsed.error.issues[0]?.message ?? 'unknown shape'}` })
        return
      }
      this.#dispatch(parsed.data)
    }
  }

  #dispatch (request: Request): void {
    if (request.type === 'unsubscribe') {
      const controller = this.#pending.get(request.id)
      if (controller !== undefined) {
        this.#pending.delete(request.id)
        controller.abort()
      }
      return
    }
    this.#stats.requests++
    const { id } = request
    if (this.#pending.has(id)) {
      this.#error(id, new ApiError('API_ERR_PROTOCOL', `request id ${id} is already in use on this connection`))
      return
    }
    if (this.#pending.size >= this.#limits.maxPending) {
      this.#error(id, new ApiError('API_ERR_BUSY', `more than ${this.#limits.maxPending} calls and streams in flight on this connection`))
      return
    }
    let params: unknown
    try {
      params = this.#admit(request.type, request.method, request.params)
    } catch (error) {
      this.#error(id, error)
      return
    }
    const method = this.#router.get(request.method)!
    if (method.kind === 'call') this.#call(id, request.method, method.handler as CallHandler, params)
    else this.#stream(id, request.method, method.handler as StreamHandler, params)
  }

  /** The params a handler receives, once the method exists and the peer may use it this way. */
  #admit (type: 'call' | 'subscribe', name: string, params: unknown): unknown {
    const method = this.#router.get(name)
    if (method === undefined) throw new ApiError('API_ERR_UNKNOWN_METHOD', `no method ${name}`)
    const wanted = type === 'call' ? 'call' : 'stream'
    if (method.kind !== wanted) {
      throw new ApiError('API_ERR_UNKNOWN_METHOD', method.kind === 'stream' ? `${name} is a stream: subscribe to it` : `${name} is a call, not a stream`)
    }
    const peer = this.#peer
    const access: Access = peer.kind === 'anonymous' ? 'anonymous' : peer.role
    if (!method.allow.includes(access)) {
      if (peer.kind === 'anonymous') throw new ApiError('API_ERR_UNAUTHENTICATED', `${name} needs a node certificate: join the swarm first`)
      const roles = method.allow.filter((a) => a !== 'anonymous').map((a) => `${a}s`).join(' and ')
      throw new ApiError('API_ERR_FORBIDDEN', `${name} is for ${roles || 'nodes joining the swarm'}; node ${peer.nodeId} is a ${peer.role}`)
    }
    if (method.params === undefined) return params
    const parsed = method.params.safeParse(params)
    if (!parsed.success) {
      const details = parsed.error.issues.map((issue) => `${issue.path.join('.') || 'params'}: ${issue.message}`)
      throw new ApiError('API_ERR_INVALID_PARAMS', `invalid params for ${name}: ${details.join('; ')}`, details)
    }
    return parsed.data
  }

  #call (id: number, name: string, handler: CallHandler, params: unknown): void {
    this.#pending.set(id, undefined)
    const settle = (response: Response): void => {
      if (!this.#pending.has(id) || this.#pending.get(id) !== undefined) return
      this.#pending.delete(id)
      this.#send(response)
    }
    run(() => handler(params, this.#peer)).then(
      (result) => settle({ type: 'result', id, result: result ?? null }),
      (error: unknown) => settle({ type: 'error', id, error: this.#toWireLogged(error, name) })
    )
  }

  #stream (id: number, name: string, handler: StreamHandler, params: unknown): void {
    const controller = new AbortController()
    this.#pending.set(id, controller)
    const open = (): boolean => !controller.signal.aborted && this.#pending.get(id) === controller
    const push = (event: unknown): void => {
      if (!open()) return
      if (!this.#send({ type: 'event', id, event: event ?? null })) {
        // The event could not be framed (too large): end the stream with the reason rather than skip an event silently.
        this.#pending.delete(id)
        controller.abort()
        this.#send({ type: 'error', id, error: { code: 'API_ERR_FRAME_TOO_LARGE', message: `an event of ${name} exceeds the frame limit of ${this.#limits.maxFrameBytes} bytes` } })
      }
    }
    this.#send({ type: 'started', id })
    run(() => handler(params, this.#peer, push, controller.signal)).then(
      () => {
        if (!open()) return
        this.#pending.delete(id)
        this.#send({ type: 'end', id })
      },
      (error: unknown) => {
        if (!open()) {
          if (!isAbort(error)) this.#log.debug({ method: name, err: error }, 'stream handler failed after its stream was closed')
          return
        }
        this.#pending.delete(id)
        controller.abort()
        this.#send({ type: 'error', id, error: this.#toWireLogged(error, name) })
      }
    )
  }

  #error (id: number, error: unknown): void {
    this.#send({ type: 'error', id, error: toWire(error) })
  }

  #toWireLogged (error: unknown, method: string): WireError {
    const wire = toWire(error)
    if (wire.code === 'API_ERR_INTERNAL') this.#log.error({ method, peer: describe(this.#peer), err: error }, 'handler failed')
    return wire
  }

  /** Frames and writes one response; false if it is too large to frame. */
  #send (response: Response): boolean {
    if (this.#socket.destroyed || this.#socket.writableEnded) return true
    let frame: Buffer
    try {
      frame = encodeFrame(response, this.#limits.maxFrameBytes)
    } catch (error) {
      if (response.type === 'result') {
        this.#socket.write(encodeFrame({ type: 'error', id: response.id, error: toWire(error) }, this.#limits.maxFrameBytes))
        return true
      }
      return false
    }
    this.#socket.write(frame)
    if (this.#socket.writableLength > this.#limits.maxBufferedBytes) {
      this.#log.warn({ peer: describe(this.#peer), buffered: this.#socket.writableLength }, 'disconnecting a peer that does not read its answers')
      this.#abortAll()
      this.#socket.destroy()
    }
    return true
  }
}

/** The wire form of an error: registry codes pass through, anything else is internal. */
export function toWire (error: unknown): WireError {
  const candidate = error as { code?: unknown, message?: unknown } | undefined
  if (typeof candidate?.code === 'string' && REGISTRY_CODE.test(candidate.code) && typeof candidate.message === 'string') {
    return { code: candidate.code, message: firstLine(candidate.message) }
  }
  return { code: 'API_ERR_INTERNAL', message: 'internal error in the manager (see its log)' }
}

export function describe (peer: Peer): string {
  return peer.kind === 'anonymous' ? `anonymous@${peer.address}` : `${peer.role}:${peer.nodeId}@${peer.address}`
}

function firstLine (message: string): string {
  const line = message.split('\n', 1)[0] ?? ''
  return line.length > 1000 ? `${line.slice(0, 1000)}…` : line
}

/** Runs a handler so that a synchronous throw becomes a rejection. */
async function run (handler: () => unknown): Promise<unknown> {
  return await handler()
}

function isAbort (error: unknown): boolean {
  return (error as Error | undefined)?.name === 'AbortError'
}
