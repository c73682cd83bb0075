/**
 * When a backend leaves a frontend, the nft transaction stops new connections
 * from reaching it at once; connections already tracked keep their NAT
 * binding and would go on reaching it. This module says, purely, which
 * conntrack entries to delete; programmer.ts has native-conntrack.ts delete
 * them after the transaction, so no new entry can be made in between.
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

export type LeaveReason = 'removed' | 'unhealthy'

export interface ConntrackDeletion {
  readonly reason: LeaveReason
  /** The frontend key (`10.0.1.100`, `tcp . 8080`). */
  readonly frontend: string
  /** The backend as the slot map holds it (`10.0.1.5`, `10.255.0.5 . 80`). */
  readonly backend: string
  readonly filter: FlowFilter
}

/** Entries to delete: every condition given must hold; an absent one matches anything. */
export interface FlowFilter {
  readonly protocol?: 'tcp' | 'udp'
  /** Only entries still in this TCP state (SYN_SENT: never answered). */
  readonly state?: 'SYN_SENT'
  readonly origDst?: string
  readonly origDstPort?: number
  readonly replySrc: string
  readonly replySrcPort?: number
}

/** The same deletion as `conntrack` arguments: for logs, and for an operator to run by hand. */
export function conntrackArgs (f: FlowFilter): string[] {
  return [
    '-D',
    ...(f.protocol === undefined ? [] : ['-p', f.protocol]),
    ...(f.state === undefined ? [] : ['--state', f.state]),
    ...(f.origDst === undefined ? [] : ['--orig-dst', f.origDst]),
    ...(f.origDstPort === undefined ? [] : ['--orig-port-dst', String(f.origDstPort)]),
    '--reply-src', f.replySrc,
    ...(f.replySrcPort === undefined ? [] : ['--reply-port-src', String(f.replySrcPort)])
  ]
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
      const filters = port === undefined ? vipFilters(group, ip, reason) : portFilters(group, ip, Number(port), reason)
      for (const filter of filters) out.push({ reason, frontend: group, backend, filter })
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
        out.push({ reason: 'removed', frontend: vip, backend: ip, filter: vipFilters(vip, ip, 'removed')[0]! })
      } else {
        const [protocol, ip, target] = parts as [string, string, string]
        out.push({ reason: 'removed', frontend: `${protocol} . *`, backend: `${ip} . ${target}`, filter: { protocol: protocol as 'tcp' | 'udp', replySrc: ip, replySrcPort: Number(target) } })
      }
    }
  }
  return out
}

/** One counter set per kind of frontend names each backend it ever had (`VIP . IP`, `proto . IP . target`). */
const COUNTER_SETS: ReadonlySet<string> = new Set(['vip_conns', 'port_conns'])

function vipFilters (vip: string, backend: string, reason: LeaveReason): FlowFilter[] {
  return reason === 'removed'
    ? [{ origDst: vip, replySrc: backend }]
    : [{ protocol: 'udp', origDst: vip, replySrc: backend }, { protocol: 'tcp', state: 'SYN_SENT', origDst: vip, replySrc: backend }]
}

function portFilters (frontend: string, backend: string, target: number, reason: LeaveReason): FlowFilter[] {
  const [protocol, published] = frontend.split(' . ') as ['tcp' | 'udp', string]
  const unanswered = reason === 'unhealthy' && protocol !== 'udp' ? { state: 'SYN_SENT' as const } : {}
  return [{ protocol, ...unanswered, origDstPort: Number(published), replySrc: backend, replySrcPort: target }]
}
