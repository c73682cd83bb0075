/**
 * dnsd's error registry: one class, stable codes. Programs (and tests) match
 * on `code`; people read the one-line message. Add codes here, never reuse one
 * for a different meaning.
 */
export type DnsdErrorCode =
  | 'DNSD_ERR_CONFIG' // options that fail validation
  | 'DNSD_ERR_BAD_QUERY' // a query the forwarder cannot even read the question of
  | 'DNSD_ERR_RESOLV_CONF' // a resolv.conf that yields nothing usable
  | 'DNSD_ERR_DOCUMENT' // `dnsd serve --document`: unreadable, not JSON, or no such local task
  | 'DNSD_ERR_LISTEN' // `dnsd serve --listen`: the address cannot be bound

export class DnsdError extends Error {
  readonly code: DnsdErrorCode
  readonly details: readonly string[]

  constructor (code: DnsdErrorCode, message: string, details: readonly string[] = []) {
    super(message)
    this.name = 'DnsdError'
    this.code = code
    this.details = details
  }
}
