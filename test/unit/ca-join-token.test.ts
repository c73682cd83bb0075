/** Join tokens: Swarm's format, round trip, every way a token can be wrong, rotation, and the words printed around them. */
import t from 'tap'
import { createHash } from 'node:crypto'
import {
  createJoinTokens, formatJoinToken, generateJoinToken, parseJoinToken, roleForJoinToken, rotateJoinToken, secretsEqual
} from '../../manager/ca/join-token.ts'
import { formatJoinCommand, initMessage, joinInstructions, parseManagerAddress } from '../../manager/ca/join-command.ts'

const DIGEST = createHash('sha256').update('a CA certificate').digest('hex')
const OTHER_DIGEST = createHash('sha256').update('another CA certificate').digest('hex')

/** The token printed in the Docker Swarm article, digits and all. */
const ARTICLE_TOKEN = 'SWMTKN-1-4dm09nzp3xic15uebqja69o2552b75pcg7or0g9t2eld9ehqt3-1kb79trnv6fbydvl9vif3fsch'

t.test('a token has Swarm\'s shape and reads back to its digest and secret', async (t) => {
  const token = generateJoinToken(DIGEST)
  t.match(token, /^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$/)
  const parsed = parseJoinToken(token)
  t.equal(parsed.version, 1)
  t.equal(parsed.caDigest, DIGEST)
  t.equal(formatJoinToken(parsed.caDigest, parsed.secret), token, 'format ∘ parse is the identity')
})

t.test('the article\'s token parses, and formats back to itself', async (t) => {
  const parsed = parseJoinToken(ARTICLE_TOKEN)
  t.match(parsed.caDigest, /^[0-9a-f]{64}$/)
  t.equal(parsed.secret, '1kb79trnv6fbydvl9vif3fsch')
  t.equal(formatJoinToken(parsed.caDigest, parsed.secret), ARTICLE_TOKEN)
})

t.test('small digests are zero-padded to 50 characters', async (t) => {
  const digest = '00000000000000000000000000000000000000000000000000000000000000ff'
  const token = formatJoinToken(digest, '0000000000000000000000001')
  t.equal(token, `SWMTKN-1-${'0'.repeat(48)}73-0000000000000000000000001`)
  t.equal(parseJoinToken(token).caDigest, digest)
})

t.test('malformed tokens are refused with the part that is wrong, never echoing the token', async (t) => {
  const good = generateJoinToken(DIGEST)
  const [, , digest, secret] = good.split('-') as [string, string, string, string]
  const cases: Array<[string, string, RegExp]> = [
    ['empty', '', /empty/],
    ['wrong prefix', good.replace('SWMTKN', 'SWMTKX'), /must start with "SWMTKN-"/],
    ['lowercase prefix', good.replace('SWMTKN', 'swmtkn'), /must start with "SWMTKN-"/],
    ['missing part', `SWMTKN-1-${digest}`, /four parts/],
    ['extra part', `${good}-x`, /four parts/],
    ['bad version', `SWMTKN-2-${digest}-${secret}`, /version "2" is not supported/],
    ['short digest', `SWMTKN-1-${digest.slice(1)}-${secret}`, /CA digest must be 50 base-36 characters .* has 49/],
    ['digest with other characters', `SWMTKN-1-${digest.slice(1)}!-${secret}`, /CA digest must be 50 base-36/],
    ['uppercase digest', `SWMTKN-1-${digest.toUpperCase()}-${secret}`, /CA digest must be 50 base-36/],
    ['digest beyond 256 bits', `SWMTKN-1-${'z'.repeat(50)}-${secret}`, /larger than a SHA-256 digest/],
    ['short secret', `SWMTKN-1-${digest}-${secret.slice(1)}`, /secret must be 25 base-36/],
    ['secret with other characters', `SWMTKN-1-${digest}-${secret.slice(1)}_`, /secret must be 25 base-36/],
    ['secret beyond 128 bits', `SWMTKN-1-${digest}-${'z'.repeat(25)}`, /secret is larger than 128 bits/]
  ]
  for (const [name, token, message] of cases) {
    const error = t.throws(() => parseJoinToken(token), { code: 'CA_ERR_TOKEN_FORMAT', message }, name) as Error | undefined
    if (error !== undefined && token.length > 20) t.notMatch(error.message, secret, `${name}: the secret is not in the message`)
  }
})

t.test('surrounding whitespace (a pasted token) is accepted', async (t) => {
  const token = generateJoinToken(DIGEST)
  t.equal(parseJoinToken(`  ${token}\n`).caDigest, DIGEST)
})

t.test('each secret admits its role; the worker and manager secrets differ', async (t) => {
  const tokens = createJoinTokens(DIGEST)
  t.not(parseJoinToken(tokens.worker).secret, parseJoinToken(tokens.manager).secret)
  t.equal(roleForJoinToken(tokens, tokens.worker, DIGEST), 'worker')
  t.equal(roleForJoinToken(tokens, tokens.manager, DIGEST), 'manager')
})

