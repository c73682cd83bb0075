/**
 * bench/control-plane: the control plane's two figures (issue 3), on one lab
 * of three nodes, each next to its reference.
 *
 * 1. Scheduling: `weft service create --replicas N` (30 by default) until the
 *    N tasks run across the three nodes: from the service's creation to its
 *    last task reported running, in the manager's own records (what the
 *    system takes), and as a client polling `service ls` sees it (plus the
 *    CLI's start-up); without a network and on an overlay network (a network
 *    adds a namespace's veth pair, addresses, DNS and lb rules per task).
 *    There is no Docker here: Swarm's line is Docker's published figure,
 *    printed as such, not measured.
 *
 * 2. Committed changes per second, fsync on, with C = 1, 16, 64 concurrent
 *    writers, each writer its own connection, from one Node process inside
 *    h1's namespace:
 *    - weft: `node update --label-add bench=VALUE` commands (node.update, a
 *      new value each time, writer w on node w mod 3: every node keeps one
 *      label whatever C is), sent as the control API's `propose` over the
 *      manager's mutual-TLS RPC (port 2377, h1's manager certificate, as
 *      another manager's netd would call it) to the manager hosted by h1's
 *      netd. Each one is checked against the state, appended to the Raft log,
 *      fdatasynced, applied to the store and answered: the manager's side of
 *      every change a user makes (the weft CLI reaches the same `control`
 *      through its local netd's socket, one process per command);
 *    - etcd 3.4 (Debian's etcd-server): one member, its data directory in a
 *      fresh temporary directory, listening on 127.0.0.1 inside h1's
 *      namespace only, written through its HTTP/JSON gateway
 *      (`POST /v3/kv/put`, base64 key and value) with keep-alive: each put is
 *      committed (WAL fdatasync) and applied before it is answered. The
 *      gateway is a gRPC client of etcd itself: a hop a native gRPC client
 *      would not pay.
 *    Each figure is the median of `--rounds` runs; the two systems take turns,
 *    their order swapped each round. The count of entries each system
 *    committed is checked (etcd's revision, the manager's index).
 *
 * etcd is stopped by its PID and its data directory deleted whatever happens
 * (Ctrl-C included); the lab goes with everything in its namespaces.
 *
 *   node bench/control-plane.ts [--replicas 30] [--writes 2000] [--concurrency 1,16,64] [--rounds 3]
 *                               [--skip-schedule] [--skip-writes]
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, stat, statfs } from 'node:fs/promises'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { labDown, labUp, type Lab } from '../lab/lab.ts'
import { connectNode } from '../manager/api/mtls.ts'
import type { RpcClient } from '../manager/api/rpc-client.ts'
import type { ClusterSnapshot } from '../manager/control.ts'
import { loadMembership, managerDir } from '../netd/cluster/identity.ts'

const SELF = fileURLToPath(import.meta.url)
const LAB = 'benchcp'
const IDLE = ['sh', '-c', 'trap "exit 0" TERM; sleep infinity & wait']
/** etcd's ports, on the loopback of h1's namespace (the lab's own: nothing else listens there). */
const ETCD_CLIENT_PORT = 23790
const ETCD_PEER_PORT = 23800

// ---------------------------------------------------------------------------------------------
// The writer: runs inside h1's namespace (`--writer PLAN`), prints one JSON line.

interface WriterPlan {
  readonly target: 'etcd' | 'weft'
  readonly concurrency: number
  readonly writes: number
  readonly warmup: number
  /** A tag making every value of this run new (a write that changes nothing is never logged). */
  readonly tag: string
  /** weft: h1's netd state directory (its membership holds the manager certificate), and where the manager listens. */
  readonly stateDir?: string
  readonly manager?: { readonly host: string, readonly port: number }
}

interface WriterResult {
  readonly ms: number
  readonly writes: number
  /** Entries committed while the measured writes ran: etcd's revision, or the manager's state index, after − before. */
  readonly committed: number
  readonly p50: number
  readonly p99: number
}

