/**
 * Conntrack deletions through lb's native addon (native/conntrack.c, built by
 * node-gyp when the dependencies are installed): all of a namespace's
 * deletions in one walk of the kernel's table, over netlink, with no process.
 * The conntrack CLI walks the whole table once per command (~10 ms here even
 * when it is empty: the table is shared by every namespace) and is a process.
 */
import { createRequire } from 'node:module'
import type { FlowFilter } from './conntrack.ts'
import { LbError } from './errors.ts'
import { NETNS_DIR } from './exec.ts'

interface NativeFilter {
  /** IP protocol number; 0: any. */
  protocol: number
  /** '' : any. */
  origDst: string
  /** 0: any. */
  origDstPort: number
  replySrc: string
  /** 0: any. */
  replySrcPort: number
  /** The kernel's TCP conntrack state number; -1: any. */
  tcpState: number
}

interface Addon { deleteFlows (netnsPath: string | null, filters: readonly NativeFilter[]): Promise<number[]> }

const addon = createRequire(import.meta.url)('../build/Release/conntrack.node') as Addon

const PROTOCOL_NUMBERS = { tcp: 6, udp: 17 } as const
/** enum tcp_conntrack in the kernel's uapi (nf_conntrack_tcp.h). */
const TCP_SYN_SENT = 1

/** Deletes the entries matching any of `filters` in `netns` (null: this process's own); how many each deleted. */
export async function deleteFlows (netns: string | null, filters: readonly FlowFilter[]): Promise<number[]> {
  if (filters.length === 0) return []
  try {
    return await addon.deleteFlows(netns === null ? null : `${NETNS_DIR}/${netns}`, filters.map((f) => ({
      protocol: f.protocol === undefined ? 0 : PROTOCOL_NUMBERS[f.protocol],
      origDst: f.origDst ?? '',
      origDstPort: f.origDstPort ?? 0,
      replySrc: f.replySrc,
      replySrcPort: f.replySrcPort ?? 0,
      tcpState: f.state === 'SYN_SENT' ? TCP_SYN_SENT : -1
    })))
  } catch (error) {
    throw new LbError('LB_ERR_CONNTRACK', `conntrack deletions in ${netns ?? 'host namespace'}: ${(error as Error).message}`)
  }
}
