/** The cluster CA: root certificate, node certificates from a request or a key, identity parsing, verification, files on disk. */
import t from 'tap'
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat, chmod, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bootstrapCluster } from '../../manager/ca/bootstrap.ts'
import {
  loadNodeCredentials, loadRootCa, NODE_CERT_FILE, NODE_KEY_FILE, ROOT_CA_CERT_FILE, ROOT_CA_KEY_FILE, saveNodeCredentials, saveRootCa, writeSecretFiles
} from '../../manager/ca/files.ts'
import { parseJoinToken, roleForJoinToken } from '../../manager/ca/join-token.ts'
import { identityOf, verifyNodeCertificate } from '../../manager/ca/node-identity.ts'
import { createCsr, generatePrivateKeyPem, publicKeyPemOf, signLeafCertificate } from '../../manager/ca/pki.ts'
import {
  BACKDATE_MS, caDigest, createRootCa, issueNodeCertificate, issueNodeCredentials, NODE_CERT_VALIDITY_MS, ROOT_CA_VALIDITY_MS, rootCaFromPem
} from '../../manager/ca/root-ca.ts'

const NOW = new Date('2026-05-01T12:00:00Z')
const DAY = 24 * 3600 * 1000

const ca = await createRootCa({ clusterId: 'qi4i0vh7lgb60qxy3mdygb27f', now: NOW })
const otherCa = await createRootCa({ clusterId: 'othercluster', now: NOW })

t.test('the root CA is a self-signed P-256 CA certificate naming the cluster, valid 20 years', async (t) => {
  const cert = new X509Certificate(ca.certPem)
  t.ok(cert.ca, 'basic constraints: CA')
  t.equal(cert.subject, 'CN=swarm-ca\nO=qi4i0vh7lgb60qxy3mdygb27f')
  t.equal(cert.issuer, cert.subject)
  t.ok(cert.verify(cert.publicKey), 'self-signed')
  t.equal(cert.publicKey.asymmetricKeyType, 'ec')
  t.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
  t.equal(cert.validFromDate.getTime(), Math.floor((NOW.getTime() - BACKDATE_MS) / 1000) * 1000)
  t.equal(cert.validToDate.getTime(), NOW.getTime() + ROOT_CA_VALIDITY_MS)
  t.equal(ca.clusterId, 'qi4i0vh7lgb60qxy3mdygb27f')
})

t.test('the CA digest is SHA-256 of the DER, whatever the PEM\'s line breaks', async (t) => {
  const der = new X509Certificate(ca.certPem).raw
  t.equal(ca.digest, createHash('sha256').update(der).digest('hex'))
  const reflowed = ca.certPem.replace(/\n/g, '\r\n') + '\n\n'
  t.equal(caDigest(reflowed), ca.digest)
  t.not(otherCa.digest, ca.digest)
})

t.test('a node certificate from a request carries node id, role and cluster, as swarmkit\'s', async (t) => {
  const keyPem = await generatePrivateKeyPem()
  const csrPem = await createCsr(keyPem)
  const identity = { nodeId: '5pe2p4dlxku6z2a6jnvxc4ve6', role: 'worker' as const, clusterId: ca.clusterId }
  const certPem = await issueNodeCertificate(ca, identity, { csrPem }, { now: NOW })
  const cert = new X509Certificate(certPem)
  t.equal(cert.subject, `O=${ca.clusterId}\nOU=swarm-worker\nCN=5pe2p4dlxku6z2a6jnvxc4ve6`)
  t.equal(cert.subjectAltName, 'DNS:swarm-worker, DNS:5pe2p4dlxku6z2a6jnvxc4ve6')
  t.notOk(cert.ca)
  t.ok(cert.checkIssued(new X509Certificate(ca.certPem)))
  t.same(cert.keyUsage?.slice().sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'server and client auth')
  t.equal(cert.validToDate.getTime(), NOW.getTime() + NODE_CERT_VALIDITY_MS, '90 days')
  t.ok(cert.validFromDate < NOW, 'backdated for clock skew')
  t.equal(cert.publicKey.export({ type: 'spki', format: 'pem' }), publicKeyPemOf(keyPem), 'certifies the requester\'s key')
  t.same(identityOf(certPem), identity)
  t.same(verifyNodeCertificate(ca.certPem, certPem, NOW), identity)
})

t.test('a node certificate from a bare public key; manager role', async (t) => {
  const keyPem = await generatePrivateKeyPem()
  const certPem = await issueNodeCertificate(ca, { nodeId: 'm1', role: 'manager', clusterId: ca.clusterId }, { publicKeyPem: publicKeyPemOf(keyPem) }, { now: NOW })
  t.same(identityOf(certPem), { nodeId: 'm1', role: 'manager', clusterId: ca.clusterId })
  t.equal(new X509Certificate(certPem).subjectAltName, 'DNS:swarm-manager, DNS:m1')
})