/** Runs `total` operations with `concurrency` loops; returns each one's latency in ms. */
async function drive (concurrency: number, total: number, op: (writer: number, i: number) => Promise<void>): Promise<number[]> {
  const latencies: number[] = []
  let issued = 0
  await Promise.all(Array.from({ length: concurrency }, async (_, writer) => {
    while (issued < total) {
      const i = issued++
      const start = performance.now()
      await op(writer, i)
      latencies.push(performance.now() - start)
    }
  }))
  return latencies
}

function percentile (sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
}

async function measure (plan: WriterPlan, op: (writer: number, i: number) => Promise<void>, index: () => Promise<number>): Promise<WriterResult> {
  await drive(plan.concurrency, plan.warmup, op)
  const before = await index()
  const start = performance.now()
  const latencies = await drive(plan.concurrency, plan.writes, async (writer, i) => await op(writer, plan.warmup + i))
  const ms = performance.now() - start
  const committed = await index() - before
  latencies.sort((a, b) => a - b)
  return { ms, writes: plan.writes, committed, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99) }
}

async function etcdWriter (plan: WriterPlan): Promise<WriterResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: plan.concurrency })
  const b64 = (s: string): string => Buffer.from(s).toString('base64')
  const post = async (path: string, body: object): Promise<{ header: { revision: string } }> => await new Promise((resolve, reject) => {
    const data = JSON.stringify(body)
    const request = http.request({ host: '127.0.0.1', port: ETCD_CLIENT_PORT, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        if (response.statusCode !== 200) reject(new Error(`etcd ${path}: HTTP ${response.statusCode}: ${text.slice(0, 300)}`))
        else resolve(JSON.parse(text) as { header: { revision: string } })
      })
      response.on('error', reject)
    })
    request.on('error', reject)
    request.end(data)
  })
  // A revision counts every put: the store's index.
  const revision = async (): Promise<number> => Number((await post('/v3/kv/range', { key: b64('bench/') })).header.revision)
  const value = 'x'.repeat(48)
  const result = await measure(plan, async (writer, i) => { await post('/v3/kv/put', { key: b64(`bench/${plan.tag}/${writer}/${i}`), value: b64(`${value}${i}`) }) }, revision)
  agent.destroy()
  return result
}

async function weftWriter (plan: WriterPlan): Promise<WriterResult> {
  const membership = await loadMembership(plan.stateDir!)
  if (membership === undefined) throw new Error(`no swarm membership in ${plan.stateDir}`)
  const clients: RpcClient[] = await Promise.all(Array.from({ length: plan.concurrency }, async () => await connectNode({ ...plan.manager!, credentials: membership.credentials })))
  try {
    const snapshot = async (): Promise<ClusterSnapshot> => await clients[0]!.call<ClusterSnapshot>('control', { op: 'state' })
    const nodes = Object.keys((await snapshot()).state.nodes).sort()
    return await measure(plan, async (writer, i) => {
      await clients[writer]!.call('control', {
        op: 'propose',
        command: { type: 'node.update', node: nodes[writer % nodes.length]!, labelsAdd: { bench: `${plan.tag}-${i}` } }
      })
    }, async () => (await snapshot()).state.index)
  } finally {
    await Promise.all(clients.map(async (c) => await c.close()))
  }
}

async function waitForEtcd (): Promise<void> {
  const deadline = Date.now() + 15_000
  for (;;) {
    const healthy = await new Promise<boolean>((resolve) => {
      http.get({ host: '127.0.0.1', port: ETCD_CLIENT_PORT, path: '/health' }, (response) => {
        let text = ''
        response.on('data', (chunk: Buffer) => { text += chunk.toString() })
        response.on('end', () => resolve(response.statusCode === 200 && text.includes('true')))
      }).on('error', () => resolve(false))
    })
    if (healthy) return
    if (Date.now() > deadline) throw new Error('etcd was not healthy within 15 s')
    await sleep(100)
  }
}

