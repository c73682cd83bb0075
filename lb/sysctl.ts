/**
 * The sysctls lb needs, and reading and setting sysctls in a namespace (netd's
 * reconcile uses the same for br_netfilter's switches, netd/kernel-state.ts).
 *
 * - Task namespaces: `net.ipv4.tcp_timestamps=2` (timestamps off, SACK on). With
 *   timestamps on, one backend reached through two VIPs (or a VIP and its own
 *   address) sees two connections from one client address whose timestamp
 *   clocks disagree, and PAWS drops the second one's SYNs: 1 s retries and a
 *   6x throughput drop, measured (DESIGN.md).
 * - Optionally `net.netfilter.nf_conntrack_tcp_timeout_established` per task
 *   namespace (it is per network namespace on this kernel: checked by setting it
 *   in a fresh namespace and reading the root's back unchanged). By default the
 *   kernel's 432000 s (5 days) stays, not IPVS's 900 s: an idle established
 *   connection, say a database pool, keeps its backend for as long as the kernel
 *   tracks it at all; dead backends are cleaned up by conntrack.ts, not by
 *   timeouts. Tests set it low to watch expiry.
 * - Host namespace: `net.ipv4.ip_forward=1` when any port is published (the
 *   mesh forwards from the node's interfaces into the ingress leg). lb never
 *   turns it back off: other things on the host may rely on it.
 */
import { inNamespace, run } from './exec.ts'
import { LbError } from './errors.ts'

export const TCP_TIMESTAMPS = 'net.ipv4.tcp_timestamps'
export const TCP_ESTABLISHED_TIMEOUT = 'net.netfilter.nf_conntrack_tcp_timeout_established'
export const IP_FORWARD = 'net.ipv4.ip_forward'

export type Sysctls = Readonly<Record<string, string>>

export function taskSysctls (tcpEstablishedTimeout: number | null): Sysctls {
  return tcpEstablishedTimeout === null
    ? { [TCP_TIMESTAMPS]: '2' }
    : { [TCP_TIMESTAMPS]: '2', [TCP_ESTABLISHED_TIMEOUT]: String(tcpEstablishedTimeout) }
}

export const HOST_SYSCTLS: Sysctls = { [IP_FORWARD]: '1' }

/** `sysctl` output (without -n): `name = value` per line. */
export function parseSysctls (stdout: string): Map<string, string> {
  const values = new Map<string, string>()
  for (const line of stdout.split('\n')) {
    const equals = line.indexOf(' = ')
    if (equals > 0) values.set(line.slice(0, equals).trim(), line.slice(equals + 3).trim())
  }
  return values
}

export interface WriteOptions {
  /** Skip names this kernel lacks (their module not loaded) instead of failing: `sysctl -e`. */
  readonly skipMissing?: boolean
}

export async function writeSysctls (netns: string | null, values: Sysctls, options: WriteOptions = {}): Promise<void> {
  const settings = Object.entries(values).map(([k, v]) => `${k}=${v}`)
  if (settings.length === 0) return
  const result = await run(inNamespace(netns, ['sysctl', ...(options.skipMissing === true ? ['-e'] : []), '-q', '-w', ...settings]))
  if (result.code !== 0) throw new LbError('LB_ERR_SYSCTL', `sysctl -w in ${netns ?? 'host namespace'}: ${result.stderr.trim() || `exit ${result.code}`}`)
}

/** The values of those of `names` the namespace's kernel has (a name it lacks is absent). */
export async function readSysctls (netns: string | null, names: readonly string[]): Promise<Record<string, string>> {
  if (names.length === 0) return {}
  const result = await run(inNamespace(netns, ['sysctl', '-e', ...names]))
  if (result.code !== 0) throw new LbError('LB_ERR_SYSCTL', `sysctl in ${netns ?? 'host namespace'}: ${result.stderr.trim() || `exit ${result.code}`}`)
  return Object.fromEntries(parseSysctls(result.stdout))
}
