/**
 * lb on the real kernel, no daemons: throwaway namespaces on one bridge, the
 * LbProgrammer applying compiled rules, real TCP and UDP.
 *
 *   sw   the switch: br0 with every other namespace's veth on it (10.77.0.0/24, the ingress network)
 *   c    task c1, the client, 10.77.0.10
 *   b1   task b1, a backend, 10.77.0.21 (local to this node: host-mode publishing goes to it)
 *   b2   10.77.0.22, b3 10.77.0.23: backends (remote in the document)
 *   h    the node's host namespace: the ingress leg wleg0 10.77.0.2 on the switch, ext0 192.168.99.1
 *   o    an outside client, 192.168.99.2, routed through h
 *
 * Service web (rr): VIP 10.77.0.100 on b1..b3, port 7000; publishes 8080/tcp (ingress mode),
 * 8081/tcp (host mode), 8082/udp (ingress mode), all to 7000. Service idle: VIP 10.77.0.102, no task.
 * Every namespace is named weftlab-lbdev-<pid>-<name> and deleted in teardown.
 */
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import path from 'node:path'
import pino from 'pino'
import { execIn } from '../helpers/lab.ts'
import { parseDesiredState, type DesiredStateInput } from '../../netd/desired-state.ts'
import { lbSpec, type LbSpec } from '../../lb/spec.ts'
import { LbProgrammer } from '../../lb/programmer.ts'
import { realRunner } from '../../lb/runner.ts'
import { canonical, compileHost, compileTask } from '../../lb/ruleset.ts'
import { run } from '../../lb/exec.ts'

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root: creates network namespaces and nft tables')
  process.exit(0)
}

const PROBE = path.resolve(import.meta.dirname, '../fixtures/net-probe.ts')
const PREFIX = `weftlab-lbdev-${process.pid}-`
const ns = (name: string): string => `${PREFIX}${name}`
const log = pino({ level: 'silent' })
const must = async (argv: string[]): Promise<string> => {
  const result = await run(argv)
  if (result.code !== 0) throw new Error(`${argv.join(' ')}: ${result.stderr.trim()}`)
  return result.stdout
}

// ---------------------------------------------------------------------------
// Topology.

const NAMES = ['sw', 'c', 'b1', 'b2', 'b3', 'h', 'o']
t.teardown(async () => {
  for (const name of NAMES) await run(['ip', 'netns', 'del', ns(name)])
})
for (const name of NAMES) {
  await must(['ip', 'netns', 'add', ns(name)])
  await must(['ip', '-n', ns(name), 'link', 'set', 'lo', 'up'])
}
await must(['ip', '-n', ns('sw'), 'link', 'add', 'br0', 'type', 'bridge'])
await must(['ip', '-n', ns('sw'), 'link', 'set', 'br0', 'up'])
/** A veth from `name` (as `ifname`, with `address`) to a port of the switch. */
async function plug (name: string, ifname: string, address: string): Promise<void> {
  await must(['ip', 'link', 'add', ifname, 'netns', ns(name), 'type', 'veth', 'peer', 'name', `p-${name}`, 'netns', ns('sw')])
  await must(['ip', '-n', ns('sw'), 'link', 'set', `p-${name}`, 'master', 'br0', 'up'])
  await must(['ip', '-n', ns(name), 'addr', 'add', address, 'dev', ifname])
  await must(['ip', '-n', ns(name), 'link', 'set', ifname, 'up'])
}
await plug('c', 'eth0', '10.77.0.10/24')
await plug('b1', 'eth0', '10.77.0.21/24')
await plug('b2', 'eth0', '10.77.0.22/24')
await plug('b3', 'eth0', '10.77.0.23/24')
await plug('h', 'wleg0', '10.77.0.2/24')
await must(['ip', 'link', 'add', 'ext0', 'netns', ns('h'), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns('o')])
await must(['ip', '-n', ns('h'), 'addr', 'add', '192.168.99.1/24', 'dev', 'ext0'])
await must(['ip', '-n', ns('h'), 'link', 'set', 'ext0', 'up'])
await must(['ip', '-n', ns('o'), 'addr', 'add', '192.168.99.2/24', 'dev', 'eth0'])
await must(['ip', '-n', ns('o'), 'link', 'set', 'eth0', 'up'])
await must(['ip', '-n', ns('o'), 'route', 'add', 'default', 'via', '192.168.99.1'])
// host mode keeps the client address: the local task answers it through the leg (netd's route in real life).
await must(['ip', '-n', ns('b1'), 'route', 'add', '192.168.99.0/24', 'via', '10.77.0.2'])