const { values } = parseArgs({
  options: {
    replicas: { type: 'string', default: '30' },
    writes: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '1,16,64' },
    rounds: { type: 'string', default: '3' },
    'skip-schedule': { type: 'boolean', default: false },
    'skip-writes': { type: 'boolean', default: false },
    writer: { type: 'string' },
    'wait-etcd': { type: 'boolean', default: false }
  }
})

if (values['wait-etcd']) {
  await waitForEtcd()
  process.exit(0)
}
if (values.writer !== undefined) {
  const plan = JSON.parse(values.writer) as WriterPlan
  const result = plan.target === 'etcd' ? await etcdWriter(plan) : await weftWriter(plan)
  process.stdout.write(`${JSON.stringify(result)}\n`)
  process.exit(0)
}

// ---------------------------------------------------------------------------------------------
// The bench.

const counts = values.replicas.split(',').map(Number)
const concurrencies = values.concurrency.split(',').map(Number)
const writes = Number(values.writes)
const rounds = Number(values.rounds)
for (const n of [...counts, ...concurrencies, writes, rounds]) {
  if (!Number.isInteger(n) || n < 1) throw new Error('--replicas, --concurrency, --writes and --rounds take positive integers')
}
if (process.getuid?.() !== 0) throw new Error('bench/control-plane needs root (it creates a lab of network namespaces)')

let etcd: ChildProcess | null = null
let etcdDir: string | null = null
let cleaning: Promise<void> | null = null

async function stopEtcd (): Promise<void> {
  const child = etcd
  etcd = null
  if (child !== null && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    await Promise.race([exited, sleep(5000).then(() => child.kill('SIGKILL'))])
    await exited
  }
  if (etcdDir !== null) await rm(etcdDir, { recursive: true, force: true })
  etcdDir = null
}

async function cleanup (): Promise<void> {
  cleaning ??= (async () => {
    await stopEtcd().catch((error: unknown) => process.stderr.write(`bench/control-plane: stopping etcd: ${(error as Error).message}\n`))
    await labDown(LAB)
  })()
  await cleaning
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`bench/control-plane: ${signal}, cleaning up\n`)
    void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
  })
}

async function weft (lab: Lab, ...args: string[]): Promise<string> {
  const result = await lab.exec('h1', ['weft', ...args])
  if (result.code !== 0) throw new Error(`weft ${args.join(' ')}: ${result.stderr}`)
  return result.stdout
}

const jsonLines = <T>(text: string): T[] => text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as T)

