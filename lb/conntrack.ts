/**
 * When a backend leaves a frontend, the nft transaction stops new connections
 * from reaching it at once; connections already tracked keep their NAT
 * binding and would go on reaching it. This module says which conntrack
 * entries to delete, and deletes them (after the transaction, so no new entry
 * can be made in between).
 *
 * - Task removed (or the frontend gone): every protocol. The task is gone;
 *   its connections can only hang until they time out (432000 s for TCP).
 * - Task unhealthy but still running (or draining, or on a Down node): UDP,
 *   and TCP connections that never got an answer (SYN_SENT). A UDP
 *   "connection" is just a conntrack entry, so without the deletion a client's
 *   datagrams would keep flowing to the unhealthy task for as long as it keeps
 *   sending. An unanswered SYN's entry is worse than useless: it lives 120 s,
 *   and a client that reuses its source port within that time is sent to the
 *   same (dead) backend by it. Established TCP is left alone: an in-flight
 *   request or transfer may still complete (the task may be unhealthy only for
 *   new work, or draining), and a client that wants out closes and reconnects
 *   to a healthy task. kube-proxy draws the same line.
 * - A backend that was already out of rotation (unhealthy) and is now removed
 *   leaves no slot, only its counters: their removal counts as its departure.
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
 * its connections), and those whose counters it deletes (a backend that had
 * left rotation before). Costs O(delta), not O(frontends). `from` is the model
 * the delta applies to (needed when the delta deletes the whole table);
 * `frontends` is the new spec of the namespace: a backend still listed there,
 * unhealthy, has left for health; any other has been removed.
 */
export function conntrackDeletions (from: NftTable | null, delta: Delta, frontends: readonly Frontend[]): ConntrackDeletion[] {
  if (from === null || delta.length === 0) return []
  const removed = new Map<string, Set<string>>()
  const added = new Map<string, Set<string>>()
  const note = (map: Map<string, Set<string>>, e: NftElement): void => {
    const counter = COUNTER_SETS.has(e.set)
    if ((!SLOT_SETS.has(e.set) || e.value === null) && !counter) return
    const group = counter ? e.set : groupOf(e.set, e.key)
    let backends = map.get(group)
    if (backends === undefined) map.set(group, backends = new Set())
    backends.add(counter ? e.key : e.value!)
  }
  for (const op of delta) {
    if (op.op === 'delete table') for (const elements of from.groups.values()) for (const e of elements) note(removed, e)
    else if (op.op === 'delete element') note(removed, op.element)
    else if (op.op === 'add element') note(added, op.element)
  }
  let byKey: Map<string, Frontend> | undefined
  const out: ConntrackDeletion[] = []
  /** Backends whose every entry goes already (`VIP . IP`, `proto . IP . target`). */
  const covered = new Set<string>()
  for (const [group, backends] of removed) {
    if (COUNTER_SETS.has(group)) continue
    for (const backend of backends) {
      if (added.get(group)?.has(backend) === true) continue
      byKey ??= new Map(frontends.map((f) => [f.key, f]))
      const frontend = byKey.get(group)
      const [ip, port] = backend.split(' . ') as [string, string | undefined]
      const listed = frontend?.backends.find((b) => b.ip === ip && (port === undefined || (frontend.kind !== 'vip' && String(frontend.target) === port)))
      const reason: LeaveReason = listed !== undefined && !listed.healthy ? 'unhealthy' : 'removed'
      const argsList = port === undefined ? vipArgs(group, ip, reason) : portArgs(group, ip, port, reason)
      for (const args of argsList) out.push({ reason, frontend: group, backend, args })
      if (reason === 'removed') covered.add(port === undefined ? `${group} . ${ip}` : `${group.split(' . ')[0]!} . ${ip} . ${port}`)
    }
  }
  // Out of rotation before, removed now: only its counters go.
  for (const set of COUNTER_SETS) {
    for (const key of removed.get(set) ?? []) {
      if (added.get(set)?.has(key) === true || covered.has(key)) continue
      const parts = key.split(' . ')
      if (set === 'vip_conns') {
        const [vip, ip] = parts as [string, string]
        out.push({ reason: 'removed', frontend: vip, backend: ip, args: vipArgs(vip, ip, 'removed')[0]! })
      } else {
        const [protocol, ip, target] = parts as [string, string, string]
        out.push({ reason: 'removed', frontend: `${protocol} . *`, backend: `${ip} . ${target}`, args: ['-D', '-p', protocol, '--reply-src', ip, '--reply-port-src', target] })
      }
    }
  }
  return out
}

/** One counter set per kind of frontend names each backend it ever had (`VIP . IP`, `proto . IP . target`). */
const COUNTER_SETS: ReadonlySet<string> = new Set(['vip_conns', 'port_conns'])

function vipArgs (vip: string, backend: string, reason: LeaveReason): string[][] {
  return reason === 'removed'
    ? [['-D', '--orig-dst', vip, '--reply-src', backend]]
    : [['-D', '-p', 'udp', '--orig-dst', vip, '--reply-src', backend], ['-D', '-p', 'tcp', '--state', 'SYN_SENT', '--orig-dst', vip, '--reply-src', backend]]
}

function portArgs (frontend: string, backend: string, target: string, reason: LeaveReason): string[][] {
  const [protocol, published] = frontend.split(' . ') as [string, string]
  const unanswered = reason === 'unhealthy' && protocol !== 'udp' ? ['--state', 'SYN_SENT'] : []
  return [['-D', '-p', protocol, ...unanswered, '--orig-port-dst', published, '--reply-src', backend, '--reply-port-src', target]]
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
