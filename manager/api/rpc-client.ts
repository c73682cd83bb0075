/**
 * The node side of the API, over any byte stream the transport has already
 * authenticated (mtls.ts): calls answered once, and subscriptions that
 * receive events until either side ends them.
 *
 * Every call has a timeout. When the connection goes, every call in flight
 * is rejected and every subscription's `done` is rejected, with the
 * manager's own reason when it gave one (an error frame with id null just
 * before closing, e.g. "client certificate refused") rather than the socket
 * error that followed it.
 */
import type { Duplex } from 'node:stream'
import { ApiError } from './errors.ts'
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameReader } from './frame.ts'
import { responseSchema, type Response, type WireError } from './protocol.ts'

export const DEFAULT_CALL_TIMEOUT_MS = 10_000
/** How long close() waits for the manager to close its side before cutting the connection. */
const CLOSE_GRACE_MS = 2_000

export interface RpcClientOptions {
  readonly maxFrameBytes?: number
  /** Default timeout of a call, and of a subscription's acceptance. */
  readonly callTimeoutMs?: number
}

export interface CallOptions {
  readonly timeoutMs?: number
}

export interface Subscription {
  /**
   * Settles when the stream is over: resolves when the manager ends it or
   * this side unsubscribes or closes; rejects with the manager's error, with
   * API_ERR_CLOSED if the connection is lost, or with what onEvent threw.
   */
  readonly done: Promise<void>
  unsubscribe (): void
}

interface PendingCall {
  readonly method: string
  readonly resolve: (result: unknown) => void
  readonly reject: (error: Error) => void
  readonly timer: NodeJS.Timeout
}

interface OpenStream {
  readonly method: string
  readonly onEvent: (event: unknown) => void
  started: boolean
  readonly accept: () => void
  readonly refuse: (error: Error) => void
  readonly end: () => void
  readonly fail: (error: Error) => void
  readonly timer: NodeJS.Timeout
}

export class RpcClient {
  readonly #socket: Duplex
  readonly #maxFrameBytes: number
  readonly #callTimeoutMs: number
  readonly #reader: FrameReader
  readonly #calls = new Map<number, PendingCall>()
  readonly #streams = new Map<number, OpenStream>()
  readonly #closed: Promise<void>
  #nextId = 1
  /** Why the connection is unusable, once it is. */
  #failure: ApiError | undefined
  /** The manager's stated reason for closing, which outranks the socket errors that follow it. */
  #serverReason: ApiError | undefined

