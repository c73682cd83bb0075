/**
 * What a probe needs to know of a task: where its network is (for tcp and
 * http checks, made from the task's network namespace only, so a check sees
 * what a peer on the overlay sees and nothing of the host) and how to enter
 * it whole (for cmd checks, which run like `netd exec`).
 */
import { isIP } from 'node:net'
import type { ExecTarget } from '../runtime/exec.ts'
import { NetdError } from '../errors.ts'

export interface ProbeTarget {
  readonly task: string
  /** The name of the task's network namespace, as `ip netns` knows it (/run/netns/NAME). */
  readonly netns: string
  /** The task's address that tcp and http checks connect to; null for a task without one (those checks then fail with -1). */
  readonly ip: string | null
  /**
   * Where a cmd check runs. Asked for before every cmd probe, not once: the target names the
   * task's PID 1 by pid and start time, and is refused once that process is gone.
   */
  readonly execTarget: () => Promise<ExecTarget>
}

/** Where named network namespaces live (iproute2's NETNS_RUN_DIR). */
export const NETNS_RUN_DIR = '/run/netns'

const NETNS_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$/

/** The namespace's path; the name is checked so it can never leave NETNS_RUN_DIR. */
export function netnsPath (name: string): string {
  if (!NETNS_NAME.test(name)) throw new NetdError('NETD_ERR_HEALTH_CHECK', `invalid network namespace name "${name}"`)
  return `${NETNS_RUN_DIR}/${name}`
}

/** Throws NETD_ERR_HEALTH_CHECK unless the target's namespace name and address can be used as they are. */
export function assertProbeTarget (target: ProbeTarget): void {
  netnsPath(target.netns)
  if (target.ip !== null && isIP(target.ip) === 0) throw new NetdError('NETD_ERR_HEALTH_CHECK', `invalid task address "${target.ip}"`)
}

/** The one method of TaskRuntime a probe target needs. */
export interface ExecTargetSource {
  execTarget (task: string): Promise<ExecTarget>
}

/**
 * The probe target of a task the runtime runs: `netns` is its spec's netns, `ip` its address on
 * the network whose checks are made (the first, as Swarm's health checks have no network of their own).
 */
export function probeTargetOf (runtime: ExecTargetSource, task: { readonly task: string, readonly netns: string, readonly ip: string | null }): ProbeTarget {
  const target: ProbeTarget = { task: task.task, netns: task.netns, ip: task.ip, execTarget: () => runtime.execTarget(task.task) }
  assertProbeTarget(target)
  return Object.freeze(target)
}
