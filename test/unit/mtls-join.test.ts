/**
 * Joining over mutual TLS on 127.0.0.1: a good token yields a certificate
 * with the right node id and role; a tampered CA digest is caught by the
 * joining node before the secret leaves it; wrong and rotated secrets are
 * refused by the manager; join params are checked.
 */
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { bootstrapCluster } from '../../manager/ca/bootstrap.ts'
import { formatJoinToken, generateJoinToken, parseJoinToken, rotateJoinToken, type JoinTokens } from '../../manager/ca/join-token.ts'
import type { NodeIdentity } from '../../manager/ca/node-identity.ts'
import { createRootCa } from '../../manager/ca/root-ca.ts'
import { joinSwarm, JOIN_METHOD, registerJoin } from '../../manager/api/join.ts'
import { connectNode, connectPinned, MtlsServer } from '../../manager/api/mtls.ts'
import type { Peer } from '../../manager/api/rpc-server.ts'

const NOW = new Date()
const cluster = await bootstrapCluster({ now: NOW, nodeId: 'manager1' })
let tokens: JoinTokens = cluster.joinTokens
const joined: NodeIdentity[] = []
let nextNode = 1

const server = new MtlsServer({ credentials: cluster.credentials })
registerJoin(server, {
  rootCa: () => cluster.rootCa,
  joinTokens: () => tokens,
  newNodeId: () => `node${nextNode++}`,
  onJoined: (node) => { joined.push(node) }
})
server.handle('whoami', (_params, peer: Peer) => peer)
const { port } = await server.listen(0, '127.0.0.1')
const manager = { host: '127.0.0.1', port }
t.teardown(async () => await server.close())

/** Waits (up to 2 s) until `done()` holds and the server has no connection open: every byte a client sent has been read. */
async function settled (done: () => boolean = () => true): Promise<void> {
  for (let i = 0; i < 200 && !(done() && server.stats.open === 0); i++) await sleep(10)
}

t.test('a worker token yields a worker certificate, used from then on', async (t) => {
  const before = joined.length
  const node = await joinSwarm({ manager, token: tokens.worker })
  t.match(node.identity, { nodeId: /^node\d+$/, role: 'worker', clusterId: cluster.rootCa.clusterId })
  t.same(joined.slice(before), [node.identity], 'the manager recorded the node')
  t.equal(node.credentials.caCertPem.trim(), cluster.rootCa.certPem.trim())
  const client = await connectNode({ ...manager, credentials: node.credentials })
  t.teardown(async () => await client.close())
  t.match(await client.call('whoami'), { kind: 'node', nodeId: node.identity.nodeId, role: 'worker', clusterId: cluster.rootCa.clusterId, address: /^127\.0\.0\.1:\d+$/ },
    'the manager knows the node from its certificate')
})

t.test('a manager token yields a manager certificate', async (t) => {
  const node = await joinSwarm({ manager, token: `  ${tokens.manager}\n` })
  t.equal(node.identity.role, 'manager')
})

t.test('a tampered CA digest is caught before the secret is sent', async (t) => {
  await settled()
  const before = server.stats
  const joinedBefore = joined.length
  const secret = parseJoinToken(tokens.worker).secret
  const impostorCa = await createRootCa({ clusterId: 'impostor', now: NOW })
  const tampered = formatJoinToken(impostorCa.digest, secret)
  await t.rejects(joinSwarm({ manager, token: tampered }), { code: 'CA_ERR_TOKEN_DIGEST', message: /the secret was not sent/ })
  // The node may finish its handshake before the manager has seen it: wait for the manager to see it come and go.
  await settled(() => server.stats.connections > before.connections)
  const after = server.stats
  t.equal(after.connections, before.connections + 1, 'the node did connect (TLS handshake) …')
  t.equal(after.requests, before.requests, '… but sent no request: the manager never received the secret')
  t.equal(joined.length, joinedBefore)
})

t.test('a digest altered by one character is caught the same way', async (t) => {
  const parts = tokens.worker.split('-')
  const digest = parts[2]!
  parts[2] = digest.slice(0, -1) + (digest.endsWith('0') ? '1' : '0')
  await t.rejects(joinSwarm({ manager, token: parts.join('-') }), { code: 'CA_ERR_TOKEN_DIGEST' })
})

t.test('a wrong secret is refused by the manager, with its code', async (t) => {
  const joinedBefore = joined.length
  await t.rejects(joinSwarm({ manager, token: generateJoinToken(cluster.rootCa.digest) }), { code: 'CA_ERR_TOKEN_SECRET', message: /not valid for this swarm/ })
  t.equal(joined.length, joinedBefore, 'no node recorded')
})

t.test('a rotated token no longer admits; the new one does', async (t) => {
  const old = tokens.worker
  tokens = rotateJoinToken(tokens, 'worker')
  await t.rejects(joinSwarm({ manager, token: old }), { code: 'CA_ERR_TOKEN_SECRET' })
  t.equal((await joinSwarm({ manager, token: tokens.worker })).identity.role, 'worker')
})

t.test('a malformed token fails before any connection', async (t) => {
  await settled()
  const before = server.stats.connections
  await t.rejects(joinSwarm({ manager, token: 'SWMTKN-1-short-secret' }), { code: 'CA_ERR_TOKEN_FORMAT' })
  t.equal(server.stats.connections, before)
})

t.test('join params are checked; a bad request is not recorded', async (t) => {
  const { client } = await connectPinned({ ...manager, caDigest: cluster.rootCa.digest })
  t.teardown(async () => await client.close())
  const joinedBefore = joined.length
  await t.rejects(client.call(JOIN_METHOD, { token: tokens.worker }), { code: 'API_ERR_INVALID_PARAMS', message: /csr/ })
  await t.rejects(client.call(JOIN_METHOD, { token: tokens.worker, csr: 'not a request' }), { code: 'CA_ERR_CSR' })
  t.equal(joined.length, joinedBefore)
})

t.test('nothing listening: a clear error', async (t) => {
  const closed = new MtlsServer({ credentials: cluster.credentials })
  const address = await closed.listen(0, '127.0.0.1')
  await closed.close()
  await t.rejects(joinSwarm({ manager: { host: '127.0.0.1', port: address.port }, token: tokens.worker }), { code: 'API_ERR_UNREACHABLE', message: /ECONNREFUSED/ })
})
