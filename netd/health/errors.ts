/**
 * The health monitor's error codes, in netd's registry style (NETD_ERR_*, one
 * line for a person, the code for a program). Kept here, like the runtime's,
 * because netd/errors.ts is owned elsewhere for now: the codes are meant to
 * move into NetdErrorCode unchanged.
 *
 * Probes never throw: a probe that cannot run is a result with exit code -1.
 * These are for the caller's mistakes only.
 */
export type HealthErrorCode =
  /** A health check or probe target does not validate. */
  | 'NETD_ERR_HEALTH_CHECK'
  /** The monitor was closed. */
  | 'NETD_ERR_HEALTH_CLOSED'

export class HealthError extends Error {
  readonly code: HealthErrorCode

  constructor (code: HealthErrorCode, message: string) {
    super(message)
    this.name = 'HealthError'
    this.code = code
  }
}