const servers: ChildProcess[] = []
t.teardown(() => { for (const s of servers) if (s.exitCode === null) s.kill('SIGKILL') })
for (const name of ['b1', 'b2', 'b3']) {
  const child = spawn('ip', ['netns', 'exec', ns(name), process.execPath, PROBE, 'serve', name, '7000'], { stdio: ['ignore', 'pipe', 'inherit'] })
  servers.push(child)
  const [chunk] = await once(child.stdout!, 'data') as [Buffer]
  if (!chunk.toString().includes('listening')) throw new Error(`server in ${name} did not start`)
}

// ---------------------------------------------------------------------------
// The document and the programmer.

interface Health { b1?: boolean, b2?: boolean, b3?: boolean }
function spec (health: Health = {}, scheduler: 'rr' | 'sh' = 'rr', without: string[] = []): LbSpec {
  const backend = (task: 'b1' | 'b2' | 'b3', last: number) =>
    ({ network: 'ing', ip: `10.77.0.${last}`, mac: `02:42:0a:4d:00:${last.toString(16)}`, task, service: 'web', healthy: health[task] ?? true })
  const input: DesiredStateInput = {
    version: 1,
    revision: 1,
    networks: [{ id: 'ing', name: 'ingress', subnet: '10.77.0.0/24', gateway: '10.77.0.1', vni: 4096, ingress: true }],
    endpoints: [
      { task: 'c1', network: 'ing', ip: '10.77.0.10', mac: '02:42:0a:4d:00:0a' },
      ...(without.includes('b1') ? [] : [backend('b1', 21)])
    ],
    remoteEndpoints: [backend('b2', 22), backend('b3', 23)].filter((e) => !without.includes(e.task)).map((e) => ({ ...e, node: '192.168.5.2' })),
    services: [
      {
        id: 'web',
        name: 'web',
        scheduler,
        networks: [{ network: 'ing', vip: '10.77.0.100' }],
        ports: [
          { protocol: 'tcp', target: 7000, published: 8080 },
          { protocol: 'tcp', target: 7000, published: 8081, mode: 'host' },
          { protocol: 'udp', target: 7000, published: 8082 }
        ]
      },
      { id: 'idle', name: 'idle', networks: [{ network: 'ing', vip: '10.77.0.102' }] }
    ],
    ingress: { network: 'ing', ip: '10.77.0.2', mac: '02:42:0a:4d:00:02' }
  }
  const taskNs: Record<string, string> = { c1: ns('c'), b1: ns('b1') }
  return lbSpec(parseDesiredState(input), { taskNetns: (task) => taskNs[task]!, ingressLeg: { ifname: 'wleg0', ip: '10.77.0.2' } })
}

const programmer = (): LbProgrammer => new LbProgrammer({ log, hostNamespace: ns('h'), tcpEstablishedTimeout: 600 })
let lb = programmer()
t.teardown(async () => { await lb.close(true) })

async function probe (from: string, ...args: string[]): Promise<string> {
  const result = await execIn(ns(from), [process.execPath, PROBE, ...args])
  return result.stdout.trim()
}
const spread = async (from: string, protocol: 'tcp' | 'udp', host: string, port: number, count: number) =>
  JSON.parse(await probe(from, 'spread', protocol, host, String(port), String(count))) as { ids: Record<string, number>, peers: string[], failures: number }

async function conntrackCount (name: string, ...filter: string[]): Promise<number> {
  const result = await execIn(ns(name), ['conntrack', '-L', ...filter])
  return result.stdout.split('\n').filter((l) => l.trim() !== '').length
}

// ---------------------------------------------------------------------------

