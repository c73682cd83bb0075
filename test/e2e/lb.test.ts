/**
 * lb end to end: a lab of three hosts and an outside client, services with
 * VIPs on an overlay network and ports published through the routing mesh,
 * real TCP/UDP servers as tasks, real clients, netd driving nftables.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { startLab, execIn } from '../helpers/lab.ts'
import { OverlayCluster, PROBE, serve, type TaskSpec } from '../helpers/overlay.ts'
import type { ServiceInput } from '../../netd/desired-state.ts'

const HOSTS = ['h1', 'h2', 'h3']
const root = t
const lab = await startLab(t, { nodes: 3, netdArgs: ['--reconcile-interval', '0'] })
const cluster = new OverlayCluster(lab, HOSTS)
cluster.networks = [
  { id: 'app', name: 'app', subnet: '10.40.0.0/24', gateway: '10.40.0.1', vni: 4401 },
  { id: 'ingress', name: 'ingress', subnet: '10.255.0.0/24', gateway: '10.255.0.1', vni: 4400, ingress: true }
]
cluster.ingress = { network: 'ingress', ips: { h1: '10.255.0.2', h2: '10.255.0.3', h3: '10.255.0.4' } }
const WEB_VIP = '10.40.0.2'
const STICKY_VIP = '10.40.0.3'
const EMPTY_VIP = '10.40.0.4'
const PORT = '7000'
const services: ServiceInput[] = [
  {
    id: 'web',
    name: 'web',
    networks: [{ network: 'app', vip: WEB_VIP }, { network: 'ingress', vip: '10.255.0.10' }],
    ports: [{ protocol: 'tcp', target: 7000, published: 8080 }, { protocol: 'udp', target: 7000, published: 8080 }]
  },
  { id: 'sticky', name: 'sticky', scheduler: 'sh', networks: [{ network: 'app', vip: STICKY_VIP }] },
  { id: 'empty', name: 'empty', networks: [{ network: 'app', vip: EMPTY_VIP }] },
  {
    id: 'hostsvc',
    name: 'hostsvc',
    networks: [{ network: 'ingress', vip: '10.255.0.11' }],
    ports: [{ protocol: 'tcp', target: 7000, published: 9090, mode: 'host' }]
  }
]
cluster.services = services
const task = (name: string, host: string, service: string | undefined, ...ips: Array<[string, string]>): TaskSpec[] =>
  ips.map(([network, ip]) => ({ task: name, network, ip, host, ...(service ? { service, name: `${service}.${name}` } : {}) }))
cluster.tasks = [
  ...task('c1', 'h1', undefined, ['app', '10.40.0.11']),
  ...task('c2', 'h2', undefined, ['app', '10.40.0.12']),
  ...task('c3', 'h3', undefined, ['app', '10.40.0.13']),
  // h3 runs no web task: the routing mesh must still answer there.
  ...task('w1', 'h1', 'web', ['app', '10.40.0.21'], ['ingress', '10.255.0.21']),
  ...task('w2', 'h2', 'web', ['app', '10.40.0.22'], ['ingress', '10.255.0.22']),
  ...task('w3', 'h2', 'web', ['app', '10.40.0.23'], ['ingress', '10.255.0.23']),
  ...task('s1', 'h2', 'sticky', ['app', '10.40.0.31']),
  ...task('s2', 'h3', 'sticky', ['app', '10.40.0.32']),
  ...task('hs1', 'h2', 'hostsvc', ['ingress', '10.255.0.31'])
]
await cluster.apply()
for (const name of ['w1', 'w2', 'w3', 's1', 's2', 'hs1']) await serve(t, cluster, name, name, Number(PORT))

const setHealth = async (name: string, healthy: boolean): Promise<void> => {
  cluster.tasks = cluster.tasks.map((x) => x.task === name ? { ...x, healthy } : x)
  await cluster.apply()
}

interface Spread { ids: Record<string, number>, peers: string[], failures: number }
const spread = async (from: string, protocol: 'tcp' | 'udp', host: string, port: string, count: number): Promise<Spread> => {
  const result = await cluster.probe(from, 'spread', protocol, host, port, String(count))
  if (result.code !== 0) throw new Error(`spread from ${from}: ${result.stderr}`)
  return JSON.parse(result.stdout) as Spread
}
const fromOutside = async (...args: string[]) => await lab.exec('outside', [process.execPath, PROBE, ...args])

t.test('task namespaces are prepared for balancing', async (t) => {
  const timestamps = await cluster.inTask('c1', ['cat', '/proc/sys/net/ipv4/tcp_timestamps'])
  t.equal(timestamps.stdout.trim(), '2', 'tcp_timestamps=2: no PAWS rejects when a VIP and a direct path reach one backend')
})

t.test('a VIP spreads connections over every backend on every node; each backend sees the caller', async (t) => {
  for (const [client, ip] of [['c1', '10.40.0.11'], ['c2', '10.40.0.12'], ['c3', '10.40.0.13']] as const) {
    const result = await spread(client, 'tcp', WEB_VIP, PORT, 60)
    t.equal(result.failures, 0, `${client}: every connection answered`)
    t.same(Object.keys(result.ids).sort(), ['w1', 'w2', 'w3'], `${client}: all three backends, on two nodes (${JSON.stringify(result.ids)})`)
    for (const count of Object.values(result.ids)) t.ok(count >= 8, `${client}: each backend gets a fair share (${count} of 60)`)
    t.same(result.peers, [ip], `${client}: the backends see the calling task's own address, not a NAT address`)
  }
})

t.test('UDP through a VIP is balanced per flow', async (t) => {
  const result = await spread('c1', 'udp', WEB_VIP, PORT, 30)
  t.equal(result.failures, 0)
  t.ok(Object.keys(result.ids).length >= 2, `datagrams from new sockets reach several backends (${JSON.stringify(result.ids)})`)
  t.same(result.peers, ['10.40.0.11'])
})

t.test('sh (client-IP affinity) sends one client to one backend', async (t) => {
  const result = await spread('c1', 'tcp', STICKY_VIP, PORT, 20)
  t.equal(result.failures, 0)
  t.equal(Object.keys(result.ids).length, 1, `every connection of c1 lands on one backend (${JSON.stringify(result.ids)})`)
})

t.test('a VIP without a healthy task rejects at once', async (t) => {
  const started = Date.now()
  const tcp = await cluster.probe('c1', 'tcp', EMPTY_VIP, PORT)
  t.not(tcp.code, 0)
  t.match(tcp.stderr, /ECONNREFUSED/, 'TCP is reset')
  t.ok(Date.now() - started < 1500, `within ${Date.now() - started} ms, not after a timeout`)
  const udp = await cluster.probe('c1', 'udp-repeat', EMPTY_VIP, PORT, '1', '200')
  // Rejected on the way out of the caller's own namespace: the send fails at once (EPERM), or an ICMP port unreachable comes back.
  t.match(udp.stdout, /ECONNREFUSED|EPERM/, `UDP is refused at once: ${udp.stdout}`)
})

t.test('an idle connection through a VIP outlives a scaled IPVS timeout', async (t) => {
  // IPVS drops idle TCP after 900 s; scaled by 1/300 that is 3 s. conntrack keeps it for the kernel's 432000 s.
  const idle = await cluster.probe('c1', 'idle', WEB_VIP, PORT, '4')
  t.equal(idle.code, 0, idle.stderr)
  t.match(idle.stdout, /^w\d 2 10\.40\.0\.11$/m, `both bytes arrived on the one connection after 4 s of silence: ${idle.stdout}`)
})

t.test('the routing mesh publishes a port on every node, even one without a task', async (t) => {
  for (const host of HOSTS) {
    const result = await fromOutside('spread', 'tcp', lab.addr(host), '8080', '12')
    t.equal(result.code, 0, result.stderr)
    const spreadResult = JSON.parse(result.stdout) as Spread
    t.equal(spreadResult.failures, 0, `${host}:8080 answers every connection`)
    t.ok(Object.keys(spreadResult.ids).length >= 2, `${host}:8080 balances over tasks on several nodes (${JSON.stringify(spreadResult.ids)})`)
    t.ok(spreadResult.peers.every((peer) => peer.startsWith('10.255.0.')), `source NAT to an ingress address (${spreadResult.peers.join(', ')})`)
  }
  const udp = await fromOutside('udp', lab.addr('h3'), '8080')
  t.match(udp.stdout, /^w\d$/m, 'UDP is published too')
})

t.test('host mode publishes only where a task runs, and keeps the client address', async (t) => {
  const who = await fromOutside('who', lab.addr('h2'), '9090')
  t.equal(who.stdout.trim(), `hs1 ${lab.addr('outside')}`, 'the task sees the outside client itself')
  const elsewhere = await fromOutside('tcp', lab.addr('h1'), '9090')
  t.not(elsewhere.code, 0, 'a node without a task of the service does not publish the port')
})

t.test('netd lb shows each VIP with its scheduler, backends, health and counters', async (t) => {
  const result = await lab.exec('h1', ['netd', 'lb', 'web', '--json'])
  t.equal(result.code, 0, result.stderr)
  const rows = JSON.parse(result.stdout) as Array<{ kind: string, frontend: string, scheduler: string, backends: Array<{ address: string, healthy: boolean, connections: number }> }>
  const vip = rows.find((row) => row.kind === 'vip' && row.frontend.includes(WEB_VIP))
  t.ok(vip, 'the web VIP is listed')
  t.same(vip?.backends.map((b) => b.address).sort(), ['10.40.0.21', '10.40.0.22', '10.40.0.23'])
  t.ok(vip?.backends.every((b) => b.healthy), 'all healthy')
  t.ok((vip?.backends ?? []).some((b) => b.connections > 0), 'connection counters count')
  const text = await lab.exec('h1', ['netd', 'lb'])
  t.match(text.stdout, /RemoteAddress:Port/, 'an ipvsadm-style table')
})

t.test('leaving tasks stop getting connections at once; in-flight transfers to the others finish', async (t) => {
  // Long transfers until each backend has one; a transfer's backend is the one whose count of
  // established connections from c2 grew when it started.
  const streams = new Map<string, Promise<{ code: number, stdout: string }>>()
  const extra: Array<Promise<unknown>> = []
  for (let attempt = 0; attempt < 30 && streams.size < 3; attempt++) {
    const before = await establishedBackends('c2')
    const probe = cluster.probe('c2', 'stream', WEB_VIP, PORT, '4')
    await sleep(150)
    const after = await establishedBackends('c2')
    const owner = [...after].find(([backend, count]) => count > (before.get(backend) ?? 0))?.[0]
    if (owner !== undefined && !streams.has(owner)) streams.set(owner, probe)
    else extra.push(probe)
  }
  t.equal(streams.size, 3, 'a transfer to each backend is running')
  await setHealth('w3', false)
  cluster.tasks = cluster.tasks.filter((x) => x.task !== 'w2')
  await cluster.apply()
  const after = await spread('c1', 'tcp', WEB_VIP, PORT, 20)
  t.same(Object.keys(after.ids), ['w1'], `new connections go to the remaining healthy task only (${JSON.stringify(after.ids)})`)
  const w1 = await streams.get('w1')
  t.equal(w1?.code, 0, `the transfer to w1 completed whole: ${w1?.stdout}`)
  const w3 = await streams.get('w3')
  t.equal(w3?.code, 0, `the transfer to unhealthy w3 may finish too (TCP conntrack kept): ${w3?.stdout}`)
  await Promise.all([streams.get('w2'), ...extra])
  await setHealth('w3', true)
})

/** Established connections from `client` to the web VIP, counted per backend task, from its conntrack table. */
async function establishedBackends (client: string): Promise<Map<string, number>> {
  const table = await cluster.inTask(client, ['conntrack', '-L', '-p', 'tcp', '--orig-dst', WEB_VIP, '--state', 'ESTABLISHED'])
  const names = new Map([['10.40.0.21', 'w1'], ['10.40.0.22', 'w2'], ['10.40.0.23', 'w3']])
  const counts = new Map<string, number>()
  // The reply tuple names the backend: `src=BACKEND dst=CLIENT`.
  for (const match of table.stdout.matchAll(/src=(10\.40\.0\.2\d) dst=10\.40\.0\.1\d/g)) {
    const name = names.get(match[1]!)
    if (name !== undefined) counts.set(name, (counts.get(name) ?? 0) + 1)
  }
  return counts
}

