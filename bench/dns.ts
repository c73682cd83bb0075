/**
 * bench/dns: dnsd next to dnsmasq, same machine, same namespace, same query
 * files, same run. dnsd is the standalone server (`dnsd serve`) answering as
 * one task of a generated document (bench/dns-fixture.ts: 100 services,
 * 1000 tasks); dnsmasq serves the same names from a hosts file. Both forward
 * other names to lab/upstream-dns.ts. A third server, Node's floor
 * (bench/node-floor-responder.ts: a copy of the query and one fixed record,
 * with as many processes as dnsd), shows in the same run how much of dnsd's
 * cost is its own and how much any Node UDP server pays.
 *
 * Two scenarios: cluster names, and forwarded names answered from each
 * server's cache. Every measured run follows a few seconds of the same
 * queries (fills the caches, warms Node's JIT), and the servers take turns,
 * their order changed each round, so drift in the machine's load hits all.
 * Medians over the rounds:
 * - saturated: dnsperf with `-c` clients and `-q` queries in flight; its
 *   queries per second and mean latency;
 * - fixed rate: dnsperf `-v` at the same rate for all (half the slower
 *   of dnsd and dnsmasq, unless --latency-qps): latency percentiles from the
 *   per-query latencies it prints, and the server's CPU time per query
 *   (utime + stime from /proc, all of dnsd's processes), the figure least
 *   disturbed by whatever else the machine runs.
 *
 * Everything runs in a namespace of its own (loopback only: no packet can
 * leave it); the namespace and every process started are removed on exit,
 * Ctrl-C included.
 *
 *   node bench/dns.ts [--seconds 5] [--rounds 3] [--workers 1] [--clients 16] [--outstanding 200] [--latency-qps N]
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { runCommand, runChecked } from '../lab/run-command.ts'
import { ASKING_TASK, UPSTREAM_ZONE, benchDocument, clusterQueries, forwardedQueries, hostsFile, upstreamHosts } from './dns-fixture.ts'
import { parseLatencies, parseSummary } from './dnsperf.ts'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    workers: { type: 'string', default: '1' },
    clients: { type: 'string', default: '16' },
    outstanding: { type: 'string', default: '200' },
    'latency-qps': { type: 'string' },
    'warm-seconds': { type: 'string', default: '2' }
  }
})
const seconds = Number(values.seconds)
const rounds = Number(values.rounds)
const workers = Number(values.workers)
const clients = Number(values.clients)
const outstanding = Number(values.outstanding)
const warmSeconds = Number(values['warm-seconds'])
const latencyQps = values['latency-qps'] === undefined ? null : Number(values['latency-qps'])
for (const [name, value] of Object.entries({ seconds, rounds, workers, clients, outstanding, 'warm-seconds': warmSeconds, 'latency-qps': latencyQps ?? 1 })) {
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: must be a positive integer`)
}
if (process.getuid?.() !== 0) throw new Error('bench/dns needs root (it creates a network namespace)')

// Under the lab prefix, so `weft lab ls` and scripts/leak-check.ts see a leftover.
const NETNS = 'weftlab-benchdns-ns'
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const UPSTREAM = '127.0.0.53'
const SERVERS = { dnsd: '127.0.0.11', dnsmasq: '127.0.0.12', floor: '127.0.0.13' } as const
type Server = keyof typeof SERVERS

const children = new Set<ChildProcess>()
let scratch: string | null = null
// Set once this run has created the namespace: a namespace found already there is never touched.
let created = false

const inNetns = (argv: string[]): string[] => ['ip', 'netns', 'exec', NETNS, ...argv]

/** Starts a long-running process inside the namespace, its output in `log`. */
async function start (name: string, argv: string[], log: string): Promise<ChildProcess> {
  const file = await open(log, 'w')
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', file.fd, file.fd] })
  await file.close()
  children.add(child)
  child.once('exit', () => children.delete(child))
  child.once('error', (error) => process.stderr.write(`bench/dns: ${name}: ${error.message}\n`))
  return child
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

let cleaning: Promise<void> | null = null
function cleanup (): Promise<void> {
  cleaning ??= (async () => {
    await Promise.all([...children].map(stop))
    if (scratch !== null) await rm(scratch, { recursive: true, force: true })
    if (!created) return
    // Whatever is still inside (a dnsd worker whose supervisor was killed, a dnsperf cut short) was
    // started by this run: nothing else can be in a namespace it created.
    const left = await runCommand(['ip', 'netns', 'pids', NETNS])
    for (const pid of left.stdout.split('\n').filter((p) => /^\d+$/.test(p))) {
      process.stderr.write(`bench/dns: killing leftover process ${pid} in ${NETNS}\n`)
      try { process.kill(Number(pid), 'SIGKILL') } catch { /* already gone */ }
    }
    await runCommand(['ip', 'netns', 'delete', NETNS])
  })()
  return cleaning
}
// `on`, not `once`: a second signal during the cleanup must not fall back to the default action
// and kill the run before the namespace is gone.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => { void cleanup().then(() => process.exit(130)) })
}

