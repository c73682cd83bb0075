/**
 * netd's error registry: one class, stable codes. Programs match on `code`;
 * people read the one-line message.
 */
export type NetdErrorCode =
  | 'NETD_ERR_INVALID_DOCUMENT'
  | 'NETD_ERR_KERNEL'
  | 'NETD_ERR_UNDERLAY'
  | 'NETD_ERR_CONFIG'
  | 'NETD_ERR_UNREACHABLE'
  | 'NETD_ERR_API'
  | 'NETD_ERR_USAGE'
  /** A health check or probe target does not validate (probes never throw: one that cannot run is a result). */
  | 'NETD_ERR_HEALTH_CHECK'
  /** The health monitor was closed. */
  | 'NETD_ERR_HEALTH_CLOSED'

export class NetdError extends Error {
  readonly code: NetdErrorCode
  readonly details: readonly string[]

  constructor (code: NetdErrorCode, message: string, details: readonly string[] = []) {
    super(message)
    this.name = 'NetdError'
    this.code = code
    this.details = details
  }
}