t.test('a UDP flow pointing at a task that turns unhealthy moves to another task', async (t) => {
  cluster.tasks = [...cluster.tasks, ...task('w2', 'h2', 'web', ['app', '10.40.0.22'], ['ingress', '10.255.0.22'])]
  await cluster.apply()
  // Serves to the end of the file, not of this subtest.
  await serve(root, cluster, 'w2', 'w2', Number(PORT))
  const child = spawn('ip', ['netns', 'exec', cluster.taskNetns('c3'), process.execPath, PROBE, 'udp-repeat', WEB_VIP, PORT, '30', '100'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const replies: string[] = []
  child.stdout!.on('data', (chunk: Buffer) => replies.push(...chunk.toString().trim().split('\n')))
  while (replies.length < 5) await sleep(50)
  const first = replies[0]!
  t.ok(replies.every((r) => r === first), `one flow, one backend (${replies.join(',')})`)
  await setHealth(first, false)
  await once(child, 'exit')
  const later = replies.slice(-10)
  t.ok(later.every((r) => r !== first && r !== 'timeout'), `after ${first} turned unhealthy its flow's conntrack entry went and the flow moved (${later.join(',')})`)
  await setHealth(first, true)
})

t.test('one endpoint change is a minimal nft transaction, never a flush', async (t) => {
  const monitor = spawn('ip', ['netns', 'exec', cluster.taskNetns('c1'), 'nft', 'monitor', 'ruleset'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { if (monitor.exitCode === null) monitor.kill('SIGKILL') })
  let events = ''
  monitor.stdout!.on('data', (chunk: Buffer) => { events += chunk.toString() })
  await sleep(300)
  await setHealth('w1', false)
  await sleep(300)
  await setHealth('w1', true)
  await sleep(300)
  monitor.kill('SIGKILL')
  const lines = events.trim().split('\n').filter((line) => line !== '' && !line.startsWith('#'))
  t.ok(lines.length > 0, 'the change reached the task namespace')
  t.same(lines.filter((line) => /flush|(add|delete) table|(add|delete) chain/.test(line)), [], `no flush, no table or chain rebuilt:\n${lines.join('\n')}`)
  const elements = lines.filter((line) => /^(add|delete) element /.test(line))
  t.same(elements.filter((line) => !line.includes(WEB_VIP)), [], 'every element changed is one of the web VIP\'s: no other service is touched')
})

t.test('netd check sees lb drift and reconcile repairs it; a restart changes nothing', async (t) => {
  await cluster.inTask('c1', ['nft', 'flush', 'map', 'ip', 'weft_lb', 'vip_slots'])
  const check = await lab.exec('h1', ['netd', 'check'])
  t.equal(check.code, 1, 'drift is an exit code')
  t.match(check.stdout, /lb: /, `lb drift is reported: ${check.stdout}`)
  await lab.exec('h1', ['netd', 'reconcile'])
  t.equal((await lab.exec('h1', ['netd', 'check'])).code, 0, 'repaired')
  // -s: without counters, which move with any packet.
  const before = await execIn(cluster.taskNetns('c1'), ['nft', '-s', 'list', 'table', 'ip', 'weft_lb'])
  await lab.stopNetd('h1', 'SIGKILL')
  await lab.startNetd('h1')
  const after = await execIn(cluster.taskNetns('c1'), ['nft', '-s', 'list', 'table', 'ip', 'weft_lb'])
  t.equal(after.stdout, before.stdout, 'a restarted netd re-adopts the rules as they are')
  const status = await cluster.client('h1').call<{ lastReconcile: { commands: number } }>('GET', '/status')
  t.equal(status.lastReconcile.commands, 0, 'the restarted netd changed no kernel object')
  const answered = await spread('c1', 'tcp', WEB_VIP, PORT, 6)
  t.equal(answered.failures, 0, `and the VIP still answers: ${JSON.stringify(answered)}`)
})
