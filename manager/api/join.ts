/**
 * Joining a swarm: `weft swarm join --token TOKEN ADDR[:PORT]`.
 *
 * The node (joinSwarm):
 *   1. reads the token (a malformed one fails here, before any connection);
 *   2. makes its key pair and a certificate request;
 *   3. connects to the manager without credentials and pins the CA digest of
 *      the token (mtls.ts connectPinned) — a manager of another CA is left
 *      before the secret is sent;
 *   4. calls `node.join` with the token and the request;
 *   5. checks that what comes back is a certificate of that CA for its own
 *      key, and returns its identity and credentials. From then on it
 *      connects with connectNode and these credentials.
 *
 * The manager (registerJoin): the token's digest must be its CA's and its
 * secret one of the two current secrets, which decides the role; the
 * manager then picks the node id, records the node (onJoined: a command
 * through Raft, elsewhere), and issues the certificate from the request.
 */
import { X509Certificate } from 'node:crypto'
import { z } from 'zod'
import { randomId } from '../ca/ids.ts'
import type { ManagerAddress } from '../ca/join-command.ts'
import { parseJoinToken, roleForJoinToken, type JoinTokens } from '../ca/join-token.ts'
import { verifyNodeCertificate, type NodeIdentity, type NodeRole } from '../ca/node-identity.ts'
import { createCsr, generatePrivateKeyPem, publicKeyPemOf, publicKeyPemOfCsr } from '../ca/pki.ts'
import { issueNodeCertificate, type NodeCredentials, type RootCa } from '../ca/root-ca.ts'
import { ApiError } from './errors.ts'
import { connectPinned } from './mtls.ts'
import type { AnonymousPeer, CallHandler, MethodOptions } from './rpc-server.ts'

export const JOIN_METHOD = 'node.join'
/** Joining includes issuing a certificate: allow more than a plain call. */
const JOIN_TIMEOUT_MS = 30_000

export const joinParamsSchema = z.strictObject({
  token: z.string().min(1).max(256),
  csr: z.string().min(1).max(16 * 1024)
})

export type JoinParams = z.infer<typeof joinParamsSchema>

export const joinResultSchema = z.strictObject({
  nodeId: z.string(),
  role: z.enum(['worker', 'manager']),
  clusterId: z.string(),
  certificate: z.string(),
  caCertificate: z.string()
})

export type JoinResult = z.infer<typeof joinResultSchema>

/** What a manager needs to admit nodes. Getters, because the CA and the tokens change (rotation). */
export interface JoinServerOptions {
  readonly rootCa: () => RootCa
  readonly joinTokens: () => JoinTokens
  readonly now?: () => Date
  /** Default: a fresh random id. */
  readonly newNodeId?: () => string
  /**
   * Records the node before its certificate is issued; if it throws, the
   * join fails with its error (e.g. the cluster state refused the node).
   */
  readonly onJoined?: (node: NodeIdentity, peer: AnonymousPeer) => Promise<void> | void
}

/** Anything that registers calls: an MtlsServer, or an RpcRouter in a test. */
export interface CallRegistry {
  handle<P = unknown> (method: string, handler: CallHandler<P>, options?: MethodOptions<P>): void
}

export function registerJoin (server: CallRegistry, options: JoinServerOptions): void {
  const { now = () => new Date(), newNodeId = randomId, onJoined } = options
  server.handle<JoinParams>(JOIN_METHOD, async (params, peer): Promise<JoinResult> => {
    const ca = options.rootCa()
    const role: NodeRole = roleForJoinToken(options.joinTokens(), params.token, ca.digest)
    // A request that cannot be certified fails before the node is recorded.
    const publicKeyPem = await publicKeyPemOfCsr(params.csr)
    const identity: NodeIdentity = Object.freeze({ nodeId: newNodeId(), role, clusterId: ca.clusterId })
    await onJoined?.(identity, peer as AnonymousPeer)
    const certificate = await issueNodeCertificate(ca, identity, { publicKeyPem }, { now: now() })
    return { ...identity, certificate, caCertificate: ca.certPem }
  }, { allow: ['anonymous'], params: joinParamsSchema })
}

export interface JoinSwarmOptions {
  readonly manager: ManagerAddress
  readonly token: string
  readonly now?: Date
  readonly connectTimeoutMs?: number
  readonly timeoutMs?: number
}

export interface JoinedNode {
  readonly identity: NodeIdentity
  readonly credentials: NodeCredentials
}

export async function joinSwarm (options: JoinSwarmOptions): Promise<JoinedNode> {
  const token = parseJoinToken(options.token)
  const keyPem = await generatePrivateKeyPem()
  const csr = await createCsr(keyPem)
  const { client, caCertPem } = await connectPinned({
    host: options.manager.host,
    port: options.manager.port,
    caDigest: token.caDigest,
    ...(options.now === undefined ? {} : { now: options.now }),
    ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs })
  })
  let answer: unknown
  try {
    answer = await client.call(JOIN_METHOD, { token: options.token.trim(), csr } satisfies JoinParams, { timeoutMs: options.timeoutMs ?? JOIN_TIMEOUT_MS })
  } finally {
    await client.close()
  }
  const parsed = joinResultSchema.safeParse(answer)
  if (!parsed.success) throw new ApiError('API_ERR_PROTOCOL', `the manager's answer to ${JOIN_METHOD} is malformed`)
  const result = parsed.data
  // The manager was authenticated by the pinned CA; still, keep nothing that would not work.
  if (new X509Certificate(result.caCertificate).fingerprint256 !== new X509Certificate(caCertPem).fingerprint256) {
    throw new ApiError('API_ERR_MANAGER_UNTRUSTED', 'the manager returned a CA certificate other than the one it presented')
  }
  let identity: NodeIdentity
  try {
    identity = verifyNodeCertificate(caCertPem, result.certificate, options.now ?? new Date())
  } catch (error) {
    throw new ApiError('API_ERR_MANAGER_UNTRUSTED', `the manager returned an unusable certificate: ${(error as Error).message}`)
  }
  const certKey = new X509Certificate(result.certificate).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  if (certKey !== publicKeyPemOf(keyPem)) throw new ApiError('API_ERR_MANAGER_UNTRUSTED', 'the manager returned a certificate for another key')
  if (identity.nodeId !== result.nodeId || identity.role !== result.role || identity.clusterId !== result.clusterId) {
    throw new ApiError('API_ERR_MANAGER_UNTRUSTED', 'the manager\'s answer does not match the certificate it issued')
  }
  return Object.freeze({ identity, credentials: Object.freeze({ caCertPem, certPem: result.certificate, keyPem }) })
}
