/**
 * The manager API's transport: TLS 1.3 in both directions, the RPC of
 * rpc-server.ts / rpc-client.ts on top.
 *
 * Server (a manager, port 2377). It presents its node certificate followed
 * by the CA certificate, and asks every client for a certificate without
 * making one compulsory at the TLS layer, so that the refusal can be
 * explained instead of being a bare handshake alert:
 *   - a certificate signed by the cluster CA, naming this cluster and a
 *     role: the peer is that node, and each method checks the role;
 *   - a certificate that is not (another CA, expired, a foreign cluster):
 *     the manager answers one error frame (API_ERR_UNAUTHENTICATED, saying
 *     why) and closes;
 *   - no certificate: an anonymous peer, which may call only methods that
 *     allow `anonymous` (the join) and is cut off after a short while.
 *
 * Clients:
 *   - connectNode: a node with credentials; it trusts only the cluster CA
 *     and accepts only a manager certificate of its own cluster.
 *   - connectPinned: a node that holds only a join token. It completes a
 *     handshake without trusting anything, takes the CA certificate the
 *     manager sent, and goes on only if that certificate's digest is the one
 *     in the token and the manager's certificate is a manager certificate
 *     signed by it. Only then does the caller send anything, so a wrong
 *     address, an impostor or a tampered digest never sees the secret.
 */
import { X509Certificate } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import tls, { type TLSSocket } from 'node:tls'
import { pino, type Logger } from 'pino'
import { z } from 'zod'
import { CaError } from '../ca/errors.ts'
import { DEFAULT_MANAGER_PORT, formatManagerAddress } from '../ca/join-command.ts'
import { clusterIdOfCa, identityOf, verifyNodeCertificate, type NodeIdentity } from '../ca/node-identity.ts'
import { caDigest, type NodeCredentials } from '../ca/root-ca.ts'
import { ApiError } from './errors.ts'
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, MAX_FRAME_LIMIT } from './frame.ts'
import { RpcClient, type RpcClientOptions } from './rpc-client.ts'
import { describe, RpcRouter, ServerSession, type CallHandler, type MethodOptions, type Peer, type StreamHandler } from './rpc-server.ts'
import type { WireError } from './protocol.ts'

const TLS_VERSION = 'TLSv1.3'
/** How long server.close() lets connections finish before cutting them. */
const CLOSE_GRACE_MS = 2_000

const serverLimitsSchema = z.strictObject({
  maxFrameBytes: z.number().int().min(1024).max(MAX_FRAME_LIMIT).default(DEFAULT_MAX_FRAME_BYTES),
  /** Calls and streams in flight on one connection. */
  maxPending: z.number().int().min(1).max(100_000).default(128),
  /** Unsent bytes one connection may hold; default four full frames. */
  maxBufferedBytes: z.number().int().min(1024).optional(),
  handshakeTimeoutMs: z.number().int().min(1).default(10_000),
  /** Life of a connection without a certificate: long enough to join, no longer. */
  anonymousTimeoutMs: z.number().int().min(1).default(30_000)
})

export type ServerLimits = z.input<typeof serverLimitsSchema>

export interface MtlsServerOptions extends ServerLimits {
  /** This manager's own credentials: a manager certificate, its key, the cluster CA. */
  readonly credentials: NodeCredentials
  readonly logger?: Logger
}

export interface ServerStats {
  /** Connections whose handshake completed, since the server started. */
  readonly connections: number
  /** Connections open now. */
  readonly open: number
  /** Calls and subscriptions received. */
  readonly requests: number
  /** Connections refused: a handshake that failed, or a certificate this swarm did not issue. */
  readonly refused: number
}

export class MtlsServer {
  readonly #router = new RpcRouter()
  readonly #limits: Required<z.output<typeof serverLimitsSchema>>
  readonly #log: Logger
  readonly #server: tls.Server
  /** Open connections, with their session once the peer was admitted. */
  readonly #connections = new Map<TLSSocket, ServerSession | undefined>()
  readonly #stats = { connections: 0, requests: 0, refused: 0 }
  #clusterId: string