async function scheduling (lab: Lab): Promise<string[]> {
  await weft(lab, 'network', 'create', 'benchnet')
  const rows: string[] = []
  for (const n of counts) {
    for (const network of [false, true]) {
      const name = `b${n}${network ? 'net' : ''}`
      const started = Date.now()
      await weft(lab, 'service', 'create', '--name', name, '--replicas', String(n), ...(network ? ['--network', 'benchnet'] : []), 'debian', ...IDLE)
      for (;;) {
        const ls = jsonLines<{ Name: string, Replicas: string }>(await weft(lab, 'service', 'ls', '--format', 'json'))
        if (ls.find((s) => s.Name === name)?.Replicas === `${n}/${n}`) break
        await sleep(500)
      }
      const seen = Date.now() - started
      const created = Date.parse((JSON.parse(await weft(lab, 'service', 'inspect', name)) as Array<{ CreatedAt: string }>)[0]!.CreatedAt)
      const tasks = jsonLines<{ StatusAt: string, DesiredState: string, Node: string }>(await weft(lab, 'service', 'ps', name, '--format', 'json')).filter((t) => t.DesiredState === 'Running')
      const last = Math.max(...tasks.map((t) => Date.parse(t.StatusAt)))
      const perNode = ['h1', 'h2', 'h3'].map((h) => tasks.filter((t) => t.Node === h).length).join('/')
      rows.push(`${String(n).padStart(8)}  ${network ? 'overlay' : 'none   '}  ${`${((last - created) / 1000).toFixed(2)} s`.padStart(17)}  ${`${(seen / 1000).toFixed(2)} s`.padStart(24)}  ${perNode}`)
      await weft(lab, 'service', 'rm', name)
      // Let the removed service's tasks stop and their namespaces go before the next run.
      for (;;) {
        const left = await Promise.all(lab.topology.hosts.filter((h) => h.role === 'node').map(async (h) => (await lab.exec(h.name, ['ip', 'netns', 'list'])).stdout.split('\n').filter((ns) => ns.startsWith(`${h.netns}-t-`)).length))
        if (left.every((count) => count === 0)) break
        await sleep(500)
      }
    }
  }
  await weft(lab, 'network', 'rm', 'benchnet')
  return [
    `service create --replicas N → N running, ${lab.topology.hosts.filter((h) => h.role === 'node').length} nodes (weft, measured)`,
    `${'replicas'.padStart(8)}  network  ${'manager\'s records'.padStart(17)}  ${'seen by a polling client'.padStart(24)}  tasks h1/h2/h3`,
    ...rows,
    'reference, NOT measured here (no Docker on this machine): Docker\'s published scale test of standalone Swarm 1.0',
    '  (the predecessor of swarm mode; Docker blog, "Scale Testing Docker Swarm to 30,000 Containers", Nov 2015):',
    '  scheduling delay of one `docker run` p50 230 ms, p90 250 ms, p99 400 ms; 1,000 nodes, 4-CPU manager.',
    '  No figure is published for swarm mode\'s `service create --replicas 30` → 30 running.'
  ]
}

async function fsOf (dir: string): Promise<string> {
  const types: Record<number, string> = { 0xef53: 'ext4', 0x01021994: 'tmpfs', 0x58465342: 'xfs', 0x9123683e: 'btrfs', 0x794c7630: 'overlayfs' }
  const type = (await statfs(dir)).type
  return types[type] ?? `fs 0x${type.toString(16)}`
}

interface Sample { etcd: WriterResult[], weft: WriterResult[] }

