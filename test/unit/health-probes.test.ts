/**
 * Probes without root: the argv each kind runs (pure), the capture of a process's output under a
 * timeout (plain local processes, no namespaces), and the results of probes that cannot run.
 * Real probes in a namespace are in test/e2e/health-probes.test.ts.
 */
import t from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { capture, DRAIN_MS } from '../../netd/health/capture.ts'
import { BoundedOutput, decodeTruncated, truncateOutput } from '../../netd/health/output.ts'
import { netnsPath, probeTargetOf, type ProbeTarget } from '../../netd/health/probe-target.ts'
import {
  cmdProbeArgv, createProbeRunner, httpProbeArgv, httpProbeUrl, isHealthyHttpStatus, PROBE_ENV, runProbe, tcpProbeArgv, timedOutMessage, type ProbeTools
} from '../../netd/health/probes.ts'
import type { ExecTarget } from '../../netd/runtime/exec.ts'

const tools: ProbeTools = {
  runtime: { sh: '/bin/sh', ip: '/sbin/ip', unshare: '/usr/bin/unshare', nsenter: '/usr/bin/nsenter', setpriv: '/usr/bin/setpriv', env: '/usr/bin/env', mount: '/bin/mount' },
  bash: '/bin/bash',
  curl: '/usr/bin/curl'
}

const exec: ExecTarget = {
  task: 't1', name: 'web.1.t1', init: { pid: 4242, startTime: '99' }, env: { PATH: '/usr/bin' },
  identity: { uid: 65534, gid: 65534, groups: [], workdir: '/srv' }
}

t.test('cmd: /bin/sh -c COMMAND through the chain of netd exec, as the task\'s user', async (t) => {
  t.same(cmdProbeArgv(exec, 'test -e /ready && echo ok', tools), [
    '/usr/bin/setpriv', '--regid', '65534', '--clear-groups', '--',
    '/usr/bin/nsenter', '--target', '4242', '--mount', '--uts', '--ipc', '--net', '--pid', '--root', '--wdns=/srv', '--setuid', '65534', '--',
    '/bin/sh', '-c', 'test -e /ready && echo ok'
  ])
})

t.test('tcp: bash connects from the task\'s network namespace only; address and port are arguments', async (t) => {
  t.same(tcpProbeArgv('weft-t1', '10.0.0.2', 8080, tools), [
    '/usr/bin/nsenter', '--net=/run/netns/weft-t1', '--', '/bin/bash', '-c', 'exec 3<>"/dev/tcp/$1/$2"', 'weft-health-tcp', '10.0.0.2', '8080'
  ])
})

t.test('http: curl from the task\'s network namespace, no proxy, no globbing, no redirects followed', async (t) => {
  const argv = httpProbeArgv('weft-t1', '10.0.0.2', 8080, '/healthz?full=[1]', 1500, tools)
  t.same(argv.slice(0, 4), ['/usr/bin/nsenter', '--net=/run/netns/weft-t1', '--', '/usr/bin/curl'])
  t.equal(argv[4], '-q', '-q must come first to skip .curlrc')
  t.ok(argv.includes('--globoff') && argv.includes('--noproxy'))
  t.notOk(argv.includes('--location') || argv.includes('-L'))
  t.equal(argv[argv.indexOf('--max-time') + 1], '1.5')
  t.equal(argv.at(-1), 'http://10.0.0.2:8080/healthz?full=[1]')
  t.equal(httpProbeUrl('fd00::2', 80, '/'), 'http://[fd00::2]:80/')
  t.notOk('http_proxy' in PROBE_ENV || 'HTTP_PROXY' in PROBE_ENV)
})

t.test('2xx and 3xx are healthy (kubelet\'s rule)', async (t) => {
  t.same([199, 200, 204, 301, 399, 400, 404, 500, 0].map(isHealthyHttpStatus), [false, true, true, true, true, false, false, false, false])
  t.equal(timedOutMessage(3000), 'timed out after 3s')
  t.equal(timedOutMessage(500), 'timed out after 0.5s')
})

t.test('namespace names never leave /run/netns', async (t) => {
  t.equal(netnsPath('weftlab-hp-1-a'), '/run/netns/weftlab-hp-1-a')
  for (const bad of ['', '.', '..', '../x', 'a/b', 'a b', '-n']) t.throws(() => netnsPath(bad), { code: 'NETD_ERR_HEALTH_CHECK' }, JSON.stringify(bad))
})

t.test('probeTargetOf: a runtime task\'s target asks the runtime for the exec target at each probe', async (t) => {
  const asked: string[] = []
  const runtime = { execTarget: async (task: string) => { asked.push(task); return exec } }
  const target = probeTargetOf(runtime, { task: 't1', netns: 'weft-t1', ip: '10.0.0.2' })
  t.match(target, { task: 't1', netns: 'weft-t1', ip: '10.0.0.2' })
  t.equal(await target.execTarget(), exec)
  await target.execTarget()
  t.same(asked, ['t1', 't1'])
  t.throws(() => probeTargetOf(runtime, { task: 't1', netns: 'weft-t1', ip: 'not-an-ip' }), { code: 'NETD_ERR_HEALTH_CHECK' })
})

