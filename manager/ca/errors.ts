/**
 * The cluster CA's error registry: one class, stable codes. Programs match on
 * `code`; people read the one-line message. These codes cross the wire: a
 * join refused by a manager reaches the joining node with the same code.
 */
export type CaErrorCode =
  /** The token is not `SWMTKN-1-<50 base-36 digest>-<25 base-36 secret>`. */
  | 'CA_ERR_TOKEN_FORMAT'
  /** The token's CA digest is not this swarm's (a token for another swarm, or tampered). */
  | 'CA_ERR_TOKEN_DIGEST'
  /** The token's secret is neither the worker's nor the manager's current secret. */
  | 'CA_ERR_TOKEN_SECRET'
  /** A certificate signing request that cannot be parsed, is not self-signed, or has a key we do not issue for. */
  | 'CA_ERR_CSR'
  /** A certificate that is not a valid node certificate of this swarm. */
  | 'CA_ERR_CERT'
  /** A key or certificate on disk that is missing, unreadable or does not match. */
  | 'CA_ERR_FILES'
  /** A caller's argument outside what the CA accepts (node id, validity, …). */
  | 'CA_ERR_INVALID'

export class CaError extends Error {
  readonly code: CaErrorCode
  readonly details: readonly string[]

  constructor (code: CaErrorCode, message: string, details: readonly string[] = []) {
    super(message)
    this.name = 'CaError'
    this.code = code
    this.details = details
  }
}
