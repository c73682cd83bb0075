/**
 * bench/lb: what lb's load balancing costs, all in one run.
 *
 * 1. VIP vs direct. A lab of two nodes; one overlay network "app"; a client
 *    task c1 on h1 and a server task s1 on h2; a service whose VIP has s1 as
 *    its only task. From c1: iperf3 throughput and wrk's rate of new
 *    connections (`Connection: close`: one request per connection) to the VIP
 *    and to s1's own address. Same path, same server; the VIP adds nft's DNAT
 *    in c1's namespace and lb's per-packet counters.
 * 2. Published port, from the outside host (on the underlay, on no overlay):
 *    - mesh: h1's published port, the routing mesh: nft DNAT in h1's host
 *      namespace, masquerade, over the ingress network to s1 on h2;
 *    - haproxy: Debian's haproxy in h1's host namespace doing the same L4
 *      balancing (mode tcp, roundrobin over the same one task, to the same
 *      ingress address of s1 over the same ingress leg);
 *    - direct: the same task's port published in host mode, on s1's own node
 *      h2: one DNAT, no masquerade, no overlay hop. The outside host cannot
 *      reach a task without some publishing, and this is Docker's way around
 *      the mesh; it is a best case, not the same path.
 * 3. Time to apply one endpoint change with 10, 1,000 and 10,000 services
 *    (bench/lb-sync.ts, in a throwaway namespace, before the lab exists).
 *
 * Every measurement runs --seconds; --rounds rounds, the paths of a
 * comparison taking turns, their order reversed each round, so drift in the
 * machine's load hits all alike. Reported: medians of the absolute figures,
 * and each ratio as the median of its per-round ratios (the two sides of a
 * ratio ran seconds apart). Before each measurement the lab's conntrack
 * tables are flushed, so that no run meets the entries of an earlier one (a
 * run leaves up to ~28,000 per client–server pair, 120 s in TIME_WAIT, and a
 * SYN that meets one costs conntrack a kill and a second lookup). Each path
 * has its own server ports: the server's TIME_WAIT sockets outlive the flush,
 * and the mesh and haproxy reach s1 from the same address (h1's ingress leg)
 * with different TCP timestamp clocks (PAWS would drop SYNs); VIP and direct
 * connections from c1 would share reply tuples in c1's conntrack table.
 *
 * The outside host reuses its TIME_WAIT ports for new connections
 * (`net.ipv4.tcp_tw_reuse=1`). Through haproxy, wrk's sockets, not the
 * server's, end in TIME_WAIT (14,000 seen after one run, against 455 through
 * the mesh), for 60 s, and in the next haproxy run wrk's connect() took
 * 40 % of the machine searching for a free port
 * (perf: __inet_hash_connect, __inet_check_established): haproxy measured
 * 1.4-3.7 k/s in half the rounds and 6-7.5 k/s in the others. That is the
 * client's cost, not the balancer's, and a client host with the setting
 * meets none of it.
 *
 * Servers in s1's namespace: iperf3 -s, one per path, and haproxy answering
 * every HTTP request itself (`http-request return`: a small, fast C server, so
 * that the paths, not the server, are what differs). Nothing is pinned to a
 * CPU: the machine has two, and the client, the servers, haproxy and the
 * kernel's softirqs share them as they would.
 *
 * Also reported, to tell a path's cost from the machine's noise: iperf3's own
 * CPU time per GB (both ends), the machine's busy share during the wrk runs
 * (all of it: anything else running on the machine counts too), and the
 * haproxy balancer's process CPU time per GB and per connection; for the
 * sync, the fastest change of each kind besides the median, and how busy the
 * rest of the machine kept its CPUs meanwhile.
 *
 *   node bench/lb.ts [--seconds 5] [--rounds 5] [--threads CPUs] [--connections 64] [--sizes 10,1000,10000] [--changes 20]
 *
 * Prints PASS/MISS per target and exits 0 either way (non-zero only when the
 * benchmark itself fails). Root; the lab (`benchlb`) and every process this
 * starts are removed at the end, on error, and on SIGINT/SIGTERM/SIGHUP.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { labDown, labUp, type Lab } from '../lab/lab.ts'
import { namespacesWithPrefix } from '../lab/network.ts'
import { runCommand } from '../lab/run-command.ts'
import { NetdClient } from '../netd/api-client.ts'
import { taskNamespaceName } from '../netd/kernel-state.ts'
import { macForIp, nodeDocument, type ClusterView } from '../manager/node-view.ts'
import { deleteSyncNetns, formatSyncResult, measureSync, median, type SyncResult } from './lb-sync.ts'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '5' },
    threads: { type: 'string', default: String(availableParallelism()) },
    connections: { type: 'string', default: '64' },
    sizes: { type: 'string', default: '10,1000,10000' },
    changes: { type: 'string', default: '20' }
  }
})
const seconds = Number(values.seconds)
const rounds = Number(values.rounds)
const threads = Number(values.threads)
const connections = Number(values.connections)
const changes = Number(values.changes)
const sizes = values.sizes.split(',').map(Number)
for (const [name, value] of Object.entries({ seconds, rounds, threads, connections, changes, ...Object.fromEntries(sizes.map((s, i) => [`sizes[${i}]`, s])) })) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: must be a positive integer`)
}
if (changes % 2 !== 0) throw new Error('--changes: must be even (as many joins as leaves)')
if (connections < threads) throw new Error('--connections: at least one per thread')
if (process.getuid?.() !== 0) throw new Error('bench/lb needs root (it creates network namespaces)')

const TARGETS = { vipThroughput: 0.97, vipConnections: 0.95, meshOverHaproxy: 2, changeMs: 20, changeAt: 10_000 }
const LAB = 'benchlb'

// The cluster: addresses and ports. Each path has its own server ports (see the header).
const APP = { id: 'app', name: 'app', subnet: '10.30.0.0/24', gateway: '10.30.0.1', vni: 4300 }
const INGRESS = { id: 'ingress', name: 'ingress', subnet: '10.255.0.0/24', gateway: '10.255.0.1', vni: 4301, ingress: true }
const VIP = '10.30.0.2'
const CLIENT = { task: 'c1', host: 'h1', app: '10.30.0.11' }
const SERVER = { task: 's1', host: 'h2', app: '10.30.0.21', ingress: '10.255.0.21' }
const LEGS = { h1: '10.255.0.2', h2: '10.255.0.3' }
/** Server ports in s1: http for wrk, iperf for iperf3. */
const PORTS = {
  vip: { http: 80, iperf: 5201 },
  direct: { http: 81, iperf: 5202 },
  mesh: { http: 82, iperf: 5203 },
  haproxy: { http: 83, iperf: 5204 },
  host: { http: 84, iperf: 5205 }
} as const
/** Ports on the nodes, as the outside host sees them. */
const PUBLISHED = {
  mesh: { http: 8080, iperf: 5301 },
  haproxy: { http: 18080, iperf: 15301 },
  host: { http: 9080, iperf: 9301 }
} as const

