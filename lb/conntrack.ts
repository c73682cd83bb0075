/**
 * When a backend leaves a frontend, the nft transaction stops new connections
 * from reaching it at once; connections already tracked keep their NAT
 * binding and would go on reaching it. This module says which conntrack
 * entries to delete, and deletes them (after the transaction, so no new entry
 * can be made in between).
 *
 * - Task removed (or the frontend gone): every protocol. The task is gone;
 *   its connections can only hang until they time out (432000 s for TCP).
 * - Task unhealthy but still running: UDP only. A UDP "connection" is just a
 *   conntrack entry, so without the deletion a client's datagrams would keep
 *   flowing to the unhealthy task for as long as it keeps sending. TCP is left
 *   alone: an in-flight request or transfer may still complete (the task may be
 *   unhealthy only for new work), and a client that wants out closes and
 *   reconnects to a healthy task. kube-proxy draws the same line.
 *
 * Connections to the backends that stay are never touched: the filters name
 * the frontend and the leaving backend.
 */
import type { NftElement, NftTable } from './ruleset.ts'
import type { Delta } from './delta.ts'
import { groupOf } from './layout.ts'
import type { Frontend } from './spec.ts'
import { inNamespace, run } from './exec.ts'
import { LbError } from './errors.ts'

export type LeaveReason = 'removed' | 'unhealthy'

export interface ConntrackDeletion {
  readonly reason: LeaveReason
  /** The frontend key (`10.0.1.100`, `tcp . 8080`). */
  readonly frontend: string
  /** The backend as the slot map holds it (`10.0.1.5`, `10.255.0.5 . 80`). */
  readonly backend: string
  /** Arguments of `conntrack` (after the program name). */
  readonly args: readonly string[]
}

const SLOT_SETS: ReadonlySet<string> = new Set(['vip_slots', 'tcp_slots', 'udp_slots'])

/**
 * The deletions a transaction calls for: the backends whose slots it deletes
 * and does not give back under the same frontend (a renumbered backend keeps
 * its connections). Costs O(delta), not O(frontends). `from` is the model the
 * delta applies to (needed when the delta deletes the whole table);
 * `frontends` is the new spec of the namespace: a backend still listed there,
 * unhealthy, has left for health; any other has been removed.
 */
export function conntrackDeletions (from: NftTable | null, delta: Delta, frontends: readonly Frontend[]): ConntrackDeletion[] {
  if (from === null || delta.length === 0) return []
  const removed = new Map<string, Set<string>>()
  const added = new Map<string, Set<string>>()
  const note = (map: Map<string, Set<string>>, e: NftElement): void => {
    if (!SLOT_SETS.has(e.set) || e.value === null) return
    const group = groupOf(e.set, e.key)
    let backends = map.get(group)
    if (backends === undefined) map.set(group, backends = new Set())
    backends.add(e.value)
  }
  for (const op of delta) {
    if (op.op === 'delete table') for (const elements of from.groups.values()) for (const e of elements) note(removed, e)
    else if (op.op === 'delete element') note(removed, op.element)
    else if (op.op === 'add element') note(added, op.element)
  }
  let byKey: Map<string, Frontend> | undefined
  const out: ConntrackDeletion[] = []
  for (const [group, backends] of removed) {
    for (const backend of backends) {
      if (added.get(group)?.has(backend) === true) continue
      byKey ??= new Map(frontends.map((f) => [f.key, f]))
      const frontend = byKey.get(group)
      const [ip, port] = backend.split(' . ') as [string, string | undefined]
      const listed = frontend?.backends.find((b) => b.ip === ip && (port === undefined || (frontend.kind !== 'vip' && String(frontend.target) === port)))
      const reason: LeaveReason = listed !== undefined && !listed.healthy ? 'unhealthy' : 'removed'
      const args = port === undefined ? vipArgs(group, ip, reason) : portArgs(group, ip, port, reason)
      if (args !== null) out.push({ reason, frontend: group, backend, args })
    }
  }
  return out
}

function vipArgs (vip: string, backend: string, reason: LeaveReason): string[] {
  return reason === 'removed'
    ? ['-D', '--orig-dst', vip, '--reply-src', backend]
    : ['-D', '-p', 'udp', '--orig-dst', vip, '--reply-src', backend]
}

function portArgs (frontend: string, backend: string, target: string, reason: LeaveReason): string[] | null {
  const [protocol, published] = frontend.split(' . ') as [string, string]
  if (reason === 'unhealthy' && protocol !== 'udp') return null
  return ['-D', '-p', protocol, '--orig-port-dst', published, '--reply-src', backend, '--reply-port-src', target]
}

/**
 * Runs one deletion; returns how many entries went. conntrack exits 1 with
 * "0 flow entries have been deleted" when nothing matched: that is success.
 */
export async function conntrackDelete (netns: string | null, args: readonly string[]): Promise<number> {
  const result = await run(inNamespace(netns, ['conntrack', ...args]))
  const deleted = /(\d+) flow entries have been deleted/.exec(result.stderr)
  if (deleted !== null) return Number(deleted[1])
  throw new LbError('LB_ERR_CONNTRACK', `conntrack ${args.join(' ')} in ${netns ?? 'host namespace'}: ${result.stderr.trim() || `exit ${result.code}`}`)
}
