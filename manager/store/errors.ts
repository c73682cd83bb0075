/**
 * The store's error registry: stable codes for every reason `apply` refuses a
 * command. A refused command changes nothing; its error goes back to the
 * proposer. Programs (and tests) match on `code`; people read the one-line
 * message. Add codes here, never reuse one for a different meaning.
 */
export type StoreErrorCode =
  | 'STORE_ERR_INVALID_COMMAND' // fails the command schema (or `now` is not a time)
  | 'STORE_ERR_NOT_INITIALIZED' // any command but cluster.init before cluster.init
  | 'STORE_ERR_ALREADY_INITIALIZED' // a second cluster.init
  | 'STORE_ERR_NOT_FOUND' // unknown node, network, service or task
  | 'STORE_ERR_AMBIGUOUS' // a name that matches more than one object
  | 'STORE_ERR_EXISTS' // an id that is already taken
  | 'STORE_ERR_NAME_IN_USE' // a network or service name that is already taken
  | 'STORE_ERR_INVALID_ADDRESS' // a subnet, gateway or pool that is malformed or does not fit
  | 'STORE_ERR_SUBNET_OVERLAP' // an explicit subnet that overlaps another network's
  | 'STORE_ERR_POOL_EXHAUSTED' // no subnet, VNI or address left to hand out
  | 'STORE_ERR_NETWORK_IN_USE' // removing a network a service or task still uses
  | 'STORE_ERR_PORT_IN_USE' // publishing a port that is already published
  | 'STORE_ERR_INVALID_CONSTRAINT' // a placement constraint that does not parse
  | 'STORE_ERR_INVALID_SPEC' // a service spec or change that is not allowed (mode change, dnsrr with ingress ports, …)
  | 'STORE_ERR_VERSION_CONFLICT' // an update made against an older version of the object
  | 'STORE_ERR_NODE_NOT_DOWN' // removing a node that is not down, without force
  | 'STORE_ERR_NODE_IS_MANAGER' // removing a manager (demote it first)
  | 'STORE_ERR_LAST_MANAGER' // demoting the last manager
  | 'STORE_ERR_ADDRESS_IN_USE' // a node joining with another node's underlay address
  | 'STORE_ERR_SLOT_TAKEN' // a second running task for one slot (or one node of a global service)
  | 'STORE_ERR_NOT_SCHEDULABLE' // assigning a task to a node that cannot take it now
  | 'STORE_ERR_INVALID_TRANSITION' // a task or update state change that goes backwards or skips
  | 'STORE_ERR_TASK_ACTIVE' // removing a task that a node may still run
  | 'STORE_ERR_NO_PREVIOUS_SPEC' // rolling back a service that was never updated
  | 'STORE_ERR_INTERNAL' // a bug: apply caught an exception it did not expect

export interface StoreErrorInfo {
  readonly code: StoreErrorCode
  readonly message: string
}

/**
 * Thrown inside apply's handlers and caught at apply's boundary, which then
 * discards the draft: a handler may fail halfway through without leaving a trace.
 */
export class StoreError extends Error {
  readonly code: StoreErrorCode

  constructor (code: StoreErrorCode, message: string) {
    super(message)
    this.name = 'StoreError'
    this.code = code
  }
}

export function fail (code: StoreErrorCode, message: string): never {
  throw new StoreError(code, message)
}
