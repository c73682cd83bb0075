/**
 * Error codes of netd's swarm module (netd/cluster). They follow netd's
 * registry (NETD_ERR_*, one line for a person, the code for a program) and
 * live here, as the task runtime's do, while netd/errors.ts is owned
 * elsewhere: the codes are meant to move into NetdErrorCode unchanged.
 */
export type SwarmErrorCode =
  /** `swarm init` or `join` on a node that is in a swarm already. */
  | 'NETD_ERR_SWARM_ACTIVE'
  /** A swarm command on a node that is in no swarm. */
  | 'NETD_ERR_SWARM_INACTIVE'
  /** A cluster command on a worker: only managers hold the cluster state. */
  | 'NETD_ERR_SWARM_NOT_MANAGER'
  /** `swarm leave` on a manager without --force. */
  | 'NETD_ERR_SWARM_LEAVE_MANAGER'
  /** A request to the swarm endpoints that is malformed. */
  | 'NETD_ERR_SWARM_REQUEST'
  /** The node's swarm files are unusable. */
  | 'NETD_ERR_SWARM_FILES'
  /** Joining did not complete (the manager did not record the node in time). */
  | 'NETD_ERR_SWARM_JOIN'

export class SwarmError extends Error {
  readonly code: SwarmErrorCode

  constructor (code: SwarmErrorCode, message: string) {
    super(message)
    this.name = 'NetdError'
    this.code = code
  }
}

/** Swarm's words for a cluster command sent to a worker. */
export const NOT_A_MANAGER = 'This node is not a swarm manager. Worker nodes can\'t be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.'

export const NOT_IN_SWARM = 'This node is not a swarm manager. Use "weft swarm init" or "weft swarm join" to connect this node to swarm and try again.'

export const ALREADY_IN_SWARM = 'This node is already part of a swarm. Use "weft swarm leave" to leave this swarm and join another one.'