type Metric = 'throughput' | 'connections'
type PathName = 'vip' | 'direct' | 'mesh' | 'haproxy' | 'host'
interface Path { name: PathName, label: string, definition: string, client: string, address: string, http: number, iperf: number }

// ---- cleanup: always, once ----
const children = new Set<ChildProcess>()
let tmp: string | null = null
let cleaning: Promise<void> | null = null
let stopping = false
async function cleanup (): Promise<void> {
  cleaning ??= (async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    deleteSyncNetns()
    await labDown(LAB).catch((e: unknown) => { process.stderr.write(`bench/lb: lab teardown: ${(e as Error).message}\n`) })
    if (tmp !== null) await rm(tmp, { recursive: true, force: true })
  })()
  await cleaning
}
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  process.on(signal, () => {
    process.stderr.write(`bench/lb: ${signal}, removing the lab\n`)
    void cleanup().finally(() => process.exit(code))
  })
}

/** A long-running process in a lab namespace; `ip netns exec` execs, so the pid is the program's own. */
function background (netns: string, argv: readonly string[], log: string): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] })
  children.add(child)
  let errors = ''
  child.stderr!.on('data', (chunk: Buffer) => { errors += chunk.toString() })
  child.on('exit', (code, signal) => {
    children.delete(child)
    if (!stopping && cleaning === null) process.stderr.write(`bench/lb: ${log} exited (${code ?? signal}): ${errors.trim()}\n`)
  })
  return child
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await Promise.race([exited, sleep(3000).then(() => child.kill('SIGKILL'))])
}