t.test('a node certificate never outlives its CA', async (t) => {
  const shortCa = await createRootCa({ clusterId: 'short', now: NOW, validityMs: 10 * DAY })
  const creds = await issueNodeCredentials(shortCa, { nodeId: 'n1', role: 'worker', clusterId: 'short' }, { now: NOW })
  t.equal(new X509Certificate(creds.certPem).validToDate.getTime(), NOW.getTime() + 10 * DAY)
})

t.test('requests and keys the CA will not certify', async (t) => {
  const identity = { nodeId: 'n1', role: 'worker' as const, clusterId: ca.clusterId }
  const csrPem = await createCsr(await generatePrivateKeyPem())
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64')
  der[der.length - 3]! ^= 0x01 // inside the signature
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`
  await t.rejects(issueNodeCertificate(ca, identity, { csrPem: tampered }, { now: NOW }), { code: 'CA_ERR_CSR', message: /not signed by the key it carries/ }, 'a request whose signature does not verify')
  await t.rejects(issueNodeCertificate(ca, identity, { csrPem: 'not a request' }, { now: NOW }), { code: 'CA_ERR_CSR', message: /cannot be parsed/ })
  await t.rejects(issueNodeCertificate(ca, identity, { csrPem: 'x'.repeat(20_000) }, { now: NOW }), { code: 'CA_ERR_CSR', message: /larger than/ })
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  await t.rejects(issueNodeCertificate(ca, identity, { publicKeyPem: rsa }, { now: NOW }), { code: 'CA_ERR_CSR', message: /must be ECDSA P-256, not rsa/ })
  const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  await t.rejects(issueNodeCertificate(ca, identity, { publicKeyPem: p384 }, { now: NOW }), { code: 'CA_ERR_CSR', message: /secp384r1/ })
})

t.test('identities the CA will not put in a subject', async (t) => {
  const source = { publicKeyPem: publicKeyPemOf(await generatePrivateKeyPem()) }
  await t.rejects(issueNodeCertificate(ca, { nodeId: 'n1, OU=swarm-manager', role: 'worker', clusterId: ca.clusterId }, source, { now: NOW }), { code: 'CA_ERR_INVALID', message: /node id/ })
  await t.rejects(issueNodeCertificate(ca, { nodeId: 'n1', role: 'admin' as 'worker', clusterId: ca.clusterId }, source, { now: NOW }), { code: 'CA_ERR_INVALID', message: /role/ })
  await t.rejects(issueNodeCertificate(ca, { nodeId: 'n1', role: 'worker', clusterId: 'othercluster' }, source, { now: NOW }), { code: 'CA_ERR_INVALID', message: /from the CA of cluster/ })
  await t.rejects(issueNodeCertificate(ca, { nodeId: 'n1', role: 'worker', clusterId: ca.clusterId }, source, { now: NOW, validityMs: 0 }), { code: 'CA_ERR_INVALID' })
  await t.rejects(createRootCa({ clusterId: 'Bad Cluster', now: NOW }), { code: 'CA_ERR_INVALID' })
})

t.test('verification refuses another CA\'s certificate, expiry, early use, and a CA certificate', async (t) => {
  const creds = await issueNodeCredentials(ca, { nodeId: 'n1', role: 'worker', clusterId: ca.clusterId }, { now: NOW })
  const foreign = await issueNodeCredentials(otherCa, { nodeId: 'n1', role: 'worker', clusterId: otherCa.clusterId }, { now: NOW })
  t.throws(() => verifyNodeCertificate(ca.certPem, foreign.certPem, NOW), { code: 'CA_ERR_CERT', message: /not signed by this swarm's CA/ })
  t.throws(() => verifyNodeCertificate(ca.certPem, creds.certPem, new Date(NOW.getTime() + 91 * DAY)), { code: 'CA_ERR_CERT', message: /expired/ })
  t.throws(() => verifyNodeCertificate(ca.certPem, creds.certPem, new Date(NOW.getTime() - 2 * BACKDATE_MS)), { code: 'CA_ERR_CERT', message: /not valid before/ })
  t.throws(() => verifyNodeCertificate(ca.certPem, ca.certPem, NOW), { code: 'CA_ERR_CERT' })
  t.throws(() => identityOf('garbage'), { code: 'CA_ERR_CERT', message: /cannot be parsed/ })
})

t.test('identityOf refuses subjects that are not exactly one node id, role and cluster', async (t) => {
  const keyPem = await generatePrivateKeyPem()
  const sign = async (subject: string): Promise<string> => await signLeafCertificate({
    caCertPem: ca.certPem, caPrivateKeyPem: ca.keyPem, publicKeyPem: publicKeyPemOf(keyPem), subject, dnsNames: ['x'], notBefore: NOW, notAfter: new Date(NOW.getTime() + DAY)
  })
  t.throws(() => identityOf(ca.certPem), { code: 'CA_ERR_CERT', message: /exactly one OU/ }, 'the CA certificate names no role')
  {
    const pem = await sign(`O=${ca.clusterId}, OU=swarm-admin, CN=n1`)
    t.throws(() => identityOf(pem),  { code: 'CA_ERR_CERT', message: /neither swarm-worker nor swarm-manager/ })
  }
  {
    const pem = await sign(`O=${ca.clusterId}, OU=swarm-worker, OU=swarm-manager, CN=n1`)
    t.throws(() => identityOf(pem),  { code: 'CA_ERR_CERT', message: /exactly one OU, has 2/ })
  }
  {
    const pem = await sign(`O=${ca.clusterId}, OU=swarm-worker, CN=N 1`)
    t.throws(() => identityOf(pem),  { code: 'CA_ERR_CERT', message: /not a node id/ })
  }
  {
    const pem = await sign(`OU=swarm-worker, CN=n1`)
    t.throws(() => identityOf(pem),  { code: 'CA_ERR_CERT', message: /exactly one O,/ })
  }
})

t.test('bootstrap: a CA, the first manager\'s credentials and two tokens for that CA', async (t) => {
  const boot = await bootstrapCluster({ now: NOW })
  t.match(boot.rootCa.clusterId, /^[0-9a-z]{25}$/)
  t.equal(boot.manager.role, 'manager')
  t.same(verifyNodeCertificate(boot.rootCa.certPem, boot.credentials.certPem, NOW), boot.manager)
  t.equal(parseJoinToken(boot.joinTokens.worker).caDigest, boot.rootCa.digest)
  t.equal(roleForJoinToken(boot.joinTokens, boot.joinTokens.manager, boot.rootCa.digest), 'manager')
})

t.test('files: written 0600 in a 0700 directory, read back, nothing left behind', async (t) => {
  const dir = join(await mkdtemp(join(tmpdir(), 'weft-ca-')), 'certificates')
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  t.equal(await loadRootCa(dir), undefined, 'no CA yet')
  t.equal(await loadNodeCredentials(dir), undefined, 'not joined yet')
  const creds = await issueNodeCredentials(ca, { nodeId: 'm1', role: 'manager', clusterId: ca.clusterId }, { now: NOW })
  await saveRootCa(dir, ca)
  await saveNodeCredentials(dir, creds)
  t.equal((await stat(dir)).mode & 0o777, 0o700)
  const names = (await readdir(dir)).sort()
  t.same(names, [NODE_CERT_FILE, NODE_KEY_FILE, ROOT_CA_CERT_FILE, ROOT_CA_KEY_FILE].sort(), 'no temporary file remains')
  for (const name of names) t.equal((await stat(join(dir, name))).mode & 0o777, 0o600, `${name} is 0600`)
  t.same(await loadRootCa(dir), ca)
  const loaded = await loadNodeCredentials(dir)
  t.equal(loaded?.certPem.trim(), creds.certPem.trim())
  t.equal(loaded?.caCertPem.trim(), ca.certPem.trim())
  t.equal(loaded?.keyPem, creds.keyPem)
  t.match(await readFile(join(dir, NODE_CERT_FILE), 'utf8'), /END CERTIFICATE-----\n-----BEGIN CERTIFICATE/, 'the node certificate file is a chain')

  await saveRootCa(dir, otherCa)
  t.same(await loadRootCa(dir), otherCa, 'a second write replaces the first')
})

t.test('files: a mismatched pair, a key readable by others, half a pair', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-ca-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const creds = await issueNodeCredentials(ca, { nodeId: 'n1', role: 'worker', clusterId: ca.clusterId }, { now: NOW })
  await saveNodeCredentials(dir, { ...creds, keyPem: await generatePrivateKeyPem() })
  await t.rejects(loadNodeCredentials(dir), { code: 'CA_ERR_FILES', message: /does not match/ })
  await saveNodeCredentials(dir, creds)
  await chmod(join(dir, NODE_KEY_FILE), 0o644)
  await t.rejects(loadNodeCredentials(dir), { code: 'CA_ERR_FILES', message: /readable by others \(mode 0644\)/ })
  await rm(join(dir, NODE_KEY_FILE))
  await t.rejects(loadNodeCredentials(dir), { code: 'CA_ERR_FILES', message: /only one of/ })
  await writeSecretFiles(dir, { [ROOT_CA_CERT_FILE]: ca.certPem, [ROOT_CA_KEY_FILE]: otherCa.keyPem })
  await t.rejects(loadRootCa(dir), { code: 'CA_ERR_FILES', message: /does not match the root CA certificate/ })
  t.throws(() => rootCaFromPem(ca.certPem, otherCa.keyPem), { code: 'CA_ERR_FILES' })
  await t.rejects(writeSecretFiles(dir, { '../escape': 'x' }), { code: 'CA_ERR_INVALID' })
})

t.test('files: a stale temporary file with a loose mode is not reused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-ca-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'secret.pem.tmp'), 'left by a crash', { mode: 0o644 })
  await writeSecretFiles(dir, { 'secret.pem': 'new' })
  t.equal((await stat(join(dir, 'secret.pem'))).mode & 0o777, 0o600)
  t.equal(await readFile(join(dir, 'secret.pem'), 'utf8'), 'new')
})