async function commits (lab: Lab): Promise<string[]> {
  const h1 = lab.hostDir('h1')
  const raftDir = join(managerDir(h1), 'raft')
  etcdDir = await mkdtemp(join(tmpdir(), 'weft-bench-etcd-'))
  const dataDir = join(etcdDir, 'data')
  const peer = `http://127.0.0.1:${ETCD_PEER_PORT}`
  const client = `http://127.0.0.1:${ETCD_CLIENT_PORT}`
  const stderr: string[] = []
  // `ip netns exec` execs etcd in place: the child's PID is etcd's.
  etcd = spawn('ip', ['netns', 'exec', lab.netns('h1'), 'etcd',
    '--name', 'bench', '--data-dir', dataDir,
    '--listen-client-urls', client, '--advertise-client-urls', client,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `bench=${peer}`, '--initial-cluster-state', 'new',
    '--logger', 'zap', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] })
  etcd.stderr!.on('data', (chunk: Buffer) => { stderr.push(chunk.toString()); if (stderr.length > 50) stderr.shift() })
  const ready = await lab.exec('h1', [process.execPath, SELF, '--wait-etcd'])
  if (ready.code !== 0) throw new Error(`etcd did not start: ${ready.stderr.trim()}\n${stderr.join('')}`)
  const version = (await lab.exec('h1', ['etcd', '--version'])).stdout.split('\n')[0]!.trim()

  const [etcdFs, raftFs, etcdDev, raftDev] = await Promise.all([fsOf(dataDir), fsOf(raftDir), stat(dataDir).then((s) => s.dev), stat(raftDir).then((s) => s.dev)])
  const writer = async (plan: WriterPlan): Promise<WriterResult> => {
    const run = await lab.exec('h1', [process.execPath, SELF, '--writer', JSON.stringify(plan)])
    if (run.code !== 0) throw new Error(`the ${plan.target} writer failed: ${run.stderr.trim()}${plan.target === 'etcd' ? `\n${stderr.join('')}` : ''}`)
    return JSON.parse(run.stdout) as WriterResult
  }
  const samples = new Map<number, Sample>(concurrencies.map((c) => [c, { etcd: [], weft: [] }]))
  const warmup = Math.max(100, Math.floor(writes / 10))
  for (let round = 0; round < rounds; round++) {
    for (const [i, c] of concurrencies.entries()) {
      const order = (round + i) % 2 === 0 ? ['etcd', 'weft'] as const : ['weft', 'etcd'] as const
      for (const target of order) {
        const result = await writer({ target, concurrency: c, writes, warmup, tag: `r${round}c${c}`, stateDir: h1, manager: { host: lab.addr('h1'), port: 2377 } })
        if (result.committed < writes) throw new Error(`${target} committed ${result.committed} entries for ${writes} writes`)
        samples.get(c)![target].push(result)
      }
    }
  }
  await stopEtcd()

  const median = (list: WriterResult[]): WriterResult => [...list].sort((a, b) => a.writes / a.ms - b.writes / b.ms)[Math.floor(list.length / 2)]!
  const rate = (r: WriterResult): number => r.writes / r.ms * 1000
  const ms = (x: number): string => x < 10 ? x.toFixed(2) : x.toFixed(1)
  const rows = concurrencies.map((c) => {
    const e = median(samples.get(c)!.etcd)
    const w = median(samples.get(c)!.weft)
    return `${String(c).padStart(7)}  ${Math.round(rate(e)).toString().padStart(9)}  ${`${ms(e.p50)}/${ms(e.p99)}`.padStart(13)}  ${Math.round(rate(w)).toString().padStart(9)}  ${`${ms(w.p50)}/${ms(w.p99)}`.padStart(13)}  ${(rate(w) / rate(e)).toFixed(2).padStart(6)}×`
  })
  const entries = (target: 'etcd' | 'weft'): string => [...samples.values()].flatMap((s) => s[target].map((r) => r.committed)).join(',')
  return [
    `committed changes per second, fsync on: ${writes} writes per run after ${warmup} unmeasured, median of ${rounds} rounds`,
    '  etcd: POST /v3/kv/put through its HTTP/JSON gateway, keep-alive, one connection per writer',
    `        (${version}, one member, 127.0.0.1 in h1's namespace, data dir on ${etcdFs})`,
    '  weft: control API `propose` of node.update (label-add) over the manager\'s mutual-TLS RPC, one connection per writer',
    `        (the manager in h1's netd, one-member Raft log on ${raftFs}${etcdDev === raftDev ? ', the same device as etcd\'s' : ', ANOTHER device than etcd\'s'})`,
    '  each answered once committed (fdatasync) and applied',
    `${'writers'.padStart(7)}  ${'etcd /s'.padStart(9)}  ${'p50/p99 ms'.padStart(13)}  ${'weft /s'.padStart(9)}  ${'p50/p99 ms'.padStart(13)}  ${'weft/etcd'.padStart(9)}`,
    ...rows,
    `  entries committed per run (etcd revisions: ${entries('etcd')}; manager index: ${entries('weft')})`
  ]
}

const out: string[] = []
try {
  await labDown(LAB)
  const lab = await labUp({ name: LAB, nodes: 3 })
  const init = await weft(lab, 'swarm', 'init', '--advertise-addr', lab.addr('h1'))
  const join = init.split('run the following command:\n\n')[1]!.split('\n\n')[0]!
  for (const host of ['h2', 'h3']) {
    const joined = await lab.exec(host, ['sh', '-c', join])
    if (joined.code !== 0) throw new Error(`${host} could not join: ${joined.stderr}`)
  }
  if (!values['skip-schedule']) {
    out.push(...await scheduling(lab), '')
    process.stdout.write(out.splice(0).join('\n') + '\n')
  }
  if (!values['skip-writes']) {
    out.push(...await commits(lab))
    process.stdout.write(out.splice(0).join('\n') + '\n')
  }
} finally {
  await cleanup()
}
