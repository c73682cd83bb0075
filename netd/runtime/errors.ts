/**
 * The task runtime's error codes. They follow netd's registry (NETD_ERR_*,
 * one line for a person, the code for a program) and are kept here only
 * because netd/errors.ts is owned elsewhere for now: the codes are meant to
 * move into NetdErrorCode unchanged.
 *
 * A start that fails one of these checks never creates a process: the agent
 * reports such a task as `rejected`.
 */
export type TaskRuntimeErrorCode =
  /** The task process spec (or an image's config.json) does not validate. */
  | 'NETD_ERR_TASK_SPEC'
  /** The image reference names a directory that is not a usable image. */
  | 'NETD_ERR_TASK_IMAGE'
  /** No command given and the image has no default (the host filesystem never has one). */
  | 'NETD_ERR_TASK_NO_COMMAND'
  /** The command is not an executable file in the task's root. */
  | 'NETD_ERR_TASK_COMMAND_NOT_FOUND'
  /** The user or group is not known in the image's /etc/passwd or /etc/group. */
  | 'NETD_ERR_TASK_USER'
  /** The working directory is not a directory in the task's root. */
  | 'NETD_ERR_TASK_WORKDIR'
  /** The task's network namespace does not exist. */
  | 'NETD_ERR_TASK_NETNS'
  /** A task with this id already has a state directory (ids are never reused; remove it first). */
  | 'NETD_ERR_TASK_EXISTS'
  /** No such task, or nothing matches the task query. */
  | 'NETD_ERR_TASK_NOT_FOUND'
  /** A task query matches more than one task. */
  | 'NETD_ERR_TASK_AMBIGUOUS'
  /** The task is running and the operation needs it stopped (or the reverse). */
  | 'NETD_ERR_TASK_STATE'
  /** The process chain could not be started, or did not come up. */
  | 'NETD_ERR_TASK_START'
  /** A tool the runtime needs (util-linux, iproute2) is missing or too old. */
  | 'NETD_ERR_TASK_TOOLS'
  /** The runtime was closed. */
  | 'NETD_ERR_TASK_CLOSED'

export class TaskRuntimeError extends Error {
  readonly code: TaskRuntimeErrorCode
  readonly details: readonly string[]

  constructor (code: TaskRuntimeErrorCode, message: string, details: readonly string[] = []) {
    super(message)
    this.name = 'NetdError'
    this.code = code
    this.details = details
  }
}