t.test('first sync programs the task namespaces and the host, then a second one does nothing', async (t) => {
  const first = await lb.sync(spec())
  t.same(first.errors, [])
  t.equal(first.transactions, 3, 'c, b1 (a local task too) and h')
  t.same(await lb.sync(spec()), { namespaces: 3, transactions: 0, errors: [] })
  const sysctls = await execIn(ns('c'), ['sysctl', '-n', 'net.ipv4.tcp_timestamps', 'net.netfilter.nf_conntrack_tcp_timeout_established'])
  t.same(sysctls.stdout.trim().split('\n'), ['2', '600'])
  const root = await run(['sysctl', '-n', 'net.netfilter.nf_conntrack_tcp_timeout_established'])
  t.not(root.stdout.trim(), '600', 'the conntrack timeout is per namespace: the root one is untouched')
  t.equal((await execIn(ns('h'), ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim(), '1')
})

t.test('the kernel lists back exactly the compiled model', async (t) => {
  t.same(canonical((await realRunner.list(ns('c'))).table), canonical(compileTask(spec().tasks.get(ns('c'))!)))
  t.same(canonical((await realRunner.list(ns('h'))).table), canonical(compileHost(spec().host)))
  t.same(await lb.check(spec()), [])
})

/** Every backend took part, none more than twice its share: rr picks at random per connection (layout.ts). */
function spreadOver (t: Test, ids: Record<string, number>, backends: string[], count: number, what: string): void {
  t.same(Object.keys(ids).sort(), backends, `${what}: every backend answered`)
  t.equal(Object.values(ids).reduce((a, b) => a + b, 0), count, `${what}: every connection answered`)
  t.ok(Object.values(ids).every((n) => n <= (2 * count) / backends.length), `${what}: no backend took more than twice its share ${JSON.stringify(ids)}`)
}

t.test('rr: connections spread over the backends, which see the caller\'s own address', async (t) => {
  const tcp = await spread('c', 'tcp', '10.77.0.100', 7000, 60)
  spreadOver(t, tcp.ids, ['b1', 'b2', 'b3'], 60, 'TCP')
  t.same(tcp.peers, ['10.77.0.10'], 'no SNAT east-west')
  const udp = await spread('c', 'udp', '10.77.0.100', 7000, 60)
  spreadOver(t, udp.ids, ['b1', 'b2', 'b3'], 60, 'UDP, a new socket each')
})

t.test('a VIP with no healthy task rejects at once: TCP reset, ICMP port unreachable', async (t) => {
  const started = Date.now()
  const tcp = await execIn(ns('c'), [process.execPath, PROBE, 'tcp', '10.77.0.102', '7000'])
  t.equal(tcp.code, 1)
  t.match(tcp.stderr, /ECONNREFUSED/)
  t.ok(Date.now() - started < 2000, 'refused, not timed out')
  // The reject happens in the sender's own output path: send() fails with EPERM (the ICMP error follows).
  t.match(await probe('c', 'udp-repeat', '10.77.0.102', '7000', '1', '100'), /^error (send EPERM|ECONNREFUSED)$/)
})

t.test('an unhealthy backend: no new connections; its UDP flows move, its TCP connections stay', async (t) => {
  // An established TCP connection and a UDP flow (one socket), both to b3 if we ask enough times.
  const tcpFlow = spawn('ip', ['netns', 'exec', ns('c'), process.execPath, PROBE, 'idle', '10.77.0.100', '7000', '4'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const udpFlow = spawn('ip', ['netns', 'exec', ns('c'), process.execPath, PROBE, 'udp-repeat', '10.77.0.100', '7000', '16', '300'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { for (const p of [tcpFlow, udpFlow]) if (p.exitCode === null) p.kill('SIGKILL') })
  const udpReplies: string[] = []
  const udpDone = (async () => { for await (const line of createInterface({ input: udpFlow.stdout! })) udpReplies.push(line) })()
  while (udpReplies.length === 0) await new Promise((resolve) => setTimeout(resolve, 50))
  const udpBackend = udpReplies[0]! as 'b1' | 'b2' | 'b3'
  await new Promise((resolve) => setTimeout(resolve, 300))
  const tcpEntries = await conntrackCount('c', '-p', 'tcp', '--orig-dst', '10.77.0.100', '--state', 'ESTABLISHED')
  t.equal(tcpEntries, 1, 'the idle TCP connection is tracked')
  const tcpBackendLine = (await execIn(ns('c'), ['conntrack', '-L', '-p', 'tcp', '--orig-dst', '10.77.0.100', '--state', 'ESTABLISHED'])).stdout
  const tcpBackend = (/src=(10\.77\.0\.2\d) dst=10\.77\.0\.10/.exec(tcpBackendLine)?.[1] ?? '').replace('10.77.0.2', 'b') as 'b1' | 'b2' | 'b3'

  const result = await lb.sync(spec({ [udpBackend]: false, [tcpBackend]: false }))
  t.same(result.errors, [])
  const [tcpLine] = await Promise.all([
    (async () => { let out = ''; for await (const chunk of tcpFlow.stdout!) out += chunk; return out.trim() })(),
    udpDone
  ])
  t.match(tcpLine, new RegExp(`^${tcpBackend} 2 `), 'the TCP connection to the unhealthy task completed on the same connection')
  const after = udpReplies.slice(udpReplies.findIndex((r, i) => i > 2 && r !== udpBackend))
  t.ok(after.length >= 5 && after.every((r) => r !== udpBackend && r !== 'timeout'), `the UDP flow moved off ${udpBackend}: ${udpReplies.join(' ')}`)
  const fresh = await spread('c', 'tcp', '10.77.0.100', 7000, 12)
  t.notOk(Object.keys(fresh.ids).includes(udpBackend), 'new connections avoid the unhealthy task')
  await lb.sync(spec())
})

t.test('a removed backend: its TCP connections are deleted too; the others are untouched', async (t) => {
  const flows = [0, 1, 2, 3].map(() => spawn('ip', ['netns', 'exec', ns('c'), process.execPath, PROBE, 'idle', '10.77.0.100', '7000', '3'], { stdio: ['ignore', 'pipe', 'pipe'] }))
  t.teardown(() => { for (const p of flows) if (p.exitCode === null) p.kill('SIGKILL') })
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const established = ['--orig-dst', '10.77.0.100', '--state', 'ESTABLISHED']
  t.equal(await conntrackCount('c', '-p', 'tcp', ...established), 4)
  // The task with the most of them leaves (rr picks at random).
  const per = await Promise.all([21, 22, 23].map(async (last) => await conntrackCount('c', '-p', 'tcp', ...established, '--reply-src', `10.77.0.${last}`)))
  const most = per.indexOf(Math.max(...per))
  const leaving = `b${most + 1}`
  await lb.sync(spec({}, 'rr', [leaving]))
  t.equal(await conntrackCount('c', '-p', 'tcp', '--orig-dst', '10.77.0.100', '--reply-src', `10.77.0.${21 + most}`), 0, `${leaving}'s entries are gone`)
  t.equal(await conntrackCount('c', '-p', 'tcp', ...established), 4 - per[most]!, 'the other tasks\' connections stay')
  const outcomes = await Promise.all(flows.map(async (p) => { const [code] = await once(p, 'exit') as [number]; return code }))
  t.equal(outcomes.filter((code) => code !== 0).length, per[most], 'exactly the connections to the removed task fail')
  t.same(canonical((await realRunner.list(ns('c'))).table), canonical(compileTask(spec({}, 'rr', [leaving]).tasks.get(ns('c'))!)),
    'the delta applied to the real old ruleset gives the real new one')
  await lb.sync(spec())
})

t.test('sh: one client sticks to one backend; switching schedulers is one transaction per namespace', async (t) => {
  const result = await lb.sync(spec({}, 'sh'))
  t.equal(result.transactions, 3)
  const tcp = await spread('c', 'tcp', '10.77.0.100', 7000, 12)
  t.equal(Object.keys(tcp.ids).length, 1, JSON.stringify(tcp.ids))
  t.same(canonical((await realRunner.list(ns('c'))).table), canonical(compileTask(spec({}, 'sh').tasks.get(ns('c'))!)))
  await lb.sync(spec())
})

t.test('routing mesh: a published port on the node balances over the ingress network, masqueraded', async (t) => {
  const tcp = await spread('o', 'tcp', '192.168.99.1', 8080, 60)
  spreadOver(t, tcp.ids, ['b1', 'b2', 'b3'], 60, 'TCP')
  t.same(tcp.peers, ['10.77.0.2'], 'the backends see the leg\'s address')
  const udp = await spread('o', 'udp', '192.168.99.1', 8082, 30)
  spreadOver(t, udp.ids, ['b1', 'b2', 'b3'], 30, 'UDP')
  const local = await spread('h', 'tcp', '192.168.99.1', 8080, 3)
  t.equal(local.failures, 0, 'the node reaches its own published port')
})

t.test('host mode: only the local task, client address kept', async (t) => {
  const tcp = await spread('o', 'tcp', '192.168.99.1', 8081, 6)
  t.same(tcp.ids, { b1: 6 })
  t.same(tcp.peers, ['192.168.99.2'])
})

t.test('counters: connections, packets and bytes per backend', async (t) => {
  const before = (await lb.stats('web')).find((r) => r.netns === ns('c'))!
  const tcp = await spread('c', 'tcp', '10.77.0.100', 7000, 12)
  const after = (await lb.stats('web')).find((r) => r.netns === ns('c'))!
  for (const [i, b] of after.backends.entries()) {
    const task = b.task!
    const made = tcp.ids[task] ?? 0
    t.equal(b.connections - before.backends[i]!.connections, made, `${b.address}: ${made} new connections, as its task answered`)
    if (made > 0) t.ok(b.packetsIn > before.backends[i]!.packetsIn && b.bytesOut > before.backends[i]!.bytesOut, `${b.address}: packets both ways`)
  }
  const mesh = (await lb.stats('web')).find((r) => r.netns === ns('h') && r.frontend === 'tcp 8080')!
  // 60 from outside and 3 from the node to 8080, and the 6 to 8081 (host mode): b1:7000 is one backend
  // of both published ports, and the host's counters are per backend.
  t.equal(mesh.backends.reduce((n, b) => n + b.connections, 0), 69, 'the routing mesh counts too')
})

t.test('a restarted programmer adopts the rules without a transaction', async (t) => {
  lb = programmer()
  t.same(await lb.sync(spec()), { namespaces: 3, transactions: 0, errors: [] })
  const tcp = await spread('c', 'tcp', '10.77.0.100', 7000, 3)
  t.equal(tcp.failures, 0)
})

t.test('close(cleanup) deletes every table it made', async (t) => {
  t.same(await lb.close(true), [])
  for (const name of ['c', 'b1', 'h']) t.equal((await realRunner.list(ns(name))).table, null, name)
})