  constructor (options: MtlsServerOptions) {
    const { credentials, logger, ...limits } = options
    const parsed = serverLimitsSchema.safeParse(limits)
    if (!parsed.success) {
      const details = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`)
      throw new ApiError('API_ERR_CONFIG', `invalid manager API options: ${details.join('; ')}`, details)
    }
    this.#limits = Object.freeze({ ...parsed.data, maxBufferedBytes: parsed.data.maxBufferedBytes ?? 4 * parsed.data.maxFrameBytes })
    this.#log = (logger ?? pino({ level: 'silent' })).child({ component: 'manager-api' })
    this.#clusterId = checkManagerCredentials(credentials).clusterId
    this.#server = tls.createServer({
      ...serverContext(credentials),
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: this.#limits.handshakeTimeoutMs
    })
    this.#server.on('secureConnection', (socket) => this.#accept(socket))
    this.#server.on('tlsClientError', (error, socket) => {
      this.#stats.refused++
      this.#log.debug({ address: addressOf(socket), err: error }, 'TLS handshake failed')
    })
    this.#server.on('error', (error) => this.#log.error({ err: error }, 'manager API server error'))
  }

  /** Registers a call; see rpc-server.ts for who may call it by default (any node). */
  handle<P = unknown> (method: string, handler: CallHandler<P>, options?: MethodOptions<P>): void {
    this.#router.handle(method, handler, options)
  }

  /** Registers a stream (server push). */
  stream<P = unknown> (method: string, handler: StreamHandler<P>, options?: MethodOptions<P>): void {
    this.#router.stream(method, handler, options)
  }

  async listen (port: number = DEFAULT_MANAGER_PORT, host: string = '0.0.0.0'): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => reject(new ApiError('API_ERR_CONFIG', `cannot listen on ${formatManagerAddress({ host, port })}: ${error.message}`))
      this.#server.once('error', onError)
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError)
        resolve()
      })
    })
    return this.#server.address() as AddressInfo
  }

  get address (): AddressInfo | undefined {
    return (this.#server.address() as AddressInfo | null) ?? undefined
  }

  get stats (): ServerStats {
    return { ...this.#stats, open: this.#connections.size }
  }

  /** New credentials (a renewed certificate) for connections from now on; open ones keep theirs. */
  setCredentials (credentials: NodeCredentials): void {
    const { clusterId } = checkManagerCredentials(credentials)
    if (clusterId !== this.#clusterId) throw new ApiError('API_ERR_CONFIG', `credentials are for cluster ${clusterId}, this server serves ${this.#clusterId}`)
    this.#server.setSecureContext(serverContext(credentials))
  }

  /** Stops accepting, ends every stream and connection (cutting those that linger), and resolves when closed. */
  async close (): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    for (const [socket, session] of this.#connections) {
      if (session === undefined) socket.end()
      else session.close()
    }
    const timer = setTimeout(() => { for (const socket of this.#connections.keys()) socket.destroy() }, CLOSE_GRACE_MS)
    await closed
    clearTimeout(timer)
  }

  #accept (socket: TLSSocket): void {
    this.#stats.connections++
    this.#connections.set(socket, undefined)
    const address = addressOf(socket)
    socket.on('error', (error) => this.#log.debug({ address, err: error }, 'connection error'))
    socket.on('close', () => this.#connections.delete(socket))
    let peer: Peer
    try {
      peer = this.#identify(socket, address)
    } catch (error) {
      this.#stats.refused++
      const wire: WireError = { code: 'API_ERR_UNAUTHENTICATED', message: (error as Error).message }
      this.#log.warn({ address, reason: wire.message }, 'refused a client certificate')
      socket.end(encodeFrame({ type: 'error', id: null, error: wire }, this.#limits.maxFrameBytes))
      return
    }
    const session = new ServerSession(socket, peer, this.#router, this.#limits, this.#log.child({ peer: describe(peer) }), this.#stats)
    this.#connections.set(socket, session)
    if (peer.kind === 'anonymous') {
      const timer = setTimeout(() => session.fail({ code: 'API_ERR_TIMEOUT', message: `a connection without a node certificate may last ${this.#limits.anonymousTimeoutMs} ms` }), this.#limits.anonymousTimeoutMs)
      socket.on('close', () => clearTimeout(timer))
    }
  }

  /** The peer a connection speaks for; throws the reason a presented certificate is refused. */
  #identify (socket: TLSSocket, address: string): Peer {
    const cert = socket.getPeerX509Certificate()
    if (cert === undefined) return Object.freeze({ kind: 'anonymous', address })
    if (!socket.authorized) throw new Error(`client certificate refused: ${explainVerifyError(socket.authorizationError)}`)
    let identity: NodeIdentity
    try {
      identity = identityOf(cert)
    } catch (error) {
      throw new Error(`client certificate refused: ${(error as Error).message}`)
    }
    if (identity.clusterId !== this.#clusterId) throw new Error(`client certificate refused: it is for cluster ${identity.clusterId}, this is ${this.#clusterId}`)
    return Object.freeze({ kind: 'node', ...identity, address })
  }
}

export interface ConnectOptions extends RpcClientOptions {
  readonly host: string
  /** Default 2377. */
  readonly port?: number
  /** Time allowed for TCP and TLS handshakes together; default 10 s. */
  readonly connectTimeoutMs?: number
}

export interface NodeConnectOptions extends ConnectOptions {
  readonly credentials: NodeCredentials
}

/** A connection from a node with credentials to a manager of its own cluster. */
export async function connectNode (options: NodeConnectOptions): Promise<RpcClient> {
  const { credentials } = options
  const clusterId = clusterIdOfCa(credentials.caCertPem)
  const where = formatManagerAddress({ host: options.host, port: options.port ?? DEFAULT_MANAGER_PORT })
  const socket = await openTls(options, {
    ca: [credentials.caCertPem],
    cert: credentials.certPem,
    key: credentials.keyPem,
    rejectUnauthorized: true,
    // The manager is named by its certificate's role and cluster, not by a host name: a
    // manager's address changes, its identity does not.
    checkServerIdentity: (_host, cert) => {
      try {
        const identity = identityOf(cert.raw)
        if (identity.role !== 'manager') return new ApiError('API_ERR_MANAGER_UNTRUSTED', `${where} presented the certificate of a ${identity.role}, not a manager`)
        if (identity.clusterId !== clusterId) return new ApiError('API_ERR_MANAGER_UNTRUSTED', `${where} is a manager of cluster ${identity.clusterId}, not ${clusterId}`)
        return undefined
      } catch (error) {
        return new ApiError('API_ERR_MANAGER_UNTRUSTED', `${where} presented an unusable certificate: ${(error as Error).message}`)
      }
    }
  })
  return new RpcClient(socket, options)
}

export interface PinnedConnectOptions extends ConnectOptions {
  /** The CA digest a join token carries (lowercase hex SHA-256 of the CA certificate's DER). */
  readonly caDigest: string
  /** For checking the manager certificate's validity; default the current time. */
  readonly now?: Date
}

export interface PinnedConnection {
  readonly client: RpcClient
  /** The CA certificate the manager presented, whose digest matched. */
  readonly caCertPem: string
  /** Who the manager's certificate says it is. */
  readonly manager: NodeIdentity
}

/**
 * A connection without credentials to a manager recognised by its CA's
 * digest (see the module comment). Rejects with CA_ERR_TOKEN_DIGEST if the
 * manager's CA is not the one pinned, API_ERR_MANAGER_UNTRUSTED if its
 * certificate does not check out; in both cases nothing was sent.
 */
export async function connectPinned (options: PinnedConnectOptions): Promise<PinnedConnection> {
  const where = formatManagerAddress({ host: options.host, port: options.port ?? DEFAULT_MANAGER_PORT })
  const socket = await openTls(options, { rejectUnauthorized: false })
  try {
    const { caCertPem, manager } = checkPinnedChain(socket, options.caDigest, options.now ?? new Date(), where)
    return { client: new RpcClient(socket, options), caCertPem, manager }
  } catch (error) {
    // end, not destroy: the handshake's last flight may still be buffered, and the manager
    // should see a completed handshake followed by a clean close, not a broken handshake.
    socket.on('error', () => {})
    socket.end()
    setTimeout(() => socket.destroy(), 1_000).unref()
    throw error
  }
}

function checkPinnedChain (socket: TLSSocket, expectedDigest: string, now: Date, where: string): { caCertPem: string, manager: NodeIdentity } {
  const leaf = socket.getPeerCertificate(true)
  if (leaf?.raw === undefined) throw new ApiError('API_ERR_MANAGER_UNTRUSTED', `${where} presented no certificate`)
  const issuer = leaf.issuerCertificate as tls.DetailedPeerCertificate | undefined
  if (issuer?.raw === undefined || issuer === leaf) throw new ApiError('API_ERR_MANAGER_UNTRUSTED', `${where} did not send its CA certificate after its own`)
  const ca = new X509Certificate(issuer.raw)
  const digest = caDigest(ca)
  if (digest !== expectedDigest) {
    throw new CaError('CA_ERR_TOKEN_DIGEST', `${where} belongs to a swarm whose CA digest is ${digest.slice(0, 12)}…, not the token's ${expectedDigest.slice(0, 12)}…: wrong token or wrong manager; the secret was not sent`)
  }
  if (!ca.ca) throw new ApiError('API_ERR_MANAGER_UNTRUSTED', `${where} sent a CA certificate that is not a CA certificate`)
  let manager: NodeIdentity
  try {
    manager = verifyNodeCertificate(ca, new X509Certificate(leaf.raw), now)
  } catch (error) {
    throw new ApiError('API_ERR_MANAGER_UNTRUSTED', `${where}: ${(error as Error).message}`)
  }
  if (manager.role !== 'manager') throw new ApiError('API_ERR_MANAGER_UNTRUSTED', `${where} presented the certificate of a ${manager.role}, not a manager`)
  return { caCertPem: ca.toString(), manager }
}

/** TCP + TLS 1.3 to `host:port`, resolved after the handshake, with errors in the registry's terms. */
async function openTls (options: ConnectOptions, tlsOptions: tls.ConnectionOptions): Promise<TLSSocket> {
  const port = options.port ?? DEFAULT_MANAGER_PORT
  const where = formatManagerAddress({ host: options.host, port })
  const timeoutMs = options.connectTimeoutMs ?? 10_000
  return await new Promise<TLSSocket>((resolve, reject) => {
    const socket = tls.connect({ ...tlsOptions, host: options.host, port, minVersion: TLS_VERSION, maxVersion: TLS_VERSION })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new ApiError('API_ERR_TIMEOUT', `no TLS connection to ${where} within ${timeoutMs} ms`))
    }, timeoutMs)
    const onError = (error: NodeJS.ErrnoException): void => {
      clearTimeout(timer)
      socket.destroy()
      reject(connectError(error, where))
    }
    socket.once('error', onError)
    socket.once('secureConnect', () => {
      clearTimeout(timer)
      socket.off('error', onError)
      resolve(socket)
    })
  })
}

function connectError (error: NodeJS.ErrnoException, where: string): ApiError {
  if (error instanceof ApiError) return error
  const code = error.code ?? ''
  if (TLS_VERIFY_ERRORS.has(code)) {
    return new ApiError('API_ERR_MANAGER_UNTRUSTED', `${where} presented a certificate this node does not trust: ${explainVerifyError(code)}`)
  }
  return new ApiError('API_ERR_UNREACHABLE', `cannot reach the manager at ${where}: ${code || error.message}`)
}

const VERIFY_EXPLANATIONS: Readonly<Record<string, string>> = {
  UNABLE_TO_GET_ISSUER_CERT: 'not issued by this swarm\'s CA',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'not issued by this swarm\'s CA',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'not issued by this swarm\'s CA',
  SELF_SIGNED_CERT_IN_CHAIN: 'not issued by this swarm\'s CA',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed, not issued by this swarm\'s CA',
  CERT_SIGNATURE_FAILURE: 'its signature does not verify',
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not valid yet',
  CERT_REVOKED: 'revoked',
  INVALID_PURPOSE: 'not issued for this use'
}

const TLS_VERIFY_ERRORS = new Set(Object.keys(VERIFY_EXPLANATIONS))

function explainVerifyError (error: Error | string | null | undefined): string {
  const code = typeof error === 'string' ? error : (error as NodeJS.ErrnoException | null | undefined)?.code ?? error?.message ?? 'unknown reason'
  const words = VERIFY_EXPLANATIONS[code]
  return words === undefined ? code : `${words} (${code})`
}

/** The node certificate and CA of a manager, checked: a server must be a manager of the CA's cluster. */
function checkManagerCredentials (credentials: NodeCredentials): NodeIdentity {
  let identity: NodeIdentity
  try {
    const ca = new X509Certificate(credentials.caCertPem)
    const cert = new X509Certificate(credentials.certPem)
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw new Error('the certificate is not signed by the CA given with it')
    identity = identityOf(cert)
    if (identity.clusterId !== clusterIdOfCa(ca)) throw new Error(`the certificate is for cluster ${identity.clusterId}, the CA for ${clusterIdOfCa(ca)}`)
  } catch (error) {
    throw new ApiError('API_ERR_CONFIG', `unusable manager credentials: ${(error as Error).message}`)
  }
  if (identity.role !== 'manager') throw new ApiError('API_ERR_CONFIG', `only a manager serves the API; these credentials are a ${identity.role}'s`)
  return identity
}

function serverContext (credentials: NodeCredentials): tls.SecureContextOptions {
  return {
    key: credentials.keyPem,
    // The chain ends with the CA so that a joining node, which trusts nothing yet, can pin it.
    cert: `${credentials.certPem.trim()}\n${credentials.caCertPem.trim()}\n`,
    ca: [credentials.caCertPem],
    minVersion: TLS_VERSION
  }
}

function addressOf (socket: { remoteAddress?: string | undefined, remotePort?: number | undefined }): string {
  const host = socket.remoteAddress ?? 'unknown'
  return socket.remotePort === undefined ? host : formatManagerAddress({ host, port: socket.remotePort })
}
