/**
 * Join tokens, in Swarm's format:
 *
 *     SWMTKN-1-<CA digest: 50 base-36 chars>-<secret: 25 base-36 chars>
 *
 * The digest is SHA-256 over the root CA certificate's DER, written in base
 * 36 and zero-padded (36^50 > 2^256); the secret is 128 random bits, padded
 * to 25 characters. The digest lets a joining node recognise the swarm's CA
 * before it sends anything (see manager/api/join.ts); the secret is what
 * admits it, and which secret it is decides the role: workers and managers
 * have one each, rotated independently.
 *
 * A token is a credential: error messages here never repeat it.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { CaError } from './errors.ts'
import { fromBase36, ID_LENGTH, randomId, toBase36 } from './ids.ts'
import type { NodeRole } from './node-identity.ts'

export const TOKEN_PREFIX = 'SWMTKN'
export const TOKEN_VERSION = 1
export const DIGEST_CHARS = 50
export const SECRET_CHARS = ID_LENGTH

const MAX_DIGEST = (1n << 256n) - 1n
const MAX_SECRET = (1n << 128n) - 1n
const HEX_DIGEST = /^[0-9a-f]{64}$/

export interface JoinToken {
  readonly version: typeof TOKEN_VERSION
  /** SHA-256 of the CA certificate's DER, lowercase hex (as `caDigest` returns it). */
  readonly caDigest: string
  readonly secret: string
}

/** The swarm's two current tokens. Kept with the cluster's state; shown by `weft swarm join-token`. */
export interface JoinTokens {
  readonly worker: string
  readonly manager: string
}

export function formatJoinToken (caDigest: string, secret: string): string {
  if (!HEX_DIGEST.test(caDigest)) throw new CaError('CA_ERR_INVALID', 'CA digest must be 64 lowercase hex characters (SHA-256)')
  const value = fromBase36(secret)
  if (secret.length !== SECRET_CHARS || value === undefined || value > MAX_SECRET) {
    throw new CaError('CA_ERR_INVALID', `join token secret must be ${SECRET_CHARS} base-36 characters`)
  }
  return `${TOKEN_PREFIX}-${TOKEN_VERSION}-${toBase36(BigInt(`0x${caDigest}`), DIGEST_CHARS)}-${secret}`
}

/** Reads a token; throws CA_ERR_TOKEN_FORMAT naming the first part that is wrong. */
export function parseJoinToken (token: string): JoinToken {
  const text = token.trim()
  if (text === '') throw formatError('join token is empty')
  const parts = text.split('-')
  if (parts[0] !== TOKEN_PREFIX) throw formatError(`join token must start with "${TOKEN_PREFIX}-"`)
  if (parts.length !== 4) throw formatError(`join token must have four parts: ${TOKEN_PREFIX}-${TOKEN_VERSION}-<CA digest>-<secret>, has ${parts.length}`)
  const [, version, digest, secret] = parts as [string, string, string, string]
  if (version !== String(TOKEN_VERSION)) throw formatError(`join token version "${version.slice(0, 8)}" is not supported (only ${TOKEN_VERSION})`)
  const digestValue = fromBase36(digest)
  if (digest.length !== DIGEST_CHARS || digestValue === undefined) {
    throw formatError(`join token CA digest must be ${DIGEST_CHARS} base-36 characters (0-9, a-z), has ${digest.length}${digestValue === undefined ? ' with others among them' : ''}`)
  }
  if (digestValue > MAX_DIGEST) throw formatError('join token CA digest is larger than a SHA-256 digest')
  const secretValue = fromBase36(secret)
  if (secret.length !== SECRET_CHARS || secretValue === undefined) {
    throw formatError(`join token secret must be ${SECRET_CHARS} base-36 characters (0-9, a-z)`)
  }
  if (secretValue > MAX_SECRET) throw formatError('join token secret is larger than 128 bits')
  return Object.freeze({ version: TOKEN_VERSION, caDigest: digestValue.toString(16).padStart(64, '0'), secret })
}

/** A token with a fresh secret for the CA whose digest is given. */
export function generateJoinToken (caDigest: string): string {
  return formatJoinToken(caDigest, randomId())
}

/** Fresh worker and manager tokens, with distinct secrets. */
export function createJoinTokens (caDigest: string): JoinTokens {
  const worker = generateJoinToken(caDigest)
  let manager = generateJoinToken(caDigest)
  // 2^-128; but a worker token that admitted managers would be a quiet disaster.
  while (secretOf(manager) === secretOf(worker)) manager = generateJoinToken(caDigest)
  return Object.freeze({ worker, manager })
}

/**
 * `tokens` with a new secret for `role`: the old token of that role stops
 * admitting nodes at once; nodes that joined with it are unaffected.
 */
export function rotateJoinToken (tokens: JoinTokens, role: NodeRole): JoinTokens {
  const caDigest = parseJoinToken(tokens[role]).caDigest
  const other = secretOf(role === 'worker' ? tokens.manager : tokens.worker)
  let next = generateJoinToken(caDigest)
  while (secretOf(next) === other || secretOf(next) === secretOf(tokens[role])) next = generateJoinToken(caDigest)
  return Object.freeze({ ...tokens, [role]: next })
}

/**
 * The role `presented` admits to the swarm whose CA digest is `caDigest`.
 * Throws CA_ERR_TOKEN_FORMAT for a malformed token, CA_ERR_TOKEN_DIGEST for
 * a token of another CA, CA_ERR_TOKEN_SECRET for a secret that is neither
 * current one. Both secrets are always compared, in constant time.
 */
export function roleForJoinToken (tokens: JoinTokens, presented: string, caDigest: string): NodeRole {
  const token = parseJoinToken(presented)
  if (token.caDigest !== caDigest) {
    throw new CaError('CA_ERR_TOKEN_DIGEST', 'join token is for another swarm: its CA digest does not match this swarm\'s CA')
  }
  const worker = secretsEqual(token.secret, secretOf(tokens.worker))
  const manager = secretsEqual(token.secret, secretOf(tokens.manager))
  if (worker) return 'worker'
  if (manager) return 'manager'
  throw new CaError('CA_ERR_TOKEN_SECRET', 'join token secret is not valid for this swarm (mistyped, or the token was rotated)')
}

/**
 * Whether two secrets are equal, in time independent of where they differ.
 * Hashing first makes the inputs equal in length, which timingSafeEqual
 * requires, without revealing the expected secret's length either.
 */
export function secretsEqual (a: string, b: string): boolean {
  const hash = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest()
  return timingSafeEqual(hash(a), hash(b))
}

function secretOf (token: string): string {
  return parseJoinToken(token).secret
}

function formatError (message: string): CaError {
  return new CaError('CA_ERR_TOKEN_FORMAT', message)
}