/** Polls with dig until `name` has an answer at `address`. */
async function waitForAnswer (what: string, address: string, name: string, child: ChildProcess, log: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break
    const result = await runCommand(inNetns(['dig', '+short', '+tries=1', '+time=1', `@${address}`, name]))
    if (result.code === 0 && result.stdout.trim() !== '') return
    await sleep(100)
  }
  const tail = await readFile(log, 'utf8').catch(() => '')
  throw new Error(`${what} did not answer ${name} at ${address}; its log:\n${tail.slice(-2000)}`)
}

/** The same question to both servers must get the same records (TTLs aside, order aside). */
async function checkSameAnswers (names: string[][]): Promise<void> {
  const answers = async (address: string, question: string[]): Promise<string> =>
    (await runChecked(inNetns(['dig', '+short', '+tries=1', '+time=2', `@${address}`, ...question]))).stdout.trim().split('\n').sort().join(' ')
  for (const question of names) {
    const [dnsd, dnsmasq] = [await answers(SERVERS.dnsd, question), await answers(SERVERS.dnsmasq, question)]
    if (dnsd !== dnsmasq) throw new Error(`dnsd and dnsmasq disagree on ${question.join(' ')}: dnsd "${dnsd}", dnsmasq "${dnsmasq}"`)
  }
}

async function dnsperf (server: Server, file: string, extra: string[]): Promise<string> {
  const argv = inNetns(['dnsperf', '-s', SERVERS[server], '-p', '53', '-d', file, ...extra])
  const result = await runCommand(argv)
  if (result.code !== 0) throw new Error(`${argv.join(' ')} failed (exit ${result.code}): ${result.stderr.trim() || result.stdout.slice(-800)}`)
  return result.stdout
}

const load = ['-c', String(clients), '-q', String(outstanding)]
async function warm (server: Server, file: string): Promise<void> {
  await dnsperf(server, file, ['-l', String(warmSeconds), ...load])
}

const CLOCK_TICK_SECONDS = 0.01 // USER_HZ: 100 on Linux

/** CPU seconds used so far by `pid` and its children (dnsd's workers). */
async function cpuSeconds (pid: number): Promise<number> {
  let ticks = 0
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '')
    // Fields after the command name, which may hold spaces: state, ppid, ..., utime (14), stime (15).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(entry) === pid || Number(fields[1]) === pid) ticks += Number(fields[11]) + Number(fields[12])
  }
  return ticks * CLOCK_TICK_SECONDS
}

interface Measured { qps: number[], avgMs: number[], p50: number[], p99: number[], p999: number[], cpuUs: number[], lost: number, rcodes: string }

const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((x, y) => x - y)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