t.test('output: the first bytes are kept, characters whole', async (t) => {
  const out = new BoundedOutput(8)
  out.push(Buffer.from('abcdef'))
  out.push(Buffer.from('ghé'))
  out.push(Buffer.from('more'))
  t.equal(out.text(), 'abcdefgh')
  const split = new BoundedOutput(8)
  split.push(Buffer.from('abcdefgé'))
  t.equal(split.text(), 'abcdefg', 'a character cut by the limit is dropped whole')
  t.equal(decodeTruncated(Buffer.from('ab'), 8), 'ab')
  t.equal(truncateOutput('héllo', 2), 'h')
})

async function processesWith (marker: string): Promise<number[]> {
  const found: number[] = []
  for (const pid of (await readdir('/proc')).filter((e) => /^\d+$/.test(e))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.split('\0').includes(marker)) found.push(Number(pid))
  }
  return found
}

t.test('capture: exit status and interleaved output', async (t) => {
  const out = new BoundedOutput()
  const outcome = await capture(['/bin/sh', '-c', 'echo out; echo err >&2; exit 3'], { env: PROBE_ENV, timeoutMs: 5000, stdout: out, stderr: out })
  t.same(outcome, { kind: 'exited', code: 3, signal: null })
  t.equal(out.text(), 'out\nerr\n')
})

t.test('capture: a timeout kills the whole process group, children too', async (t) => {
  const marker = `${31 + (process.pid % 1000) / 1000}`
  const out = new BoundedOutput()
  const started = Date.now()
  const outcome = await capture(['/bin/sh', '-c', `sleep ${marker} & echo started; wait`], { env: PROBE_ENV, timeoutMs: 300, stdout: out, stderr: out })
  t.same(outcome, { kind: 'timeout' })
  t.ok(Date.now() - started < 2000, 'returned at the timeout')
  t.equal(out.text(), 'started\n', 'output up to the timeout is kept')
  await sleep(100)
  t.same(await processesWith(marker), [], 'the background sleep is gone')
})

t.test('capture: an exited check\'s leftovers holding the output get DRAIN_MS, then are killed', async (t) => {
  const marker = `${32 + (process.pid % 1000) / 1000}`
  const out = new BoundedOutput()
  const started = Date.now()
  const outcome = await capture(['/bin/sh', '-c', `sleep ${marker} & echo early; exit 0`], { env: PROBE_ENV, timeoutMs: 5000, stdout: out, stderr: out })
  t.same(outcome, { kind: 'exited', code: 0, signal: null })
  t.ok(Date.now() - started < DRAIN_MS + 1000)
  t.equal(out.text(), 'early\n')
  await sleep(100)
  t.same(await processesWith(marker), [])
})

t.test('capture: an abort ends the probe at once', async (t) => {
  const controller = new AbortController()
  setTimeout(() => controller.abort(), 100)
  const out = new BoundedOutput()
  t.same(await capture(['/bin/sleep', '30'], { env: PROBE_ENV, timeoutMs: 10_000, stdout: out, stderr: out, signal: controller.signal }), { kind: 'aborted' })
  t.same(await capture(['/bin/sleep', '30'], { env: PROBE_ENV, timeoutMs: 10_000, stdout: out, stderr: out, signal: controller.signal }), { kind: 'aborted' }, 'already aborted: nothing is started')
})

t.test('capture: a program that cannot start', async (t) => {
  const out = new BoundedOutput()
  t.match(await capture(['/nonexistent/probe'], { env: PROBE_ENV, timeoutMs: 1000, stdout: out, stderr: out }), { kind: 'error', message: /ENOENT/ })
})

const target = (overrides: Partial<ProbeTarget> = {}): ProbeTarget => ({ task: 't1', netns: 'weft-t1', ip: '10.0.0.2', execTarget: async () => exec, ...overrides })

t.test('probes that cannot run are results with exit code -1, never exceptions', async (t) => {
  const check = { timeout: 1000 }
  const gone = await runProbe({ ...check, test: { kind: 'cmd', command: 'true' } }, target({ execTarget: () => Promise.reject(new Error('task web.1 is failed, not running')) }), { tools })
  t.match(gone, { exitCode: -1, output: /cannot enter task: task web\.1 is failed/ })
  const dead = await runProbe({ ...check, test: { kind: 'cmd', command: 'true' } }, target(), { tools })
  t.match(dead, { exitCode: -1, output: 'task web.1.t1 is not running' }, 'a PID 1 that is not alive (by pid and start time) is never entered')
  const noAddress = await runProbe({ ...check, test: { kind: 'tcp', port: 80 } }, target({ ip: null }), { tools })
  t.match(noAddress, { exitCode: -1, output: /has no address/ })
  const badNetns = await runProbe({ ...check, test: { kind: 'http', port: 80, path: '/' } }, target({ netns: '../x' }), { tools })
  t.match(badNetns, { exitCode: -1, output: /invalid network namespace/ })
  t.ok(Date.parse(badNetns.start) <= Date.parse(badNetns.end))
})

t.test('createProbeRunner: missing tools are a -1 result', async (t) => {
  const runner = createProbeRunner({ tools: { ...tools, runtime: { ...tools.runtime, nsenter: '/nonexistent/nsenter' } } })
  const result = await runner({ timeout: 1000, test: { kind: 'tcp', port: 80 } }, target())
  t.match(result, { exitCode: -1, output: /could not start: .*ENOENT/ })
})