  constructor (socket: Duplex, options: RpcClientOptions = {}) {
    const { maxFrameBytes = DEFAULT_MAX_FRAME_BYTES, callTimeoutMs = DEFAULT_CALL_TIMEOUT_MS } = options
    if (!(Number.isInteger(callTimeoutMs) && callTimeoutMs > 0)) throw new ApiError('API_ERR_CONFIG', `callTimeoutMs must be a positive integer, not ${callTimeoutMs}`)
    this.#socket = socket
    this.#maxFrameBytes = maxFrameBytes
    this.#callTimeoutMs = callTimeoutMs
    this.#reader = new FrameReader(maxFrameBytes)
    this.#closed = new Promise((resolve) => socket.once('close', () => resolve()))
    socket.on('data', (chunk: Buffer) => this.#receive(chunk))
    socket.on('error', (error: Error) => this.#fail(new ApiError('API_ERR_CLOSED', `connection to the manager failed: ${error.message}`)))
    socket.on('close', () => this.#fail(new ApiError('API_ERR_CLOSED', 'connection to the manager closed')))
  }

  /** Resolves once the connection is closed, for whatever reason. Never rejects. */
  get closed (): Promise<void> {
    return this.#closed
  }

  /** Why the connection stopped working, or undefined while it works. */
  get failure (): ApiError | undefined {
    return this.#failure
  }

  async call<R = unknown> (method: string, params?: unknown, options: CallOptions = {}): Promise<R> {
    const timeoutMs = options.timeoutMs ?? this.#callTimeoutMs
    const id = this.#nextId++
    return await new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#calls.delete(id)
        reject(new ApiError('API_ERR_TIMEOUT', `no answer to ${method} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#calls.set(id, { method, resolve: resolve as (result: unknown) => void, reject, timer })
      this.#write(id, { type: 'call', id, method, params })
    })
  }

  /**
   * Opens a stream: resolves once the manager accepted it (rejects if it
   * refused: unknown method, role, params), then calls `onEvent` for each
   * event in order until `done` settles.
   */
  async subscribe (method: string, params: unknown, onEvent: (event: unknown) => void, options: CallOptions = {}): Promise<Subscription> {
    const timeoutMs = options.timeoutMs ?? this.#callTimeoutMs
    const id = this.#nextId++
    let end!: () => void
    let fail!: (error: Error) => void
    const done = new Promise<void>((resolve, reject) => { end = resolve; fail = reject })
    // Nobody may be awaiting `done` yet (or ever): an unobserved rejection must not crash the process.
    done.catch(() => {})
    const subscription: Subscription = Object.freeze({
      done,
      unsubscribe: () => {
        if (this.#streams.delete(id)) {
          this.#write(id, { type: 'unsubscribe', id })
          end()
        }
      }
    })
    return await new Promise<Subscription>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#streams.delete(id)) {
          this.#write(id, { type: 'unsubscribe', id })
          const error = new ApiError('API_ERR_TIMEOUT', `${method} was not accepted within ${timeoutMs} ms`)
          fail(error)
          reject(error)
        }
      }, timeoutMs)
      this.#streams.set(id, {
        method,
        onEvent,
        started: false,
        accept: () => resolve(subscription),
        refuse: (error) => { fail(error); reject(error) },
        end,
        fail,
        timer
      })
      this.#write(id, { type: 'subscribe', id, method, params })
    })
  }

  /** Ends the connection: calls in flight fail with API_ERR_CLOSED, subscriptions end. */
  async close (): Promise<void> {
    for (const stream of this.#streams.values()) {
      clearTimeout(stream.timer)
      if (stream.started) stream.end()
      else stream.refuse(new ApiError('API_ERR_CLOSED', 'client closed'))
    }
    this.#streams.clear()
    this.#fail(new ApiError('API_ERR_CLOSED', 'client closed'))
    this.#socket.end()
    const timer = setTimeout(() => this.#socket.destroy(), CLOSE_GRACE_MS)
    await this.#closed
    clearTimeout(timer)
  }

  #write (id: number, request: unknown): void {
    if (this.#failure !== undefined) {
      this.#settleError(id, this.#failure)
      return
    }
    let frame: Buffer
    try {
      frame = encodeFrame(request, this.#maxFrameBytes)
    } catch (error) {
      this.#settleError(id, error as Error)
      return
    }
    this.#socket.write(frame)
  }

  #receive (chunk: Buffer): void {
    let messages: unknown[]
    try {
      messages = this.#reader.push(chunk)
    } catch (error) {
      this.#fail(error as ApiError)
      this.#socket.destroy()
      return
    }
    for (const message of messages) {
      const parsed = responseSchema.safeParse(message)
      if (!parsed.success) {
        this.#fail(new ApiError('API_ERR_PROTOCOL', `malformed message from the manager: ${parsed.error.issues[0]?.message ?? 'unknown shape'}`))
        this.#socket.destroy()
        return
      }
      this.#handle(parsed.data)
    }
  }

  #handle (response: Response): void {
    if (response.type === 'error' && response.id === null) {
      this.#serverReason ??= fromWire(response.error)
      this.#fail(this.#serverReason)
      return
    }
    const id = response.id!
    const call = this.#calls.get(id)
    if (call !== undefined) {
      this.#calls.delete(id)
      clearTimeout(call.timer)
      if (response.type === 'result') call.resolve(response.result)
      else if (response.type === 'error') call.reject(fromWire(response.error))
      else call.reject(new ApiError('API_ERR_PROTOCOL', `unexpected ${response.type} in answer to ${call.method}`))
      return
    }
    const stream = this.#streams.get(id)
    if (stream === undefined) return // answered after a timeout or an unsubscribe: nobody waits for it
    switch (response.type) {
      case 'started':
        clearTimeout(stream.timer)
        stream.started = true
        stream.accept()
        return
      case 'event':
        if (!stream.started) break
        try {
          stream.onEvent(response.event)
        } catch (error) {
          this.#streams.delete(id)
          this.#write(id, { type: 'unsubscribe', id })
          stream.fail(error as Error)
        }
        return
      case 'end':
        this.#streams.delete(id)
        clearTimeout(stream.timer)
        if (stream.started) stream.end()
        else stream.refuse(new ApiError('API_ERR_PROTOCOL', `${stream.method} ended before it started`))
        return
      case 'error':
        this.#streams.delete(id)
        clearTimeout(stream.timer)
        if (stream.started) stream.fail(fromWire(response.error))
        else stream.refuse(fromWire(response.error))
        return
    }
    this.#streams.delete(id)
    clearTimeout(stream.timer)
    stream.refuse(new ApiError('API_ERR_PROTOCOL', `unexpected ${response.type} for ${stream.method}`))
  }

  #settleError (id: number, error: Error): void {
    const call = this.#calls.get(id)
    if (call !== undefined) {
      this.#calls.delete(id)
      clearTimeout(call.timer)
      call.reject(error)
    }
    const stream = this.#streams.get(id)
    if (stream !== undefined) {
      this.#streams.delete(id)
      clearTimeout(stream.timer)
      if (stream.started) stream.fail(error)
      else stream.refuse(error)
    }
  }

  /** Marks the connection unusable and fails everything in flight (once). */
  #fail (error: ApiError): void {
    if (this.#failure !== undefined) return
    const reason = this.#serverReason ?? error
    this.#failure = reason
    for (const id of [...this.#calls.keys(), ...this.#streams.keys()]) this.#settleError(id, reason)
  }
}

export function fromWire (error: WireError): ApiError {
  return new ApiError(error.code, error.message)
}