async function scenario (file: string, pids: Record<Server, number>): Promise<{ measured: Record<Server, Measured>, rate: number }> {
  const empty = (): Measured => ({ qps: [], avgMs: [], p50: [], p99: [], p999: [], cpuUs: [], lost: 0, rcodes: '' })
  const measured: Record<Server, Measured> = { dnsd: empty(), dnsmasq: empty(), floor: empty() }
  // Each round a different server goes first, and dnsd and dnsmasq swap places.
  const order = (round: number): Server[] => [['dnsd', 'dnsmasq', 'floor'], ['floor', 'dnsmasq', 'dnsd'], ['dnsmasq', 'dnsd', 'floor']][round % 3] as Server[]
  for (let round = 0; round < rounds; round++) {
    for (const server of order(round)) {
      await warm(server, file)
      const summary = parseSummary(await dnsperf(server, file, ['-l', String(seconds), ...load]))
      const m = measured[server]
      m.qps.push(summary.qps)
      m.avgMs.push(summary.avgLatencyMs)
      m.lost += summary.lost
      m.rcodes = summary.rcodes
    }
  }
  const rate = latencyQps ?? Math.round(Math.min(median(measured.dnsd.qps), median(measured.dnsmasq.qps)) / 2)
  for (let round = 0; round < rounds; round++) {
    for (const server of order(round)) {
      await warm(server, file)
      const before = await cpuSeconds(pids[server])
      const out = await dnsperf(server, file, ['-l', String(seconds), ...load, '-Q', String(rate), '-v'])
      const cpu = await cpuSeconds(pids[server]) - before
      const summary = parseSummary(out)
      const latency = parseLatencies(out)
      const m = measured[server]
      m.p50.push(latency.p50Ms)
      m.p99.push(latency.p99Ms)
      m.p999.push(latency.p999Ms)
      m.cpuUs.push(cpu / summary.completed * 1e6)
      m.lost += summary.lost
    }
  }
  return { measured, rate }
}

function table (title: string, mix: string, result: { measured: Record<Server, Measured>, rate: number }): string {
  const { measured, rate } = result
  const col = (text: string, width = 9): string => text.padStart(width)
  const ms = (xs: readonly number[]): string => col(median(xs).toFixed(3))
  const ratio = (of: Server, to: Server) => (pick: (m: Measured) => readonly number[]): string => col(`${(median(pick(measured[of])) / median(pick(measured[to]))).toFixed(2)}×`)
  const ratios = (label: string, of: (pick: (m: Measured) => readonly number[]) => string): string =>
    `  ${label.padEnd(13)} ${of((m) => m.qps)} ${of((m) => m.avgMs)}   ${of((m) => m.p50)} ${of((m) => m.p99)} ${of((m) => m.p999)} ${of((m) => m.cpuUs)}`
  const line = (name: Server): string => {
    const m = measured[name]
    return `  ${name.padEnd(13)} ${col(median(m.qps).toFixed(0))} ${ms(m.avgMs)}   ${ms(m.p50)} ${ms(m.p99)} ${ms(m.p999)} ${col(median(m.cpuUs).toFixed(1))}   ${m.rcodes}${m.lost > 0 ? `, ${m.lost} lost` : ''}`
  }
  const rounds = (name: Server): string => `${name} ${measured[name].qps.map((q) => q.toFixed(0)).join(' ')}`
  return [
    `${title}: ${mix}`,
    `  ${''.padEnd(13)} ${'saturated'.padEnd(19)}   ${`at ${rate} q/s, the same for all`}`,
    `  ${'server'.padEnd(13)} ${col('q/s')} ${col('mean ms')}   ${col('p50 ms')} ${col('p99 ms')} ${col('p99.9 ms')} ${col('CPU µs/q')}   rcodes`,
    line('dnsd'),
    line('dnsmasq'),
    line('floor'),
    ratios('dnsd/dnsmasq', ratio('dnsd', 'dnsmasq')),
    ratios('dnsd/floor', ratio('dnsd', 'floor')),
    ratios('floor/dnsmasq', ratio('floor', 'dnsmasq')),
    `  q/s by round: ${rounds('dnsd')} | ${rounds('dnsmasq')} | ${rounds('floor')}`
  ].join('\n')
}

