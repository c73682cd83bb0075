/**
 * The CA half of `weft swarm init`: a cluster id, its root CA, a node id and
 * certificate for the first manager (issued to itself, no request on the
 * wire), and the two join tokens. The caller persists the CA and the
 * credentials (files.ts) and records the tokens with the cluster's state.
 */
import { randomId } from './ids.ts'
import { createJoinTokens, type JoinTokens } from './join-token.ts'
import type { NodeIdentity } from './node-identity.ts'
import { createRootCa, issueNodeCredentials, type NodeCredentials, type RootCa } from './root-ca.ts'

export interface ClusterBootstrap {
  readonly rootCa: RootCa
  readonly manager: NodeIdentity
  readonly credentials: NodeCredentials
  readonly joinTokens: JoinTokens
}

export interface BootstrapOptions {
  readonly now: Date
  /** Generated when not given. */
  readonly clusterId?: string
  /** The first manager's node id; generated when not given. */
  readonly nodeId?: string
}

export async function bootstrapCluster (options: BootstrapOptions): Promise<ClusterBootstrap> {
  const { now, clusterId = randomId(), nodeId = randomId() } = options
  const rootCa = await createRootCa({ clusterId, now })
  const manager: NodeIdentity = Object.freeze({ nodeId, role: 'manager', clusterId })
  const credentials = await issueNodeCredentials(rootCa, manager, { now })
  return Object.freeze({ rootCa, manager, credentials, joinTokens: createJoinTokens(rootCa.digest) })
}