async function inNetns (netns: string, argv: readonly string[]): Promise<string> {
  const result = await runCommand(['ip', 'netns', 'exec', netns, ...argv])
  if (result.code !== 0) throw new Error(`${argv.join(' ')} in ${netns} failed (exit ${result.code}): ${(result.stderr || result.stdout).trim().slice(0, 600)}`)
  return result.stdout
}

async function waitListening (netns: string, ports: readonly number[]): Promise<void> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const listening = new Set((await inNetns(netns, ['ss', '-Hltn'])).split('\n').map((line) => Number(line.trim().split(/\s+/)[3]?.split(':').pop())))
    const missing = ports.filter((port) => !listening.has(port))
    if (missing.length === 0) return
    if (Date.now() > deadline) throw new Error(`nothing listens on ${missing.join(', ')} in ${netns}`)
    await sleep(100)
  }
}

/** Every conntrack table of the lab: the hosts', the tasks' and netd's overlay namespaces. */
async function flushConntrack (): Promise<void> {
  const namespaces = await namespacesWithPrefix(`weftlab-${LAB}-`)
  await Promise.all(namespaces.map(async (netns) => await runCommand(['ip', 'netns', 'exec', netns, 'conntrack', '-F'])))
}

interface IperfResult { gbps: number, /** CPU time of both iperf3 processes per GB moved, ms. */ cpuPerGB: number }
async function iperf (path: Path, secs: number): Promise<IperfResult> {
  const out = await inNetns(path.client, ['iperf3', '-J', '-c', path.address, '-p', String(path.iperf), '-t', String(secs), '--connect-timeout', '3000'])
  const report = JSON.parse(out) as {
    error?: string
    end?: { sum_received?: { bits_per_second: number, bytes: number, seconds: number }, cpu_utilization_percent?: { host_total: number, remote_total: number } }
  }
  const received = report.end?.sum_received
  const cpu = report.end?.cpu_utilization_percent
  if (report.error !== undefined || received === undefined || cpu === undefined) throw new Error(`iperf3 ${path.name}: ${report.error ?? 'no result'}`)
  return { gbps: received.bits_per_second / 1e9, cpuPerGB: (cpu.host_total + cpu.remote_total) / 100 * received.seconds / (received.bytes / 1e9) * 1000 }
}

interface WrkResult { rate: number, requests: number, errors: string | null }
async function wrk (path: Path, secs: number): Promise<WrkResult> {
  const out = await inNetns(path.client, ['wrk', '-t', String(threads), '-c', String(connections), '-d', `${secs}s`, '--timeout', '2s',
    '-H', 'Connection: close', `http://${path.address}:${path.http}/`])
  const rate = /^Requests\/sec:\s+([\d.]+)/m.exec(out)
  const requests = /^\s*(\d+) requests in/m.exec(out)
  if (rate === null || requests === null) throw new Error(`wrk ${path.name}: no rate in its output:\n${out}`)
  const problems = [/^\s+Socket errors:.*$/m.exec(out)?.[0].trim(), /^\s+Non-2xx.*$/m.exec(out)?.[0].trim()].filter((x) => x !== undefined)
  return { rate: Number(rate[1]), requests: Number(requests[1]), errors: problems.length === 0 ? null : problems.join('; ') }
}