async function main (): Promise<void> {
  if ((await runCommand(['ip', 'netns', 'pids', NETNS])).code === 0) {
    throw new Error(`namespace ${NETNS} exists (an interrupted run?): check \`ip netns pids ${NETNS}\`, then \`ip netns delete ${NETNS}\``)
  }
  const dir = scratch = await mkdtemp(join(tmpdir(), 'weft-bench-dns-'))
  await runChecked(['ip', 'netns', 'add', NETNS])
  created = true
  await runChecked(['ip', '-n', NETNS, 'link', 'set', 'lo', 'up'])

  const cluster = clusterQueries()
  const forwarded = forwardedQueries()
  const files = {
    document: join(dir, 'document.json'), hosts: join(dir, 'hosts'), resolvConf: join(dir, 'resolv.conf'),
    cluster: join(dir, 'cluster.queries'), forwarded: join(dir, 'forwarded.queries')
  }
  await writeFile(files.document, JSON.stringify(benchDocument()))
  await writeFile(files.hosts, hostsFile())
  await writeFile(files.resolvConf, `nameserver ${UPSTREAM}\n`)
  await writeFile(files.cluster, cluster.lines.join('\n') + '\n')
  await writeFile(files.forwarded, forwarded.lines.join('\n') + '\n')

  const logs = { upstream: join(dir, 'upstream.log'), dnsd: join(dir, 'dnsd.log'), dnsmasq: join(dir, 'dnsmasq.log'), floor: join(dir, 'floor.log') }
  const upstream = await start('upstream', inNetns([process.execPath, join(ROOT, 'lab/upstream-dns.ts'), '--listen', UPSTREAM, '--zone', UPSTREAM_ZONE, '--hosts', upstreamHosts()]), logs.upstream)
  await waitForAnswer('the upstream resolver', UPSTREAM, `h1.${UPSTREAM_ZONE}`, upstream, logs.upstream)
  // The rate limit is per task and per worker: far above what one machine can send, so it never
  // drops a query, but its bookkeeping stays on the measured path.
  const dnsd = await start('dnsd', inNetns([process.execPath, join(ROOT, 'dnsd/main.ts'), 'serve', '--document', files.document, '--as', ASKING_TASK,
    '--listen', `${SERVERS.dnsd}:53`, '--resolv-conf', files.resolvConf, '--workers', String(workers), '--rate-limit', '100000000', '--log-level', 'warn']), logs.dnsd)
  // dnsmasq-base as shipped, configured only here: hosts TTL 5 s like dnsd's VIP answers, a cache
  // big enough for every forwarded name, no /etc files, and no privilege drop to a user that may not exist.
  const dnsmasq = await start('dnsmasq', inNetns(['dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--no-hosts', `--addn-hosts=${files.hosts}`,
    '--no-resolv', `--server=${UPSTREAM}`, `--listen-address=${SERVERS.dnsmasq}`, '--bind-interfaces', '--port=53', '--cache-size=10000',
    '--local-ttl=5', '--pid-file=', '--user=root', '--log-facility=-']), logs.dnsmasq)
  const floor = await start('floor', inNetns([process.execPath, join(ROOT, 'bench/node-floor-responder.ts'), '--listen', `${SERVERS.floor}:53`, '--workers', String(workers)]), logs.floor)
  await waitForAnswer('dnsd', SERVERS.dnsd, 'svc-000', dnsd, logs.dnsd)
  await waitForAnswer('dnsmasq', SERVERS.dnsmasq, 'svc-000', dnsmasq, logs.dnsmasq)
  await waitForAnswer('the Node floor responder', SERVERS.floor, 'svc-000', floor, logs.floor)
  await checkSameAnswers([['svc-000'], ['svc-002'], ['tasks.svc-001'], ['svc-001.3.s1t2'], ['-x', '10.60.5.11'], ['-x', '10.60.1.1'], [`h7.${UPSTREAM_ZONE}`]])

  const version = (await runCommand(['dnsperf', '-H'])).stdout.match(/Version (\S+)/)?.[1] ?? ''
  process.stdout.write(`dnsd (${workers} worker${workers === 1 ? '' : 's'}) vs dnsmasq, and Node's floor (the same number of processes), dnsperf ${version}: medians of ${rounds} rounds, ${seconds} s per run, ` +
    `${clients} clients, ${outstanding} queries in flight, ${warmSeconds} s of the same queries before each run\n` +
    'saturated: dnsperf\'s summary; p50/p99/p99.9: dnsperf -v per-query latencies; CPU: the server\'s utime + stime per answered query\n\n')
  const pids = { dnsd: dnsd.pid!, dnsmasq: dnsmasq.pid!, floor: floor.pid! }
  process.stdout.write(table('cluster names', cluster.mix, await scenario(files.cluster, pids)) + '\n\n')
  process.stdout.write(table(`forwarded names from the cache (upstream: lab/upstream-dns.ts, zone ${UPSTREAM_ZONE})`, forwarded.mix, await scenario(files.forwarded, pids)) + '\n')
}

try {
  await main()
} finally {
  await cleanup()
}
