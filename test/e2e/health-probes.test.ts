/**
 * Health probes for real, as root: a throwaway namespace (weftlab-hp-*, removed in teardown)
 * with an address, servers inside it, tcp and http probes made from it, cmd probes in a task
 * the runtime starts, and the monitor turning a task healthy and unhealthy on real results.
 */
import t from 'tap'
import { requireRoot } from '../helpers/root.ts'
import { removeTaskLeftovers } from '../helpers/runtime-leftovers.ts'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { pino } from 'pino'
import { TaskRuntime } from '../../netd/runtime/runtime.ts'
import { HealthMonitor } from '../../netd/health/monitor.ts'
import { probeTargetOf, type ProbeTarget } from '../../netd/health/probe-target.ts'
import { findProbeTools, runProbe, type ProbeCheck } from '../../netd/health/probes.ts'
import type { HealthReport } from '../../netd/health/health-spec.ts'

const run = promisify(execFile)

requireRoot('the health probe e2e test', 'network namespaces, nsenter')

const PREFIX = `weftlab-hp-${process.pid.toString(36)}-`
const NS = `${PREFIX}a`
const IP = '192.0.2.10'
/** On the namespace's subnet, but nobody has it: a connect() waits for ARP and never completes in time. */
const NOBODY = '192.0.2.99'
const SERVER = join(import.meta.dirname, '../fixtures/health-server.ts')
const log = pino({ level: process.env.WEFT_TEST_LOG ?? 'silent' })
const scratch = await mkdtemp(join(tmpdir(), 'weft-hp-e2e-'))
const stateDir = join(scratch, 'state')
const servers = new Set<ChildProcess>()
let runtime: TaskRuntime | null = null

const running = (child: ChildProcess): boolean => child.pid !== undefined && child.exitCode === null && child.signalCode === null

async function cleanup (): Promise<void> {
  for (const server of servers) if (running(server)) process.kill(server.pid as number, 'SIGKILL')
  await runtime?.close({ stopTasks: true, graceMs: 200 }).catch(() => undefined)
  await removeTaskLeftovers(stateDir, PREFIX)
  await rm(scratch, { recursive: true, force: true })
}
t.teardown(cleanup)

try {
  await run('ip', ['netns', 'add', NS])
  await run('ip', ['-n', NS, 'link', 'set', 'lo', 'up'])
  // No dummy driver in this kernel: a veth pair, both ends in the namespace, the address on one.
  await run('ip', ['-n', NS, 'link', 'add', 'hp0', 'type', 'veth', 'peer', 'name', 'hp1'])
  await run('ip', ['-n', NS, 'addr', 'add', `${IP}/24`, 'dev', 'hp0'])
  await run('ip', ['-n', NS, 'link', 'set', 'hp0', 'up'])
  await run('ip', ['-n', NS, 'link', 'set', 'hp1', 'up'])
} catch (error) {
  // A top-level throw would end the process before tap runs the teardown.
  await cleanup()
  throw error
}

/** Starts the fixture server in the namespace; resolves with its port once it listens. */
async function startServer (mode: 'http' | 'hang'): Promise<{ port: number, stop: () => Promise<void> }> {
  const child = spawn('ip', ['netns', 'exec', NS, process.execPath, SERVER, mode, IP, '0'], { stdio: ['pipe', 'pipe', 'inherit'] })
  servers.add(child)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const match = /listening (\d+)/.exec(out)
      if (match !== null) resolve(Number(match[1]))
    })
    child.once('exit', (code) => reject(new Error(`health-server ${mode} exited with ${code}`)))
  })
  const stop = async (): Promise<void> => {
    // ip netns exec execs the server: this pid is the server itself.
    if (running(child)) process.kill(child.pid as number, 'SIGKILL')
    await exited
    servers.delete(child)
  }
  return { port, stop }
}

const tools = await findProbeTools()
const netTarget: ProbeTarget = { task: 'net', netns: NS, ip: IP, execTarget: () => Promise.reject(new Error('not a task')) }
const probe = (check: ProbeCheck, target: ProbeTarget = netTarget) => runProbe(check, target, { tools })

t.test('tcp and http probes from the namespace: healthy, then unhealthy once the server stops', async (t) => {
  const server = await startServer('http')
  t.match(await probe({ timeout: 2000, test: { kind: 'tcp', port: server.port } }), { exitCode: 0, output: `connected to ${IP}:${server.port}` })
  t.match(await probe({ timeout: 2000, test: { kind: 'http', port: server.port, path: '/healthz' } }), { exitCode: 0, output: /^HTTP 200 from http:\/\/192\.0\.2\.10:\d+\/healthz$/ })
  t.match(await probe({ timeout: 2000, test: { kind: 'http', port: server.port, path: '/moved' } }), { exitCode: 0, output: /^HTTP 302 / }, 'a redirect is healthy and not followed')
  t.match(await probe({ timeout: 2000, test: { kind: 'http', port: server.port, path: '/fail' } }), { exitCode: 1, output: /^HTTP 500 / })
  t.match(await probe({ timeout: 2000, test: { kind: 'http', port: server.port, path: '/nope' } }), { exitCode: 1, output: /^HTTP 404 / })

  await server.stop()
  const tcp = await probe({ timeout: 2000, test: { kind: 'tcp', port: server.port } })
  t.match(tcp, { exitCode: 1, output: /Connection refused/ })
  const http = await probe({ timeout: 2000, test: { kind: 'http', port: server.port, path: '/healthz' } })
  t.match(http, { exitCode: 1, output: /curl: \(7\)/ })
  t.ok(Date.parse(http.start) <= Date.parse(http.end))
})

