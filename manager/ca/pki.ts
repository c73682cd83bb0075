/**
 * The one place that builds X.509 objects. Node can parse and verify
 * certificates (`crypto.X509Certificate`) but cannot create them or parse
 * certificate requests, so this module wraps `@peculiar/x509` (over Node's
 * WebCrypto) behind a few functions that take and return PEM text. Nothing
 * here knows about swarms: subjects, names and lifetimes come from the
 * caller (root-ca.ts), so the library can be replaced by editing this file.
 *
 * Every key is ECDSA P-256 and every signature ECDSA with SHA-256, as
 * swarmkit's CA issues them.
 */
// @peculiar/x509 resolves its algorithms through tsyringe, which throws at
// load time unless a Reflect metadata polyfill was loaded first. ES modules
// evaluate their imports in order, so this line must stay above the next.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto'
import { CaError } from './errors.ts'

x509.cryptoProvider.set(crypto)

const KEY_ALGORITHM: EcKeyImportParams = { name: 'ECDSA', namedCurve: 'P-256' }
const SIGNING_ALGORITHM: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' }
/** Bound on a request's size before it is handed to the ASN.1 parser. */
const MAX_CSR_PEM = 16 * 1024

/** A new ECDSA P-256 private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). */
export async function generatePrivateKeyPem (): Promise<string> {
  const keys = await crypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])
  const pkcs8 = await crypto.subtle.exportKey('pkcs8', keys.privateKey)
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY')
}

/** The SPKI PEM (`-----BEGIN PUBLIC KEY-----`) of a private key. */
export function publicKeyPemOf (privateKeyPem: string): string {
  return createPublicKey(loadPrivateKey(privateKeyPem)).export({ type: 'spki', format: 'pem' }).toString()
}

export interface SelfSignedParams {
  readonly privateKeyPem: string
  /** Distinguished name, e.g. `CN=swarm-ca, O=<cluster id>`. */
  readonly subject: string
  readonly notBefore: Date
  readonly notAfter: Date
}

/** A self-signed CA certificate (basic constraints CA, may sign certificates and CRLs). */
export async function createCaCertificate (params: SelfSignedParams): Promise<string> {
  const keys = await importKeyPair(params.privateKeyPem)
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: params.subject,
    notBefore: params.notBefore,
    notAfter: params.notAfter,
    signingAlgorithm: SIGNING_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
    ]
  })
  return cert.toString('pem')
}

/**
 * A PKCS#10 request for `privateKeyPem`'s public key. The subject is left
 * empty: the CA decides the node's identity, the request only proves that
 * its sender holds the private key.
 */
export async function createCsr (privateKeyPem: string): Promise<string> {
  const keys = await importKeyPair(privateKeyPem)
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: SIGNING_ALGORITHM })
  return csr.toString('pem')
}

/**
 * The public key (SPKI PEM) of a certificate request, once its signature
 * proves the sender holds the matching private key. Refuses anything that is
 * not an ECDSA P-256 key.
 */
export async function publicKeyPemOfCsr (csrPem: string): Promise<string> {
  if (csrPem.length > MAX_CSR_PEM) throw new CaError('CA_ERR_CSR', `certificate request larger than ${MAX_CSR_PEM} bytes`)
  let csr: x509.Pkcs10CertificateRequest
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem)
  } catch (error) {
    throw new CaError('CA_ERR_CSR', `certificate request cannot be parsed: ${(error as Error).message}`)
  }
  const publicKeyPem = csr.publicKey.toString('pem')
  checkPublicKey(publicKeyPem)
  let signed: boolean
  try {
    signed = await csr.verify()
  } catch (error) {
    throw new CaError('CA_ERR_CSR', `certificate request signature cannot be checked: ${(error as Error).message}`)
  }
  if (!signed) throw new CaError('CA_ERR_CSR', 'certificate request is not signed by the key it carries')
  return publicKeyPem
}

/**
 * Checks that `publicKeyPem` is an ECDSA P-256 SPKI key and returns it as a
 * KeyObject; throws CA_ERR_CSR otherwise.
 */
export function checkPublicKey (publicKeyPem: string): KeyObject {
  let key: KeyObject
  try {
    key = createPublicKey(publicKeyPem)
  } catch (error) {
    throw new CaError('CA_ERR_CSR', `public key cannot be parsed: ${(error as Error).message}`)
  }
  const curve = key.asymmetricKeyDetails?.namedCurve
  if (key.asymmetricKeyType !== 'ec' || curve !== 'prime256v1') {
    throw new CaError('CA_ERR_CSR', `public key must be ECDSA P-256, not ${key.asymmetricKeyType ?? 'unknown'}${curve === undefined ? '' : ` ${curve}`}`)
  }
  return key
}

export interface LeafParams {
  readonly caCertPem: string
  readonly caPrivateKeyPem: string
  /** SPKI PEM of the key being certified; checked to be ECDSA P-256. */
  readonly publicKeyPem: string
  readonly subject: string
  readonly dnsNames: readonly string[]
  readonly notBefore: Date
  readonly notAfter: Date
}

/**
 * An end-entity certificate signed by the CA, usable for both ends of a TLS
 * connection (a manager serves and also dials other managers).
 */
export async function signLeafCertificate (params: LeafParams): Promise<string> {
  checkPublicKey(params.publicKeyPem)
  const ca = new x509.X509Certificate(params.caCertPem)
  const caKeys = await importKeyPair(params.caPrivateKeyPem)
  const publicKey = new x509.PublicKey(params.publicKeyPem)
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: params.subject,
    issuer: ca.subject,
    notBefore: params.notBefore,
    notAfter: params.notAfter,
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(params.dnsNames.map((value) => ({ type: 'dns' as const, value }))),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey)
    ]
  })
  return cert.toString('pem')
}

/** A positive 127-bit serial, unique with overwhelming probability (RFC 5280 §4.1.2.2 allows up to 20 octets). */
function randomSerial (): string {
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0]! & 0x7f) | 0x01
  return bytes.toString('hex')
}

function loadPrivateKey (privateKeyPem: string): KeyObject {
  let key: KeyObject
  try {
    key = createPrivateKey(privateKeyPem)
  } catch (error) {
    throw new CaError('CA_ERR_FILES', `private key cannot be parsed: ${(error as Error).message}`)
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new CaError('CA_ERR_FILES', 'private key must be ECDSA P-256')
  }
  return key
}

async function importKeyPair (privateKeyPem: string): Promise<CryptoKeyPair> {
  const key = loadPrivateKey(privateKeyPem)
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' })
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' })
  return {
    privateKey: await crypto.subtle.importKey('pkcs8', pkcs8, KEY_ALGORITHM, false, ['sign']),
    publicKey: await crypto.subtle.importKey('spki', spki, KEY_ALGORITHM, true, ['verify'])
  }
}
