/**
 * The manager module's error registry (manager.ts, control.ts): stable codes
 * for what the manager refuses outside the store's own rules. Programs match
 * on `code`; people read the one-line message. The store's refusals keep
 * their STORE_ERR_* codes, the transport's their API_ERR_* codes.
 */
export type ManagerErrorCode =
  /** A control request that is not a command users may send, or is malformed. */
  | 'MANAGER_ERR_INVALID_REQUEST'
  /** Something weft does not do yet (a second manager). */
  | 'MANAGER_ERR_UNSUPPORTED'
  /** A node certificate whose node was removed from the swarm, or never admitted. */
  | 'MANAGER_ERR_NODE_REMOVED'
  /** The manager is not the Raft leader (it cannot accept changes). */
  | 'MANAGER_ERR_NOT_LEADER'
  /** The manager's files are missing or unusable. */
  | 'MANAGER_ERR_FILES'
  /** The manager was closed. */
  | 'MANAGER_ERR_CLOSED'

export class ManagerError extends Error {
  readonly code: ManagerErrorCode

  constructor (code: ManagerErrorCode, message: string) {
    super(message)
    this.name = 'ManagerError'
    this.code = code
  }
}
