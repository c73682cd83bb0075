/**
 * lb's error registry: one class, stable codes. Programs (and tests) match on
 * `code`; people read the one-line message. Add codes here, never reuse one
 * for a different meaning.
 */
export type LbErrorCode =
  | 'LB_ERR_NFT' // nft rejected a transaction or a listing failed
  | 'LB_ERR_NFT_JSON' // `nft -j list table` output that is not the JSON we know
  | 'LB_ERR_NAMESPACE' // a task namespace in the spec does not exist (yet)
  | 'LB_ERR_CONNTRACK' // a conntrack deletion failed (other than "nothing matched")
  | 'LB_ERR_SYSCTL' // a sysctl could not be read or written
  | 'LB_ERR_DELTA' // a delta does not apply to the model it is applied to (applyDelta, the fake kernel)

export class LbError extends Error {
  readonly code: LbErrorCode
  readonly details: readonly string[]

  constructor (code: LbErrorCode, message: string, details: readonly string[] = []) {
    super(message)
    this.name = 'LbError'
    this.code = code
    this.details = details
  }
}
