/**
 * Keys and certificates on disk, as PEM files readable by their owner only
 * (0600, in a 0700 directory), named as swarmkit names them:
 *
 *     swarm-root-ca.crt  swarm-root-ca.key   (managers)
 *     swarm-node.crt     swarm-node.key      (every node; the CA certificate too)
 *
 * `writeSecretFiles` writes a set of files so that each is replaced whole:
 * every file goes to a fresh temporary file (created 0600, never reusing one
 * a crash left behind), is fsynced, and only once all are written are they
 * renamed over the old ones and the directory fsynced. A crash between two
 * renames can still pair a new certificate with an old key; the loaders
 * check that each key matches its certificate, so such a pair is reported,
 * never used.
 */
import { mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises'
import { X509Certificate } from 'node:crypto'
import { join } from 'node:path'
import { CaError } from './errors.ts'
import { publicKeyPemOf } from './pki.ts'
import { rootCaFromPem, type NodeCredentials, type RootCa } from './root-ca.ts'

export const ROOT_CA_CERT_FILE = 'swarm-root-ca.crt'
export const ROOT_CA_KEY_FILE = 'swarm-root-ca.key'
export const NODE_CERT_FILE = 'swarm-node.crt'
export const NODE_KEY_FILE = 'swarm-node.key'

const FILE_NAME = /^[A-Za-z0-9._-]+$/

/** Writes each `name → contents` into `dir` (created 0700 if missing), atomically per file, mode 0600. */
export async function writeSecretFiles (dir: string, files: Readonly<Record<string, string>>): Promise<void> {
  const names = Object.keys(files)
  for (const name of names) {
    if (!FILE_NAME.test(name) || name.startsWith('.')) throw new CaError('CA_ERR_INVALID', `"${name}" is not a plain file name`)
  }
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const written: Array<[string, string]> = []
  try {
    for (const name of names) {
      const target = join(dir, name)
      const temporary = `${target}.tmp`
      await unlink(temporary).catch(ignoreMissing)
      // 'wx': a file left at this path (by a crash, or by someone else) is never reused with its old mode.
      const file = await open(temporary, 'wx', 0o600)
      written.push([temporary, target])
      try {
        await file.writeFile(files[name]!)
        await file.sync()
      } finally {
        await file.close()
      }
    }
  } catch (error) {
    await Promise.all(written.map(([temporary]) => unlink(temporary).catch(ignoreMissing)))
    throw error
  }
  for (const [temporary, target] of written) await rename(temporary, target)
  const directory = await open(dir, 'r')
  try { await directory.sync() } finally { await directory.close() }
}

export async function saveRootCa (dir: string, ca: RootCa): Promise<void> {
  await writeSecretFiles(dir, { [ROOT_CA_KEY_FILE]: ca.keyPem, [ROOT_CA_CERT_FILE]: ca.certPem })
}

/** The root CA kept in `dir`, or undefined if this node has none. */
export async function loadRootCa (dir: string): Promise<RootCa | undefined> {
  const certPem = await readOptional(join(dir, ROOT_CA_CERT_FILE))
  const keyPem = await readPrivate(join(dir, ROOT_CA_KEY_FILE))
  if (certPem === undefined && keyPem === undefined) return undefined
  if (certPem === undefined || keyPem === undefined) {
    throw new CaError('CA_ERR_FILES', `${dir} holds only one of ${ROOT_CA_CERT_FILE} and ${ROOT_CA_KEY_FILE}`)
  }
  return rootCaFromPem(certPem, keyPem)
}

/** Writes the node's key, certificate and CA certificate (the node's certificate file carries the CA after it, as a chain). */
export async function saveNodeCredentials (dir: string, credentials: NodeCredentials): Promise<void> {
  await writeSecretFiles(dir, {
    [NODE_KEY_FILE]: credentials.keyPem,
    [NODE_CERT_FILE]: chain(credentials.certPem, credentials.caCertPem)
  })
}

/**
 * The node's credentials kept in `dir`, or undefined before it joined. Checks
 * that the key is the certificate's and the certificate is the CA's; an
 * expired certificate is still returned (renewal decides what to do).
 */
export async function loadNodeCredentials (dir: string): Promise<NodeCredentials | undefined> {
  const bundle = await readOptional(join(dir, NODE_CERT_FILE))
  const keyPem = await readPrivate(join(dir, NODE_KEY_FILE))
  if (bundle === undefined && keyPem === undefined) return undefined
  if (bundle === undefined || keyPem === undefined) {
    throw new CaError('CA_ERR_FILES', `${dir} holds only one of ${NODE_CERT_FILE} and ${NODE_KEY_FILE}`)
  }
  const pems = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? []
  if (pems.length !== 2) throw new CaError('CA_ERR_FILES', `${NODE_CERT_FILE} must hold the node certificate then the CA certificate, holds ${pems.length} certificates`)
  const [certPem, caCertPem] = pems as [string, string]
  let cert: X509Certificate
  let ca: X509Certificate
  try {
    cert = new X509Certificate(certPem)
    ca = new X509Certificate(caCertPem)
  } catch (error) {
    throw new CaError('CA_ERR_FILES', `${NODE_CERT_FILE} cannot be parsed: ${(error as Error).message}`)
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw new CaError('CA_ERR_FILES', `${NODE_CERT_FILE}: the node certificate is not signed by the CA certificate after it`)
  if (publicKeyPemOf(keyPem) !== cert.publicKey.export({ type: 'spki', format: 'pem' }).toString()) {
    throw new CaError('CA_ERR_FILES', `${NODE_KEY_FILE} does not match the certificate in ${NODE_CERT_FILE}`)
  }
  return Object.freeze({ caCertPem: normalise(caCertPem), certPem: normalise(certPem), keyPem })
}

async function readOptional (path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new CaError('CA_ERR_FILES', `cannot read ${path}: ${(error as Error).message}`)
  }
}

/** A private key file must not be readable by group or others, as ssh insists. */
async function readPrivate (path: string): Promise<string | undefined> {
  const text = await readOptional(path)
  if (text === undefined) return undefined
  const mode = (await stat(path)).mode & 0o777
  if ((mode & 0o077) !== 0) {
    throw new CaError('CA_ERR_FILES', `${path} is readable by others (mode ${mode.toString(8).padStart(4, '0')}); run chmod 600 on it`)
  }
  return text
}

function chain (...pems: string[]): string {
  return pems.map(normalise).join('')
}

function normalise (pem: string): string {
  return pem.trim() + '\n'
}

function ignoreMissing (error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
}

