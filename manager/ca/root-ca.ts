/**
 * The cluster's root CA and the node certificates it issues.
 *
 * `weft swarm init` creates one root CA per cluster: a self-signed ECDSA
 * P-256 certificate (CN=swarm-ca, O=<cluster id>) valid for 20 years, as
 * swarmkit's. Its digest — SHA-256 over the certificate's DER — is what a
 * join token carries, so a joining node can recognise its manager before it
 * trusts anything the manager says.
 *
 * Node certificates live 90 days (swarmkit's default; renewal is to come).
 * Both kinds are backdated by an hour so that a node whose clock runs a
 * little behind the manager's accepts a certificate issued a moment ago.
 */
import { createHash, X509Certificate } from 'node:crypto'
import { CaError } from './errors.ts'
import { isValidId } from './ids.ts'
import { checkIdentity, clusterIdOfCa, nodeSubject, ROLE_OU, CA_COMMON_NAME, type NodeIdentity } from './node-identity.ts'
import { createCaCertificate, generatePrivateKeyPem, publicKeyPemOf, publicKeyPemOfCsr, signLeafCertificate } from './pki.ts'

export const ROOT_CA_VALIDITY_MS = 20 * 365 * 24 * 3600 * 1000
export const NODE_CERT_VALIDITY_MS = 90 * 24 * 3600 * 1000
export const BACKDATE_MS = 3600 * 1000

export interface RootCa {
  readonly clusterId: string
  readonly certPem: string
  /** The CA's private key (PKCS#8 PEM). Only managers hold it. */
  readonly keyPem: string
  /** SHA-256 of the certificate's DER, lowercase hex: what join tokens carry. */
  readonly digest: string
}

/** What a node needs to take part: its key, its certificate, and the CA that vouches for both ends. */
export interface NodeCredentials {
  readonly caCertPem: string
  readonly certPem: string
  readonly keyPem: string
}

export interface CreateRootCaOptions {
  readonly clusterId: string
  readonly now: Date
  readonly validityMs?: number
}

export async function createRootCa (options: CreateRootCaOptions): Promise<RootCa> {
  const { clusterId, now, validityMs = ROOT_CA_VALIDITY_MS } = options
  if (!isValidId(clusterId)) throw new CaError('CA_ERR_INVALID', `cluster id "${clusterId}" must be 1-64 lowercase letters and digits`)
  checkValidity(validityMs)
  const keyPem = await generatePrivateKeyPem()
  const certPem = await createCaCertificate({
    privateKeyPem: keyPem,
    subject: `CN=${CA_COMMON_NAME}, O=${clusterId}`,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + validityMs)
  })
  return Object.freeze({ clusterId, certPem, keyPem, digest: caDigest(certPem) })
}

/**
 * A root CA read back from its PEM files, after checking that the
 * certificate is a CA certificate naming a cluster and that the key is its
 * key (a mismatched pair would issue certificates nobody can verify).
 */
export function rootCaFromPem (certPem: string, keyPem: string): RootCa {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(certPem)
  } catch (error) {
    throw new CaError('CA_ERR_FILES', `root CA certificate cannot be parsed: ${(error as Error).message}`)
  }
  if (!cert.ca) throw new CaError('CA_ERR_FILES', 'root CA certificate is not a CA certificate')
  if (publicKeyPemOf(keyPem) !== cert.publicKey.export({ type: 'spki', format: 'pem' }).toString()) {
    throw new CaError('CA_ERR_FILES', 'root CA key does not match the root CA certificate')
  }
  return Object.freeze({ clusterId: clusterIdOfCa(cert), certPem, keyPem, digest: caDigest(cert) })
}

/** SHA-256 of a CA certificate's DER encoding, lowercase hex. PEM line breaks cannot change it. */
export function caDigest (caCertificate: string | X509Certificate): string {
  const cert = caCertificate instanceof X509Certificate ? caCertificate : new X509Certificate(caCertificate)
  return createHash('sha256').update(cert.raw).digest('hex')
}

export type KeySource =
  /** A PKCS#10 request: proves the requester holds the private key. */
  | { readonly csrPem: string }
  /** A bare public key (SPKI PEM), for callers that generated the key themselves. */
  | { readonly publicKeyPem: string }

export interface IssueOptions {
  readonly now: Date
  readonly validityMs?: number
}

/**
 * A node certificate for `identity` over the key in `source`, signed by
 * `ca`. SANs are the role's name and the node id (DNS names), as in
 * swarmkit. Never outlives the CA.
 */
export async function issueNodeCertificate (ca: RootCa, identity: NodeIdentity, source: KeySource, options: IssueOptions): Promise<string> {
  const { now, validityMs = NODE_CERT_VALIDITY_MS } = options
  checkIdentity(identity)
  checkValidity(validityMs)
  if (identity.clusterId !== ca.clusterId) {
    throw new CaError('CA_ERR_INVALID', `cannot issue a certificate for cluster ${identity.clusterId} from the CA of cluster ${ca.clusterId}`)
  }
  const publicKeyPem = 'csrPem' in source ? await publicKeyPemOfCsr(source.csrPem) : source.publicKeyPem
  const caNotAfter = new X509Certificate(ca.certPem).validToDate
  const notAfter = new Date(Math.min(now.getTime() + validityMs, caNotAfter.getTime()))
  return await signLeafCertificate({
    caCertPem: ca.certPem,
    caPrivateKeyPem: ca.keyPem,
    publicKeyPem,
    subject: nodeSubject(identity),
    dnsNames: [ROLE_OU[identity.role], identity.nodeId],
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter
  })
}

/**
 * A fresh key and a certificate for it: how a manager certifies itself
 * (the first one at `swarm init`), without a request on the wire.
 */
export async function issueNodeCredentials (ca: RootCa, identity: NodeIdentity, options: IssueOptions): Promise<NodeCredentials> {
  const keyPem = await generatePrivateKeyPem()
  const certPem = await issueNodeCertificate(ca, identity, { publicKeyPem: publicKeyPemOf(keyPem) }, options)
  return Object.freeze({ caCertPem: ca.certPem, certPem, keyPem })
}

function checkValidity (validityMs: number): void {
  if (!(Number.isInteger(validityMs) && validityMs > 0)) throw new CaError('CA_ERR_INVALID', `validity must be a positive number of milliseconds, not ${validityMs}`)
}
