/**
 * `netd lb [SERVICE]`: every frontend of every namespace with its scheduler,
 * its backends with health and their counters, like `ipvsadm -Ln --stats`.
 * Pure: the spec says what should be there and how healthy it is, the nft
 * counters (nft-json.ts) say how much went through.
 *
 * Counters live on set elements (layout.ts): connections are counted on a
 * connection's first packet in the filter chains (`ct state new`; a
 * retransmitted SYN counts again), packets and bytes on every packet in each
 * direction. A backend's counters start when it is first listed and end when it
 * is removed; health changes keep them.
 */
import type { ElementCounter } from './nft-json.ts'
import type { Frontend, Scheduler } from './spec.ts'

export interface BackendStats {
  /** `10.0.1.5` for a VIP (the port is kept), `10.255.0.5:80` for a published port. */
  readonly address: string
  readonly task: string | null
  readonly healthy: boolean
  readonly local: boolean
  readonly connections: number
  /** Caller → backend (ipvsadm InPkts/InBytes). */
  readonly packetsIn: number
  readonly bytesIn: number
  /** Backend → caller (ipvsadm OutPkts/OutBytes). */
  readonly packetsOut: number
  readonly bytesOut: number
}

export interface FrontendStats {
  /** null: the host namespace. */
  readonly netns: string | null
  readonly kind: Frontend['kind']
  /** `10.0.1.100` (every port, TCP and UDP) or `tcp 8080`. */
  readonly frontend: string
  readonly service: string
  readonly serviceName: string
  readonly network: string
  readonly scheduler: Scheduler
  readonly backends: readonly BackendStats[]
}

type Counters = ReadonlyMap<string, ReadonlyMap<string, ElementCounter>>

const ZERO: ElementCounter = { packets: 0, bytes: 0 }

export function frontendStats (netns: string | null, frontends: readonly Frontend[], counters: Counters): FrontendStats[] {
  return frontends.map((f) => {
    const prefix = f.kind === 'vip' ? 'vip' : 'port'
    const counter = (set: string, key: string): ElementCounter => counters.get(`${prefix}_${set}`)?.get(key) ?? ZERO
    const backends = f.backends.map((b): BackendStats => {
      const key = f.kind === 'vip' ? `${f.vip} . ${b.ip}` : `${f.protocol} . ${b.ip} . ${f.target}`
      const orig = counter('orig', key)
      const reply = counter('reply', key)
      return {
        address: f.kind === 'vip' ? b.ip : `${b.ip}:${f.target}`,
        task: b.task,
        healthy: b.healthy,
        local: b.local,
        connections: counter('conns', key).packets,
        packetsIn: orig.packets,
        bytesIn: orig.bytes,
        packetsOut: reply.packets,
        bytesOut: reply.bytes
      }
    })
    return {
      netns,
      kind: f.kind,
      frontend: f.kind === 'vip' ? f.vip : `${f.protocol} ${f.published}`,
      service: f.service,
      serviceName: f.serviceName,
      network: f.network,
      scheduler: f.scheduler,
      backends
    }
  })
}

/** ipvsadm-like text. */
export function formatStats (rows: readonly FrontendStats[]): string {
  const lines: string[] = []
  const pad = (s: string | number, n: number): string => String(s).padStart(n)
  const W = 56
  lines.push(`${'Prot LocalAddress:Port Scheduler'.padEnd(W)}${pad('Conns', 9)}${pad('InPkts', 10)}${pad('OutPkts', 10)}${pad('InBytes', 12)}${pad('OutBytes', 12)}`)
  lines.push('  -> RemoteAddress:Port          Health')
  let last: string | null | undefined
  for (const row of rows) {
    if (row.netns !== last) {
      lines.push(`# ${row.netns ?? 'host namespace (published ports)'}`)
      last = row.netns
    }
    const [proto, port] = row.kind === 'vip' ? ['ALL', '*'] : row.frontend.toUpperCase().split(' ')
    const sum = (f: (b: BackendStats) => number): number => row.backends.reduce((n, b) => n + f(b), 0)
    const head = `${proto} ${row.kind === 'vip' ? row.frontend : '*'}:${port} ${row.scheduler} (${row.serviceName}, ${row.kind}${row.kind === 'vip' ? '' : ` via ${row.network}`})`
    lines.push(`${head.padEnd(W)}${pad(sum((b) => b.connections), 9)}${pad(sum((b) => b.packetsIn), 10)}${pad(sum((b) => b.packetsOut), 10)}${pad(sum((b) => b.bytesIn), 12)}${pad(sum((b) => b.bytesOut), 12)}`)
    for (const b of row.backends) {
      const who = `  -> ${b.address.padEnd(22)} ${(b.healthy ? 'healthy' : 'UNHEALTHY').padEnd(9)} ${b.task ?? ''}${b.local ? ' (local)' : ''}`
      lines.push(`${who.padEnd(W)}${pad(b.connections, 9)}${pad(b.packetsIn, 10)}${pad(b.packetsOut, 10)}${pad(b.bytesIn, 12)}${pad(b.bytesOut, 12)}`)
    }
  }
  return lines.join('\n') + '\n'
}
