/**
 * dnsd's sockets through its native addon (native/udp_batch.c, built by
 * node-gyp when the dependencies are installed): sockets bound inside a
 * network namespace without a helper process, and UDP served in batches
 * (recvmmsg, one call into JavaScript per batch, sendmmsg). IPv4 only, which
 * is all a task's 127.0.0.11 needs; `dnsd serve` on IPv6 uses node:dgram.
 */
import { createRequire } from 'node:module'
import { DnsdError } from './errors.ts'

interface Addon {
  bind (netnsPath: string | null, kind: 'udp' | 'tcp', host: string, port: number, reusePort: boolean): number
  open (fd: number, onBatch: (count: number) => ReadonlyArray<Buffer | null | undefined>, self: unknown): OpenedBatch
  sendTo (handle: unknown, message: Buffer, address: number, port: number): void
  close (handle: unknown): void
  localPort (fd: number): number
  closeFd (fd: number): void
}

interface OpenedBatch {
  readonly handle: unknown
  /** Slot i holds datagram i at offset i × SLOT_BYTES. */
  readonly buffer: Buffer
  /** Per slot: the datagram's length; 0 when it did not fit its slot. */
  readonly lengths: Uint32Array
  /** Per slot: the sender's address (a 32-bit number) and port. */
  readonly peers: Uint32Array
}

export const SLOT_BYTES = 4096

const addon = createRequire(import.meta.url)('../build/Release/udp_batch.node') as Addon

/**
 * A socket of `kind` bound to host:port inside the namespace at `netnsPath`
 * (null: this process's own), as a file descriptor the caller owns.
 */
export function bindInNamespace (netnsPath: string | null, kind: 'udp' | 'tcp', host: string, port: number, reusePort = false): number {
  try {
    return addon.bind(netnsPath, kind, host, port, reusePort)
  } catch (error) {
    throw new DnsdError('DNSD_ERR_LISTEN', `cannot bind ${kind.toUpperCase()} ${host}:${port}${netnsPath === null ? '' : ` in ${netnsPath}`}: ${(error as Error).message}`)
  }
}

/** The port `fd` is bound to (what port 0 became). */
export function localPort (fd: number): number {
  return addon.localPort(fd)
}

/** Closes a descriptor from bindInNamespace that will not be served after all. */
export function closeDescriptor (fd: number): void {
  addon.closeFd(fd)
}

export interface Peer { readonly address: number, readonly port: number }

/**
 * Answers a batch of queries: `reply(i)` is given query i (a view into the
 * receive buffer, valid only during the call) and its sender, and returns the
 * reply to send now, or null (none, or one that will be sent later with
 * `send`).
 */
export type BatchHandler = (query: Buffer, peer: Peer) => Buffer | null

/** A bound UDP socket served in batches; closing it closes its descriptor. */
export class BatchUdpSocket {
  readonly #opened: OpenedBatch
  readonly #replies: Array<Buffer | null> = []
  #closed = false

  constructor (fd: number, handler: BatchHandler, onError: (error: unknown) => void) {
    const onBatch = (count: number): ReadonlyArray<Buffer | null> => {
      const { buffer, lengths, peers } = this.#opened
      const replies = this.#replies
      replies.length = count
      for (let i = 0; i < count; i++) {
        replies[i] = null
        const length = lengths[i]!
        if (length === 0) continue
        try {
          replies[i] = handler(buffer.subarray(i * SLOT_BYTES, i * SLOT_BYTES + length), { address: peers[2 * i]!, port: peers[2 * i + 1]! })
        } catch (error) {
          onError(error)
        }
      }
      return replies
    }
    this.#opened = addon.open(fd, onBatch, this)
  }

  send (message: Buffer, peer: Peer): void {
    if (!this.#closed) addon.sendTo(this.#opened.handle, message, peer.address, peer.port)
  }

  close (): void {
    if (this.#closed) return
    this.#closed = true
    addon.close(this.#opened.handle)
  }
}