// CPU accounting around a run: the whole machine's busy share (this benchmark and whatever else runs), and
// the haproxy balancer's own CPU time (all its threads; /proc/PID/stat utime + stime, in clock ticks).
/** USER_HZ: 100 on every Linux architecture this runs on (`getconf CLK_TCK`). */
const CLOCK_TICK = 100
async function machineTicks (): Promise<{ busy: number, total: number }> {
  const fields = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
  const total = fields.reduce((a, b) => a + b, 0)
  return { busy: total - fields[3]! - fields[4]!, total }
}
/** utime + stime of a process (all its threads); with `children`, also of its children it has waited for. */
async function processTicks (pid: number | undefined, children = false): Promise<number> {
  if (pid === undefined) return 0
  // Fields after the command name (which may hold spaces): utime, stime, cutime, cstime are the 12th to 15th.
  const after = (await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).split(') ').pop()!.split(' ')
  const fields = after.slice(11, children ? 15 : 13).map(Number)
  return fields.reduce((a, b) => a + b, 0)
}
interface Cpu { /** Share of all CPUs busy during the run. */ busy: number, /** The balancer's CPU seconds during the run. */ balancer: number }
async function withCpu<T> (balancerPid: number | undefined, run: () => Promise<T>): Promise<[T, Cpu]> {
  const [m0, b0] = [await machineTicks(), await processTicks(balancerPid)]
  const result = await run()
  const [m1, b1] = [await machineTicks(), await processTicks(balancerPid)]
  return [result, { busy: (m1.busy - m0.busy) / (m1.total - m0.total), balancer: (b1 - b0) / CLOCK_TICK }]
}

