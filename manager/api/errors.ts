/**
 * The manager API transport's error registry: one class, stable codes.
 * Programs match on `code`; people read the one-line message.
 *
 * An error a handler throws crosses the wire as `{code, message}` when it
 * carries a registry code of any weft package (`CA_ERR_TOKEN_SECRET`,
 * `STORE_ERR_…`), and the caller receives an ApiError with that same code:
 * `code` is therefore typed as this registry's codes or any other string.
 */
export type ApiErrorCode =
  /** A frame longer than the connection's limit (the connection is closed). */
  | 'API_ERR_FRAME_TOO_LARGE'
  /** Bytes that are not a frame of JSON in the protocol's shape (the connection is closed). */
  | 'API_ERR_PROTOCOL'
  /** No client certificate where one is needed, or one this swarm's CA did not issue. */
  | 'API_ERR_UNAUTHENTICATED'
  /** A valid node certificate whose role may not call the method. */
  | 'API_ERR_FORBIDDEN'
  | 'API_ERR_UNKNOWN_METHOD'
  | 'API_ERR_INVALID_PARAMS'
  /** Too many calls and streams in flight on one connection. */
  | 'API_ERR_BUSY'
  | 'API_ERR_TIMEOUT'
  /** The connection closed (or was closed) before the answer came. */
  | 'API_ERR_CLOSED'
  /** The manager cannot be reached (refused, unreachable, TLS failure). */
  | 'API_ERR_UNREACHABLE'
  /** The manager's certificate is not a manager certificate of the expected swarm. */
  | 'API_ERR_MANAGER_UNTRUSTED'
  /** A handler failed without a registry code; details are in the manager's log. */
  | 'API_ERR_INTERNAL'
  | 'API_ERR_CONFIG'

export class ApiError extends Error {
  readonly code: ApiErrorCode | (string & {})
  readonly details: readonly string[]

  constructor (code: ApiErrorCode | (string & {}), message: string, details: readonly string[] = []) {
    super(message)
    this.name = 'ApiError'
    this.code = code
    this.details = details
  }
}

/** A code of some weft package's registry (`NETD_ERR_…`, `CA_ERR_…`): safe to send as is. */
export const REGISTRY_CODE = /^[A-Z][A-Z0-9]*_ERR_[A-Z0-9_]+$/