t.test('a wrong secret is refused', async (t) => {
  const tokens = createJoinTokens(DIGEST)
  t.throws(() => roleForJoinToken(tokens, generateJoinToken(DIGEST), DIGEST), { code: 'CA_ERR_TOKEN_SECRET', message: /not valid for this swarm/ })
})

t.test('a tampered CA digest is refused, even with the right secret', async (t) => {
  const tokens = createJoinTokens(DIGEST)
  const tampered = formatJoinToken(OTHER_DIGEST, parseJoinToken(tokens.worker).secret)
  t.throws(() => roleForJoinToken(tokens, tampered, DIGEST), { code: 'CA_ERR_TOKEN_DIGEST', message: /another swarm/ })
})

t.test('a rotated token no longer admits; the other role\'s token is untouched', async (t) => {
  const tokens = createJoinTokens(DIGEST)
  const rotated = rotateJoinToken(tokens, 'worker')
  t.not(rotated.worker, tokens.worker)
  t.equal(rotated.manager, tokens.manager)
  t.equal(parseJoinToken(rotated.worker).caDigest, DIGEST, 'rotation keeps the CA digest')
  t.throws(() => roleForJoinToken(rotated, tokens.worker, DIGEST), { code: 'CA_ERR_TOKEN_SECRET' })
  t.equal(roleForJoinToken(rotated, rotated.worker, DIGEST), 'worker')
  t.equal(roleForJoinToken(rotated, tokens.manager, DIGEST), 'manager')
  const both = rotateJoinToken(rotated, 'manager')
  t.throws(() => roleForJoinToken(both, tokens.manager, DIGEST), { code: 'CA_ERR_TOKEN_SECRET' })
  t.ok(Object.isFrozen(both))
})

t.test('secretsEqual compares whole secrets', async (t) => {
  t.ok(secretsEqual('abc', 'abc'))
  t.notOk(secretsEqual('abc', 'abd'))
  t.notOk(secretsEqual('abc', 'abcd'), 'different lengths compare without throwing')
  t.notOk(secretsEqual('', 'a'))
})

t.test('formatJoinToken refuses what it cannot encode', async (t) => {
  t.throws(() => formatJoinToken('xyz', '0000000000000000000000001'), { code: 'CA_ERR_INVALID' })
  t.throws(() => formatJoinToken(DIGEST, 'short'), { code: 'CA_ERR_INVALID' })
})

t.test('the join command is printed in the article\'s shape', async (t) => {
  const address = { host: '192.168.1.107', port: 2377 }
  t.equal(formatJoinCommand(ARTICLE_TOKEN, address), `weft swarm join \\\n--token ${ARTICLE_TOKEN} \\\n192.168.1.107:2377`)
  t.equal(joinInstructions('worker', ARTICLE_TOKEN, address),
    'To add a worker to this swarm, run the following command:\n\n' +
    `weft swarm join \\\n--token ${ARTICLE_TOKEN} \\\n192.168.1.107:2377\n`)
  t.equal(initMessage('5pe2p4dlxku6z2a6jnvxc4ve6', ARTICLE_TOKEN, address),
    'Swarm initialized: current node (5pe2p4dlxku6z2a6jnvxc4ve6) is now a manager.\n\n' +
    'To add a worker to this swarm, run the following command:\n\n' +
    `weft swarm join \\\n--token ${ARTICLE_TOKEN} \\\n192.168.1.107:2377\n\n` +
    'To add a manager to this swarm, run \'weft swarm join-token manager\' and follow the instructions.\n')
  t.equal(formatJoinCommand('T', { host: 'fd00::1', port: 2377 }).split('\n')[2], '[fd00::1]:2377')
})

t.test('manager addresses: port 2377 by default', async (t) => {
  t.same(parseManagerAddress('192.168.1.107'), { host: '192.168.1.107', port: 2377 })
  t.same(parseManagerAddress('192.168.1.107:4000'), { host: '192.168.1.107', port: 4000 })
  t.same(parseManagerAddress('manager-1.lan'), { host: 'manager-1.lan', port: 2377 })
  t.same(parseManagerAddress('[fd00::1]:2400'), { host: 'fd00::1', port: 2400 })
  t.same(parseManagerAddress('fd00::1'), { host: 'fd00::1', port: 2377 })
  t.throws(() => parseManagerAddress('10.0.0.1:0'), { code: 'CA_ERR_INVALID', message: /port must be 1-65535/ })
  t.throws(() => parseManagerAddress('10.0.0.1:99999'), { code: 'CA_ERR_INVALID' })
  t.throws(() => parseManagerAddress('[10.0.0.1]:2377'), { code: 'CA_ERR_INVALID', message: /IPv6/ })
  t.throws(() => parseManagerAddress('a b:1'), { code: 'CA_ERR_INVALID' })
})
