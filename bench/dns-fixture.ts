/**
 * What bench/dns.ts serves and asks, generated and deterministic: one overlay
 * network with SERVICES services (every third one dnsrr, the rest vip) of
 * TASKS_PER_SERVICE tasks each, the asking task, the same names as a hosts
 * file for dnsmasq, the upstream zone's hosts, and the two query files.
 *
 * The hosts file lists a task's own name first on its line: dnsmasq answers
 * PTR with the first name of an address, as dnsd answers a task address's PTR
 * with the task name (and a VIP's with the service name).
 */
import { macForIp } from '../manager/node-view.ts'
import type { DesiredStateInput } from '../netd/desired-state.ts'

export const SERVICES = 100
export const TASKS_PER_SERVICE = 10
/** Names the upstream (lab/upstream-dns.ts) answers: h1 … hN in its zone. */
export const UPSTREAM_HOSTS = 1000
export const UPSTREAM_ZONE = 'lab.test'
export const ASKING_TASK = 'client'

interface Task { id: string, name: string, ip: string }
interface BenchService { id: string, name: string, mode: 'vip' | 'dnsrr', vip: string | null, tasks: Task[] }

function services (): BenchService[] {
  return Array.from({ length: SERVICES }, (_, i) => {
    const name = `svc-${String(i).padStart(3, '0')}`
    const mode = i % 3 === 2 ? 'dnsrr' as const : 'vip' as const
    return {
      id: name,
      name,
      mode,
      vip: mode === 'vip' ? `10.60.1.${i + 1}` : null,
      tasks: Array.from({ length: TASKS_PER_SERVICE }, (_, j) => ({ id: `s${i}t${j}`, name: `${name}.${j + 1}.s${i}t${j}`, ip: `10.60.${2 + i}.${10 + j}` }))
    }
  })
}

export function benchDocument (): DesiredStateInput {
  const all = services()
  return {
    version: 1,
    revision: 1,
    networks: [{ id: 'bench', name: 'bench', subnet: '10.60.0.0/16', gateway: '10.60.0.1', vni: 4600 }],
    endpoints: [{ task: ASKING_TASK, network: 'bench', ip: '10.60.0.10', mac: macForIp('10.60.0.10'), name: `${ASKING_TASK}.1.${ASKING_TASK}` }],
    remoteEndpoints: all.flatMap((s) => s.tasks.map((t) => ({
      network: 'bench', ip: t.ip, mac: macForIp(t.ip), node: '192.168.60.2', task: t.id, service: s.id, name: t.name
    }))),
    services: all.map((s) => ({
      id: s.id, name: s.name, endpointMode: s.mode, networks: [{ network: 'bench', ...(s.vip === null ? {} : { vip: s.vip }), aliases: [] }]
    }))
  }
}

/** dnsmasq --addn-hosts: the same A and PTR answers dnsd gives the asking task. */
export function hostsFile (): string {
  const lines = [`10.60.0.10 ${ASKING_TASK}.1.${ASKING_TASK}`]
  for (const s of services()) {
    if (s.vip !== null) lines.push(`${s.vip} ${s.name}`)
    for (const t of s.tasks) lines.push(`${t.ip} ${t.name} tasks.${s.name}${s.mode === 'dnsrr' ? ` ${s.name}` : ''}`)
  }
  return lines.join('\n') + '\n'
}

/** lab/upstream-dns.ts --hosts. */
export function upstreamHosts (): string {
  return Array.from({ length: UPSTREAM_HOSTS }, (_, i) => `h${i + 1}=10.99.${Math.floor(i / 250)}.${1 + (i % 250)}`).join(',')
}

function reverse (ip: string): string {
  return `${ip.split('.').reverse().join('.')}.in-addr.arpa`
}

/** A fixed shuffle (mulberry32), so both servers see the same order in every run. */
function shuffled<T> (items: T[], seed: number): T[] {
  let s = seed >>> 0
  const random = (): number => {
    s = (s + 0x6d2b79f5) >>> 0
    let x = Math.imul(s ^ (s >>> 15), 1 | s)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/**
 * Cluster names: service names (5× each), tasks.<service> (3×), task names, PTR. No AAAA: dnsmasq
 * forwards AAAA for a name its hosts file has only A for, where dnsd answers NODATA itself.
 */
export function clusterQueries (): { lines: string[], mix: string } {
  const all = services()
  const lines: string[] = []
  for (const s of all) {
    for (let k = 0; k < 5; k++) lines.push(`${s.name} A`)
    for (let k = 0; k < 3; k++) lines.push(`tasks.${s.name} A`)
    if (s.vip !== null) lines.push(`${reverse(s.vip)} PTR`)
    for (const [j, t] of s.tasks.entries()) {
      lines.push(`${t.name} A`)
      if (j < 3) lines.push(`${reverse(t.ip)} PTR`)
    }
  }
  const count = (pattern: RegExp): number => lines.filter((l) => pattern.test(l)).length
  const mix = `${lines.length} queries: ${count(/^svc-\d+ A$/)} service A, ${count(/^tasks\./)} tasks.<service> A, ` +
    `${count(/^svc-\d+\.\d+\.\S+ A$/)} task-name A, ${count(/ PTR$/)} PTR`
  return { lines: shuffled(lines, 0xd115), mix }
}

/** Names outside the cluster, answered by the upstream and then from each server's cache: A, and AAAA (negative, SOA-cached). */
export function forwardedQueries (): { lines: string[], mix: string } {
  const lines: string[] = []
  for (let i = 1; i <= UPSTREAM_HOSTS; i++) {
    lines.push(`h${i}.${UPSTREAM_ZONE} A`)
    if (i % 10 === 0) lines.push(`h${i}.${UPSTREAM_ZONE} AAAA`)
  }
  return { lines: shuffled(lines, 0xf0d), mix: `${lines.length} queries: ${UPSTREAM_HOSTS} A, ${UPSTREAM_HOSTS / 10} AAAA (NODATA with SOA)` }
}
