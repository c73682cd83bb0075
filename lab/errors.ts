/**
 * The lab's error registry: one Error subclass with a stable `code` per failure kind, so callers
 * and tests branch on the code and people read the message.
 */

export const LabErrorCode = {
  name: 'LAB_ERR_NAME',
  nodes: 'LAB_ERR_NODES',
  host: 'LAB_ERR_HOST',
  exists: 'LAB_ERR_EXISTS',
  notFound: 'LAB_ERR_NOT_FOUND',
  notRoot: 'LAB_ERR_NOT_ROOT',
  command: 'LAB_ERR_COMMAND',
  netdStart: 'LAB_ERR_NETD_START',
  netdStop: 'LAB_ERR_NETD_STOP',
  dnsStart: 'LAB_ERR_DNS_START',
  state: 'LAB_ERR_STATE',
  teardown: 'LAB_ERR_TEARDOWN',
} as const

export type LabErrorCode = (typeof LabErrorCode)[keyof typeof LabErrorCode]

export class LabError extends Error {
  readonly code: LabErrorCode

  constructor(code: LabErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'LabError'
    this.code = code
  }
}
