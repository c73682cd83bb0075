/**
 * The `weft` CLI's own error registry (input it refuses before asking any
 * daemon). Errors from netd and the manager keep their own codes; all are
 * printed as one line and the code, with exit status 1.
 */
export type CliErrorCode =
  /** A flag or argument that does not parse (a bad duration, port, label, …). */
  | 'WEFT_ERR_USAGE'
  /** A name or id prefix that matches nothing, or more than one object. */
  | 'WEFT_ERR_NOT_FOUND'

export class CliError extends Error {
  readonly code: CliErrorCode

  constructor (code: CliErrorCode, message: string) {
    super(message)
    this.name = 'CliError'
    this.code = code
  }
}

export function usage (message: string): CliError {
  return new CliError('WEFT_ERR_USAGE', message)
}