t.test('the probes see the namespace only: a server on the host\'s loopback is not reachable', async (t) => {
  const host = createServer((socket) => socket.end())
  await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => host.close(() => resolve())))
  const { port } = host.address() as AddressInfo
  t.match(await probe({ timeout: 2000, test: { kind: 'tcp', port } }, { ...netTarget, ip: '127.0.0.1' }), { exitCode: 1, output: /Connection refused/ })
  t.match(await probe({ timeout: 2000, test: { kind: 'http', port, path: '/' } }, { ...netTarget, ip: '127.0.0.1' }), { exitCode: 1, output: /curl: \(7\)/ })
})

t.test('timeouts: a server that never answers, an address nobody has', async (t) => {
  const server = await startServer('hang')
  t.teardown(server.stop)
  t.match(await probe({ timeout: 2000, test: { kind: 'tcp', port: server.port } }), { exitCode: 0 }, 'tcp only needs the connection')
  let started = Date.now()
  const http = await probe({ timeout: 500, test: { kind: 'http', port: server.port, path: '/healthz' } })
  t.match(http, { exitCode: -1, output: 'timed out after 0.5s' })
  t.ok(Date.now() - started < 1500, `http gave up at its timeout (${Date.now() - started} ms)`)
  started = Date.now()
  const tcp = await probe({ timeout: 400, test: { kind: 'tcp', port: 80 } }, { ...netTarget, ip: NOBODY })
  t.match(tcp, { exitCode: -1, output: 'timed out after 0.4s' })
  t.ok(Date.now() - started < 1500, `tcp gave up at its timeout (${Date.now() - started} ms)`)
})

async function processesWith (marker: string): Promise<number[]> {
  const found: number[] = []
  for (const pid of (await readdir('/proc')).filter((e) => /^\d+$/.test(e))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes(marker)) found.push(Number(pid))
  }
  return found
}

t.test('cmd probes run in the task, as its user, and follow the task\'s state', async (t) => {
  runtime = new TaskRuntime({ stateDir, imagesDir: join(scratch, 'images'), log, pollMs: 200 })
  // World-searchable, so the task's user (nobody) can see the file appear.
  const shared = join(scratch, 'shared')
  await rm(shared, { recursive: true, force: true })
  await chmod(scratch, 0o755)
  await run('mkdir', ['-m', '755', shared])
  const ready = join(shared, 'ready')
  const task = `hp${process.pid.toString(36)}`
  const status = await runtime.start({ task, name: `web.1.${task}`, netns: NS, image: 'debian', command: ['sh', '-c', 'sleep 60'], user: 'nobody' })
  t.equal(status.state, 'running')
  const target = probeTargetOf(runtime, { task, netns: NS, ip: IP })
  const cmd = (command: string, timeout = 3000) => probe({ timeout, test: { kind: 'cmd', command } }, target)

  t.match(await cmd(`test -e ${ready}`), { exitCode: 1, output: '' })
  await writeFile(ready, '')
  t.match(await cmd(`test -e ${ready}`), { exitCode: 0 }, 'the same check turns healthy')

  const who = await cmd('id -u; tr "\\0" " " < /proc/1/cmdline; echo; ip -o -4 addr show dev hp0')
  t.equal(who.exitCode, 0)
  t.match(who.output, /^65534\nsh -c sleep 60 \n/, 'as the task\'s user, in its PID namespace')
  t.match(who.output, /inet 192\.0\.2\.10\/24/, 'in its network namespace')

  t.match(await cmd('echo broken >&2; exit 3'), { exitCode: 1, output: 'broken\n[exit status 3]' })

  const marker = `${33 + (process.pid % 1000) / 1000}`
  const started = Date.now()
  t.match(await cmd(`sleep ${marker}`, 400), { exitCode: -1, output: 'timed out after 0.4s' })
  t.ok(Date.now() - started < 1500)
  await sleep(100)
  t.same(await processesWith(`sleep ${marker}`), [], 'the timed-out check is killed, inside the task\'s PID namespace too')

  await runtime.stop(task, 200)
  t.match(await cmd('true'), { exitCode: -1, output: /cannot enter task: .*not running/ })
})

t.test('the monitor turns a task healthy and unhealthy on real http probes', async (t) => {
  const server = await startServer('http')
  t.teardown(server.stop)
  const monitor = new HealthMonitor({ log })
  t.teardown(() => monitor.close())
  const changes: string[] = []
  const reached = (status: string) => new Promise<HealthReport>((resolve) => {
    monitor.onChange((_task, report) => { if (report.status === status) resolve(report) })
  })
  monitor.onChange((_task, report, previous) => changes.push(`${previous.status}→${report.status}`))
  const healthy = reached('healthy')
  monitor.watch('net', { test: { kind: 'http', port: server.port, path: '/healthz' }, interval: 100, timeout: 1000, retries: 2 }, netTarget, Date.now())
  // The monitor's timers are unref'd: a timer of the test's own keeps the process up while it waits.
  const keepAlive = setInterval(() => undefined, 1000)
  t.teardown(() => clearInterval(keepAlive))
  t.match(await healthy, { status: 'healthy', failingStreak: 0 })
  const unhealthy = reached('unhealthy')
  await server.stop()
  const report = await unhealthy
  t.match(report, { status: 'unhealthy', failingStreak: 2 })
  t.match(report.log.at(-1), { exitCode: 1, output: /curl: \(7\)/ })
  t.same(changes, ['starting→healthy', 'healthy→unhealthy'])
  await monitor.close()
})
