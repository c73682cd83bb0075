/**
 * Who a certificate speaks for. As in swarmkit, a node certificate's subject
 * carries the node's identity: CN = node id, OU = role (`swarm-worker` or
 * `swarm-manager`), O = cluster id. A manager learns a peer's identity from
 * the certificate it presented, never from what the peer says.
 *
 * Parsing uses Node's own `X509Certificate`, so the check made on every
 * connection does not go through the certificate-building library.
 */
import { X509Certificate } from 'node:crypto'
import { CaError } from './errors.ts'
import { isValidId } from './ids.ts'

export type NodeRole = 'worker' | 'manager'

export const NODE_ROLES: readonly NodeRole[] = Object.freeze(['worker', 'manager'])

/** The organizational unit that names each role in a certificate. */
export const ROLE_OU: Readonly<Record<NodeRole, string>> = Object.freeze({
  worker: 'swarm-worker',
  manager: 'swarm-manager'
})

/** CN of the cluster's root CA certificate. */
export const CA_COMMON_NAME = 'swarm-ca'

export interface NodeIdentity {
  readonly nodeId: string
  readonly role: NodeRole
  readonly clusterId: string
}

/** The subject of a node certificate for `identity`. */
export function nodeSubject (identity: NodeIdentity): string {
  checkIdentity(identity)
  return `O=${identity.clusterId}, OU=${ROLE_OU[identity.role]}, CN=${identity.nodeId}`
}

/** Throws CA_ERR_INVALID unless the ids are safe to put in a subject and the role is known. */
export function checkIdentity (identity: NodeIdentity): void {
  const problems: string[] = []
  if (!isValidId(identity.nodeId)) problems.push(`node id "${identity.nodeId}" must be 1-64 lowercase letters and digits`)
  if (!isValidId(identity.clusterId)) problems.push(`cluster id "${identity.clusterId}" must be 1-64 lowercase letters and digits`)
  if (!NODE_ROLES.includes(identity.role)) problems.push(`role "${String(identity.role)}" must be worker or manager`)
  if (problems.length > 0) throw new CaError('CA_ERR_INVALID', `invalid node identity: ${problems.join('; ')}`, problems)
}

/**
 * The identity a node certificate carries. Refuses a subject without
 * exactly one CN, OU and O, an unknown role, or ids of another shape.
 * It does not check who signed the certificate: see verifyNodeCertificate,
 * or let TLS do it.
 */
export function identityOf (certificate: X509Certificate | string | Buffer): NodeIdentity {
  const cert = asX509(certificate)
  const fields = subjectFields(cert.subject)
  const cn = single(fields, 'CN')
  const ou = single(fields, 'OU')
  const o = single(fields, 'O')
  const role = NODE_ROLES.find((r) => ROLE_OU[r] === ou)
  if (role === undefined) throw new CaError('CA_ERR_CERT', `certificate role "${ou}" is neither ${ROLE_OU.worker} nor ${ROLE_OU.manager}`)
  if (!isValidId(cn)) throw new CaError('CA_ERR_CERT', `certificate node id "${cn}" is not a node id`)
  if (!isValidId(o)) throw new CaError('CA_ERR_CERT', `certificate cluster id "${o}" is not a cluster id`)
  return Object.freeze({ nodeId: cn, role, clusterId: o })
}

/** The cluster id a root CA certificate names (its O). */
export function clusterIdOfCa (caCertificate: X509Certificate | string | Buffer): string {
  const ca = asX509(caCertificate)
  const o = single(subjectFields(ca.subject), 'O')
  if (!isValidId(o)) throw new CaError('CA_ERR_CERT', `CA certificate cluster id "${o}" is not a cluster id`)
  return o
}

/**
 * The identity of `certificate` after checking it as a manager would: signed
 * by the cluster CA, within its validity at `now`, not itself a CA, and of
 * the CA's cluster. Throws CA_ERR_CERT with the first reason otherwise.
 */
export function verifyNodeCertificate (caCertificate: X509Certificate | string | Buffer, certificate: X509Certificate | string | Buffer, now: Date): NodeIdentity {
  const ca = asX509(caCertificate)
  const cert = asX509(certificate)
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw new CaError('CA_ERR_CERT', 'certificate is not signed by this swarm\'s CA')
  if (now < cert.validFromDate) throw new CaError('CA_ERR_CERT', `certificate is not valid before ${cert.validFromDate.toISOString()}`)
  if (now > cert.validToDate) throw new CaError('CA_ERR_CERT', `certificate expired at ${cert.validToDate.toISOString()}`)
  if (cert.ca) throw new CaError('CA_ERR_CERT', 'a CA certificate is not a node certificate')
  const identity = identityOf(cert)
  const clusterId = clusterIdOfCa(ca)
  if (identity.clusterId !== clusterId) throw new CaError('CA_ERR_CERT', `certificate is for cluster ${identity.clusterId}, not ${clusterId}`)
  return identity
}

export function asX509 (certificate: X509Certificate | string | Buffer): X509Certificate {
  if (certificate instanceof X509Certificate) return certificate
  try {
    return new X509Certificate(certificate)
  } catch (error) {
    throw new CaError('CA_ERR_CERT', `certificate cannot be parsed: ${(error as Error).message}`)
  }
}

/** Node prints a subject one `KEY=value` per line, escaping separators inside values. */
function subjectFields (subject: string): Map<string, string[]> {
  const fields = new Map<string, string[]>()
  for (const line of subject.split('\n')) {
    const at = line.indexOf('=')
    if (at <= 0) continue
    const key = line.slice(0, at)
    const values = fields.get(key) ?? []
    values.push(line.slice(at + 1))
    fields.set(key, values)
  }
  return fields
}

function single (fields: Map<string, string[]>, key: string): string {
  const values = fields.get(key) ?? []
  if (values.length !== 1) throw new CaError('CA_ERR_CERT', `certificate subject must have exactly one ${key}, has ${values.length}`)
  return values[0]!
}