// ---- 3. the sync measurement first: before the lab, with the machine's conntrack table as lean as it gets ----
const started = Date.now()
process.stdout.write(`bench/lb: one endpoint change at ${sizes.join(', ')} services (${changes} changes each)…\n`)
let sync: SyncResult[] = []
let othersDuringSync = 0
let lab: Lab | null = null
try {
  const before = [await machineTicks(), await processTicks(process.pid, true)] as const
  sync = await measureSync({ sizes, changes, onResult: (r) => process.stdout.write(`  ${formatSyncResult(r)}\n`) })
  const after = [await machineTicks(), await processTicks(process.pid, true)] as const
  // The rest of the machine: its busy time less this process's and its children's (nft).
  othersDuringSync = ((after[0].busy - before[0].busy) - (after[1] - before[1])) / (after[0].total - before[0].total)

  // ---- the lab ----
  await labDown(LAB)
  process.stdout.write('bench/lb: lab up (2 nodes + outside)…\n')
  lab = await labUp({ name: LAB, nodes: 2 })
  const netns = (host: string) => lab!.netns(host)
  const taskNetns = (task: { task: string, host: string }) => taskNamespaceName(`${netns(task.host)}-`, task.task)
  const cluster: ClusterView = {
    revision: 1,
    networks: [APP, INGRESS],
    endpoints: [
      { task: CLIENT.task, network: 'app', ip: CLIENT.app, mac: macForIp(CLIENT.app), node: lab.addr(CLIENT.host) },
      { task: SERVER.task, network: 'app', ip: SERVER.app, mac: macForIp(SERVER.app), node: lab.addr(SERVER.host), service: 'web', name: 'web.1' },
      { task: SERVER.task, network: 'ingress', ip: SERVER.ingress, mac: macForIp(SERVER.ingress), node: lab.addr(SERVER.host), service: 'web', name: 'web.1' }
    ],
    services: [{
      id: 'web',
      name: 'web',
      networks: [{ network: 'app', vip: VIP }, { network: 'ingress', vip: '10.255.0.10' }],
      ports: [
        { protocol: 'tcp', target: PORTS.mesh.http, published: PUBLISHED.mesh.http },
        { protocol: 'tcp', target: PORTS.mesh.iperf, published: PUBLISHED.mesh.iperf },
        { protocol: 'tcp', target: PORTS.host.http, published: PUBLISHED.host.http, mode: 'host' },
        { protocol: 'tcp', target: PORTS.host.iperf, published: PUBLISHED.host.iperf, mode: 'host' }
      ]
    }],
    ingress: { network: 'ingress', endpoints: Object.entries(LEGS).map(([host, ip]) => ({ node: lab!.addr(host), ip, mac: macForIp(ip) })) }
  }
  for (const host of ['h1', 'h2']) await new NetdClient(lab.netdSocket(host)).call('PUT', '/state', nodeDocument(cluster, lab.addr(host)))

  // ---- servers ----
  tmp = await mkdtemp(join(tmpdir(), 'weft-bench-lb-'))
  const httpPorts = Object.values(PORTS).map((p) => p.http)
  const responderCfg = join(tmp, 'responder.cfg')
  await writeFile(responderCfg, [
    'global', '  maxconn 4000',
    'defaults', '  mode http', '  timeout client 10s', '  timeout connect 5s', '  timeout server 10s', '  timeout http-request 5s',
    'frontend responder', `  bind 0.0.0.0:${Math.min(...httpPorts)}-${Math.max(...httpPorts)}`,
    '  http-request return status 200 content-type text/plain string "ok"', ''
  ].join('\n'))
  const balancerCfg = join(tmp, 'balancer.cfg')
  const h1 = lab.addr('h1')
  await writeFile(balancerCfg, [
    'global', '  maxconn 4000',
    // The baseline at its best for L4: kernel splicing where haproxy judges it useful.
    'defaults', '  mode tcp', '  balance roundrobin', '  option splice-auto', '  timeout client 10s', '  timeout connect 5s', '  timeout server 10s',
    'frontend http', `  bind ${h1}:${PUBLISHED.haproxy.http}`, '  default_backend http',
    'backend http', `  server s1 ${SERVER.ingress}:${PORTS.haproxy.http}`,
    'frontend iperf', `  bind ${h1}:${PUBLISHED.haproxy.iperf}`, '  default_backend iperf',
    'backend iperf', `  server s1 ${SERVER.ingress}:${PORTS.haproxy.iperf}`, ''
  ].join('\n'))
  const serverNetns = taskNetns(SERVER)
  background(serverNetns, ['haproxy', '-db', '-f', responderCfg], 'haproxy (HTTP responder in s1)')
  for (const { iperf } of Object.values(PORTS)) background(serverNetns, ['iperf3', '-s', '-p', String(iperf)], `iperf3 -s -p ${iperf}`)
  const balancer = background(netns('h1'), ['haproxy', '-db', '-f', balancerCfg], 'haproxy (balancer on h1)')
  await inNetns(netns('outside'), ['sysctl', '-q', '-w', 'net.ipv4.tcp_tw_reuse=1'])
  await waitListening(serverNetns, [...httpPorts, ...Object.values(PORTS).map((p) => p.iperf)])
  await waitListening(netns('h1'), [PUBLISHED.haproxy.http, PUBLISHED.haproxy.iperf])

  const paths: Record<PathName, Path> = {
    vip: { name: 'vip', label: 'VIP', definition: `c1 → VIP ${VIP}: nft DNAT in c1's namespace; the VIP's only task is s1`, client: taskNetns(CLIENT), address: VIP, ...PORTS.vip },
    direct: { name: 'direct', label: 'direct', definition: `c1 → s1's own address ${SERVER.app}`, client: taskNetns(CLIENT), address: SERVER.app, ...PORTS.direct },
    mesh: {
      name: 'mesh', label: 'mesh', definition: `outside → h1:${PUBLISHED.mesh.http}: the routing mesh, nft DNAT + masquerade in h1's host namespace, ingress overlay to s1 on h2`,
      client: netns('outside'), address: h1, ...PUBLISHED.mesh
    },
    haproxy: {
      name: 'haproxy', label: 'haproxy', definition: `outside → h1:${PUBLISHED.haproxy.http}: haproxy (mode tcp, roundrobin, splice-auto) in h1's host namespace → s1's ingress address ${SERVER.ingress} over the same leg`,
      client: netns('outside'), address: h1, ...PUBLISHED.haproxy
    },
    host: {
      name: 'host', label: 'direct', definition: `outside → h2:${PUBLISHED.host.http}: the port published in host mode on s1's node: one DNAT, no masquerade, no overlay hop (Docker's way around the mesh; a best case, not the same path)`,
      client: netns('outside'), address: lab.addr('h2'), ...PUBLISHED.host
    }
  }

  // Every path answers, and a short warm-up of each (neighbour entries, caches); not measured.
  for (const path of Object.values(paths)) {
    await flushConntrack()
    const answer = await inNetns(path.client, ['curl', '-sS', '--max-time', '3', '-H', 'Connection: close', `http://${path.address}:${path.http}/`])
    if (answer.trim() !== 'ok') throw new Error(`${path.name}: unexpected answer ${JSON.stringify(answer)}`)
    await iperf(path, 1)
    await wrk(path, 1)
  }

  // ---- measure ----
  interface Run { value: number, cpu: Cpu, /** GB moved, or connections made. */ amount: number, cpuPerGB?: number }
  const groups: PathName[][] = [['vip', 'direct'], ['mesh', 'haproxy', 'host']]
  const empty = (): Record<Metric, Run[]> => ({ throughput: [], connections: [] })
  const measured: Record<PathName, Record<Metric, Run[]>> = { vip: empty(), direct: empty(), mesh: empty(), haproxy: empty(), host: empty() }
  const wrkErrors: string[] = []
  const cpus = availableParallelism()
  process.stdout.write(`bench/lb: ${rounds} rounds; each: iperf3 and wrk for ${seconds} s on each of ${Object.keys(paths).length} paths…\n`)
  for (let round = 0; round < rounds; round++) {
    for (const group of groups) {
      const order = round % 2 === 0 ? group : [...group].reverse()
      for (const name of order) {
        await flushConntrack()
        const [result, cpu] = await withCpu(balancer.pid, async () => await iperf(paths[name], seconds))
        measured[name].throughput.push({ value: result.gbps, cpu, amount: result.gbps * seconds / 8, cpuPerGB: result.cpuPerGB })
      }
      for (const name of order) {
        await flushConntrack()
        const [result, cpu] = await withCpu(balancer.pid, async () => await wrk(paths[name], seconds))
        measured[name].connections.push({ value: result.rate, cpu, amount: result.requests })
        if (result.errors !== null) wrkErrors.push(`round ${round + 1} ${name}: ${result.errors}`)
      }
    }
    const last = (p: PathName, m: Metric) => measured[p][m].at(-1)!.value
    process.stdout.write(`  round ${round + 1}: ${Object.keys(paths).map((p) => `${p} ${last(p as PathName, 'throughput').toFixed(2)} Gb/s ${last(p as PathName, 'connections').toFixed(0)}/s`).join(', ')}\n`)
  }

  // ---- report ----
  const values = (p: PathName, m: Metric, f: (r: Run) => number = (r) => r.value): number[] => measured[p][m].map(f)
  const ratio = (a: PathName, b: PathName, metric: Metric, f?: (r: Run) => number): { median: number, all: number[] } => {
    const bs = values(b, metric, f)
    const all = values(a, metric, f).map((x, i) => x / bs[i]!)
    return { median: median(all), all }
  }
  const ratioCell = (r: { median: number, all: number[] }): string =>
    `${r.median.toFixed(2)}×${r.all.length > 1 ? ` (${Math.min(...r.all).toFixed(2)}–${Math.max(...r.all).toFixed(2)})` : ''}`
  const gbps = (p: PathName) => `${median(values(p, 'throughput')).toFixed(2)} Gb/s`
  const rate = (p: PathName) => `${(median(values(p, 'connections')) / 1000).toFixed(2)} k/s`
  const busy = (p: PathName, m: Metric) => `${(median(values(p, m, (r) => r.cpu.busy)) * 100).toFixed(0)}%`
  const iperfCpu = (r: Run) => r.cpuPerGB!
  const row = (cells: string[], widths: number[]): string => '  ' + cells.map((c, i) => i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join('  ')
  const w1 = [14, 18, 20, 22, 10]
  const vipTable = [
    'VIP vs direct (client task c1 on h1 → server task s1 on h2, overlay network app)',
    ...(['direct', 'vip'] as const).map((n) => `  ${paths[n].label.padEnd(8)} ${paths[n].definition}`),
    row(['', 'iperf3, 1 stream', 'iperf3 CPU per GB', 'new connections/s', 'CPU busy'], w1),
    ...(['direct', 'vip'] as const).map((n) => row([paths[n].label, gbps(n), `${median(values(n, 'throughput', iperfCpu)).toFixed(0)} ms`, rate(n), busy(n, 'connections')], w1)),
    row(['VIP/direct', ratioCell(ratio('vip', 'direct', 'throughput')), ratioCell(ratio('vip', 'direct', 'throughput', iperfCpu)), ratioCell(ratio('vip', 'direct', 'connections')), ''], w1)
  ]
  // The balancer's own cost, and what it bounds: with the client and the server on the same CPUs, a balancer
  // that cost nothing could raise the rate by at most busy / (busy − balancer) while the machine is saturated.
  const balancerShare = values('haproxy', 'connections', (r) => r.cpu.balancer / (r.cpu.busy * cpus * seconds))
  const perConnection = median(values('haproxy', 'connections', (r) => r.cpu.balancer / r.amount * 1e6))
  const perGB = median(values('haproxy', 'throughput', (r) => r.cpu.balancer / r.amount * 1000))
  const w2 = [14, 18, 20, 10]
  const meshTable = [
    'Published port (client: the outside host, on the underlay only)',
    ...(['host', 'mesh', 'haproxy'] as const).map((n) => `  ${paths[n].label.padEnd(8)} ${paths[n].definition}`),
    row(['', 'iperf3, 1 stream', 'new connections/s', 'CPU busy'], w2),
    ...(['host', 'mesh', 'haproxy'] as const).map((n) => row([paths[n].label, gbps(n), rate(n), busy(n, 'connections')], w2)),
    row(['mesh/haproxy', ratioCell(ratio('mesh', 'haproxy', 'throughput')), ratioCell(ratio('mesh', 'haproxy', 'connections')), ''], w2),
    row(['mesh/direct', ratioCell(ratio('mesh', 'host', 'throughput')), ratioCell(ratio('mesh', 'host', 'connections')), ''], w2),
    row(['direct/haproxy', ratioCell(ratio('host', 'haproxy', 'throughput')), ratioCell(ratio('host', 'haproxy', 'connections')), ''], w2),
    `  haproxy's process CPU time (its sockets' softirq work is partly elsewhere): ${perGB.toFixed(0)} ms per GB; ${perConnection.toFixed(0)} µs per connection,`,
    `  ${(median(balancerShare) * 100).toFixed(0)}% of the machine's busy time in its wrk runs: with client, server and balancer on the same ${cpus} CPUs, freeing`,
    `  that time alone would raise haproxy's rate by ≈ ${(1 / (1 - median(balancerShare))).toFixed(2)}×. The direct path (no balancer, no overlay hop) is the`,
    `  ceiling of any mesh: ${ratio('host', 'haproxy', 'connections').median.toFixed(2)}× haproxy in new connections/s.`
  ]
  const vipT = ratio('vip', 'direct', 'throughput').median
  const vipC = ratio('vip', 'direct', 'connections').median
  const meshT = ratio('mesh', 'haproxy', 'throughput').median
  const meshC = ratio('mesh', 'haproxy', 'connections').median
  const at = sync.find((r) => r.services === TARGETS.changeAt)
  const targetRows: Array<[string, string, boolean]> = [
    [`VIP throughput ≥ ${TARGETS.vipThroughput}× direct`, `${vipT.toFixed(2)}×`, vipT >= TARGETS.vipThroughput],
    [`VIP new connections/s ≥ ${TARGETS.vipConnections}× direct`, `${vipC.toFixed(2)}×`, vipC >= TARGETS.vipConnections],
    [`mesh throughput ≥ ${TARGETS.meshOverHaproxy}× haproxy`, `${meshT.toFixed(2)}×`, meshT >= TARGETS.meshOverHaproxy],
    [`mesh new connections/s ≥ ${TARGETS.meshOverHaproxy}× haproxy`, `${meshC.toFixed(2)}×`, meshC >= TARGETS.meshOverHaproxy],
    ...(at === undefined
      ? []
      : [
          [`a task joins, ${at.services} services: ≤ ${TARGETS.changeMs} ms (sync; best ${at.best.joinSync.toFixed(1)} ms)`, `${at.joinSync.toFixed(1)} ms`, at.joinSync <= TARGETS.changeMs],
          [`a task leaves, ${at.services} services: ≤ ${TARGETS.changeMs} ms (in effect; best ${at.best.leaveInEffect.toFixed(1)} ms)`, `${at.leaveInEffect.toFixed(1)} ms`, at.leaveInEffect <= TARGETS.changeMs],
          [`a task leaves, ${at.services} services: ≤ ${TARGETS.changeMs} ms (sync, with conntrack deletions; best ${at.best.leaveSync.toFixed(1)} ms)`, `${at.leaveSync.toFixed(1)} ms`, at.leaveSync <= TARGETS.changeMs]
        ] satisfies Array<[string, string, boolean]>)
  ]
  const syncWidths = [9, 11, 11, 12, 12, 10, 10, 11]
  const msCell = (x: number) => `${x.toFixed(1)} ms`
  const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')
  process.stdout.write([
    '',
    `bench/lb — ${rounds} rounds × ${seconds} s per measurement; medians; a ratio is the median of its per-round ratios (range in brackets).`,
    `wrk -t ${threads} -c ${connections}, "Connection: close" (one request per connection). CPU busy: the whole machine's, all of its ${cpus} CPUs,`,
    `during the wrk runs (anything else running counts too; load average at the end: ${load}).`,
    '',
    ...vipTable,
    '',
    ...meshTable,
    '',
    `One endpoint change (LbProgrammer.sync in one task namespace, medians of ${changes / 2} joins and ${changes / 2} leaves;`,
    '"in effect": until the nft transaction is committed, when new connections follow the change; "sync": until sync returns;',
    `meanwhile the rest of the machine kept ${(othersDuringSync * 100).toFixed(0)}% of its ${cpus} CPUs busy)`,
    row(['services', 'join: eff.', 'join: sync', 'leave: eff.', 'leave: sync', 'conntrack', 'nft alone', 'first sync'], syncWidths),
    ...sync.map((r) => row([String(r.services), msCell(r.joinInEffect), msCell(r.joinSync), msCell(r.leaveInEffect), msCell(r.leaveSync), msCell(r.leaveConntrack), msCell(r.nft), msCell(r.firstSync)], syncWidths)),
    '',
    'Targets',
    ...targetRows.map(([what, value, ok]) => `  ${what.padEnd(82)} ${value.padStart(8)}  ${ok ? 'PASS' : 'MISS'}`),
    ...(wrkErrors.length === 0 ? [] : ['', 'wrk reported errors (the rates above count only answered requests):', ...wrkErrors.map((e) => `  ${e}`)]),
    '',
    `bench/lb: ${((Date.now() - started) / 1000).toFixed(0)} s`,
    ''
  ].join('\n'))
} finally {
  stopping = true
  for (const child of [...children]) await stop(child)
  await cleanup()
}
