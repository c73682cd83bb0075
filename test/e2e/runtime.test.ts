/**
 * The task runtime end to end, as root: real namespaces (weftlab-rt-*, made
 * here, removed in teardown), real processes, no netd daemon. A "netd
 * restart" is a second TaskRuntime over the same state directory.
 */
import t from 'tap'
import { requireRoot } from '../helpers/root.ts'
import { removeTaskLeftovers } from '../helpers/runtime-leftovers.ts'
import { execFile } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { pino } from 'pino'
import { TaskRuntime } from '../../netd/runtime/runtime.ts'
import { execInTask, findExecTarget, type ExecTarget } from '../../netd/runtime/exec.ts'
import { childrenOf, cmdline, identify, isAlive, type ProcessIdentity } from '../../netd/runtime/proc.ts'
import { readRecord, taskDir } from '../../netd/runtime/task-dir.ts'
import type { TaskStatus } from '../../netd/runtime/status.ts'
import type { TaskProcessSpecInput } from '../../netd/runtime/spec.ts'

const run = promisify(execFile)

requireRoot('the runtime e2e test', 'network, PID and mount namespaces')

const PREFIX = `weftlab-rt-${process.pid.toString(36)}-`
const NS = `${PREFIX}a`
const log = pino({ level: process.env.WEFT_TEST_LOG ?? 'silent' })
const scratch = await mkdtemp(join(tmpdir(), 'weft-rt-e2e-'))
const stateDir = join(scratch, 'state')
const imagesDir = join(scratch, 'images')
const runtimes: TaskRuntime[] = []

async function cleanup (): Promise<void> {
  for (const runtime of runtimes) await runtime.close({ stopTasks: true, graceMs: 200 }).catch(() => undefined)
  await removeTaskLeftovers(stateDir, PREFIX)
  await rm(join('/etc/netns', NS), { recursive: true, force: true })
  await rm(scratch, { recursive: true, force: true })
}
t.teardown(cleanup)

try {
  await run('ip', ['netns', 'add', NS])
  await run('ip', ['-n', NS, 'link', 'set', 'lo', 'up'])
  // Two interfaces only this namespace has (no dummy driver in this kernel: a veth pair, both ends here).
  await run('ip', ['-n', NS, 'link', 'add', 'rt0', 'type', 'veth', 'peer', 'name', 'rt1'])
  await mkdir(join('/etc/netns', NS), { recursive: true })
  await writeFile(join('/etc/netns', NS, 'resolv.conf'), 'nameserver 127.0.0.11\noptions ndots:0\n')
} catch (error) {
  // A top-level throw would end the process before tap runs the teardown.
  await cleanup()
  throw error
}

function newRuntime (options: { logMaxBytes?: number, logCheckMs?: number } = {}): TaskRuntime {
  const runtime = new TaskRuntime({ stateDir, imagesDir, log, pollMs: 200, ...options })
  runtimes.push(runtime)
  return runtime
}

let counter = 0
function spec (command: string[], extra: Partial<TaskProcessSpecInput> = {}): TaskProcessSpecInput {
  const task = `rt${(counter++).toString(36)}${process.pid.toString(36)}`
  return { task, name: `web.${counter}.${task}`, netns: NS, image: 'debian', command, ...extra }
}

async function waitFor<T> (what: string, probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== null && value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}

const ended = (runtime: TaskRuntime, task: string, timeoutMs = 10_000): Promise<TaskStatus> =>
  waitFor(`${task} to end`, () => {
    const status = runtime.status(task)
    return status !== undefined && ['complete', 'failed', 'shutdown'].includes(status.state) ? status : null
  }, timeoutMs)

async function logsOf (runtime: TaskRuntime, task: string, options: { tail?: number, follow?: boolean } = {}): Promise<{ stdout: string, stderr: string }> {
  const out = { stdout: '', stderr: '' }
  for await (const chunk of runtime.logs(task, options)) out[chunk.stream] += chunk.data.toString()
  return out
}

async function exec (target: ExecTarget, argv: string[], input?: string): Promise<{ code: number, stdout: string, stderr: string }> {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const out: Buffer[] = []
  const err: Buffer[] = []
  stdout.on('data', (c: Buffer) => out.push(c))
  stderr.on('data', (c: Buffer) => err.push(c))
  const result = await execInTask(target, argv, { stdin: input === undefined ? 'ignore' : Readable.from([input]), stdout, stderr })
  return { code: result.exitCode, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }
}

/** Every process of a task's chain: supervisor, waiter, PID 1 and PID 1's children. */
async function chainProcesses (runtime: TaskRuntime, task: string): Promise<ProcessIdentity[]> {
  const record = await readRecord(taskDir(runtime.stateDir, task))
  const found: ProcessIdentity[] = []
  const add = async (pid: number) => { const id = await identify(pid); if (id !== null) found.push(id) }
  if (record?.supervisor) {
    await add(record.supervisor.pid)
    for (const waiter of await childrenOf(record.supervisor.pid)) {
      await add(waiter)
      for (const init of await childrenOf(waiter)) {
        await add(init)
        for (const child of await childrenOf(init)) await add(child)
      }
    }
  }
  return found
}

async function anyAlive (processes: readonly ProcessIdentity[]): Promise<number[]> {
  const alive: number[] = []
  for (const p of processes) if (await isAlive(p)) alive.push(p.pid)
  return alive
}

const runtime = newRuntime()
const transitions: string[] = []
runtime.onChange((s) => transitions.push(`${s.task}:${s.state}`))

t.test('a task runs in its own namespaces with its env, workdir, user and hostname', async (t) => {
  const s = spec(['sh', '-c', 'echo hi; echo err >&2; pwd; id -u; hostname; echo $FOO; echo pid=$$; cat /etc/resolv.conf; ls /sys/class/net; echo ready; sleep 30'], {
    env: { FOO: 'bar' }, workdir: '/tmp', user: 'nobody'
  })
  const started = await runtime.start(s)
  t.equal(started.state, 'running')
  t.ok(started.pid !== null && started.pid > 1, 'the host pid of its PID 1')
  t.same(transitions.filter((x) => x.startsWith(s.task as string)), [`${s.task}:starting`, `${s.task}:running`])

  const logs = await waitFor('output', async () => { const l = await logsOf(runtime, s.task as string); return l.stdout.includes('ready') ? l : null })
  t.equal(logs.stdout, ['hi', '/tmp', '65534', s.name, 'bar', 'pid=1', 'nameserver 127.0.0.11', 'options ndots:0', 'lo', 'rt0', 'rt1', 'ready', ''].join('\n'),
    'workdir, user, hostname (the name), env; PID 1; the namespace\'s resolv.conf; only its interfaces')
  t.equal(logs.stderr, 'err\n')
  t.same(await logsOf(runtime, s.task as string, { tail: 2 }), { stdout: 'rt1\nready\n', stderr: 'err\n' }, 'tail')

  const env = (await readFile(`/proc/${started.pid}/environ`, 'utf8')).split('\0').filter((e) => e !== '').sort()
  t.same(env, ['FOO=bar', `HOME=/nonexistent`, `HOSTNAME=${s.name}`, 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    'exactly its env, plus PATH, HOSTNAME, HOME')

  const [supervisor, waiter, ...task] = await chainProcesses(runtime, s.task as string)
  for (const p of [supervisor, waiter]) {
    t.notOk((await cmdline(p?.pid ?? 0)).some((arg) => arg.includes('FOO=bar') || arg.includes('echo hi')), 'no env or command on the long-lived command lines (world-readable)')
  }
  for (const p of task) t.notOk((await cmdline(p.pid)).some((arg) => arg.includes('FOO=bar')), 'nor on the task\'s')

  await t.test('exec joins it: PID namespace, hostname, interfaces, user, workdir; stdin and exit code pass through', async (t) => {
    for (const query of [s.task as string, (s.task as string).slice(0, 5), s.name as string, `web.${s.name?.split('.')[1]}`]) {
      const target = await runtime.execTarget(query)
      t.equal(target.init.pid, started.pid, `"${query}" finds the task`)
    }
    const target = await runtime.execTarget(s.task as string)
    const stat1 = await exec(target, ['cat', '/proc/1/cmdline'])
    t.equal(stat1.stdout.split('\0')[2]?.slice(0, 8), 'echo hi;', 'PID 1 of the namespace it joins is the task')
    const self = await exec(target, ['sh', '-c', 'echo $$; hostname; id -u; id -g; pwd; echo $FOO; ls /sys/class/net; ip -o link | cut -d: -f2 | cut -d@ -f1'])
    const [pid, hostname, uid, gid, pwd, foo, ...links] = self.stdout.trim().split('\n').map((l) => l.trim())
    links.sort()
    t.ok(Number(pid) > 1 && Number(pid) < 1000, `a small pid in the task's PID namespace (${pid})`)
    t.same([hostname, uid, gid, pwd, foo], [s.name, '65534', '65534', '/tmp', 'bar'])
    t.same(links, ['lo', 'lo', 'rt0', 'rt0', 'rt1', 'rt1'], 'the task\'s interfaces only, from /sys and from netlink')
    t.same(await exec(target, ['cat'], 'hello\nworld\n'), { code: 0, stdout: 'hello\nworld\n', stderr: '' }, 'stdin')
    t.same(await exec(target, ['sh', '-c', 'echo out; echo err >&2; exit 7']), { code: 7, stdout: 'out\n', stderr: 'err\n' }, 'stdout, stderr, exit code')
    t.equal((await exec(target, ['sh', '-c', 'kill -KILL $$'])).code, 137, 'killed by a signal: 128+N')
    t.equal((await exec(await runtime.execTarget(s.task as string, { user: '0', workdir: '/' }), ['sh', '-c', 'id -u; pwd'])).stdout, '0\n/\n', 'another user and workdir')
    t.equal((await exec(target, ['nosuchcommand'])).code, 127, 'an unknown command')
    t.equal((await exec(await findExecTarget(stateDir, `web.${s.name?.split('.')[1]}`), ['hostname'])).stdout, `${s.name}\n`, 'the CLI path, from the state directory alone')
    await t.rejects(runtime.execTarget('nosuchtask'), { code: 'NETD_ERR_TASK_NOT_FOUND' })
  })

  await t.test('stop: SIGTERM, and the end is shutdown', async (t) => {
    const processes = await chainProcesses(runtime, s.task as string)
    t.equal(processes.length, 4, 'supervisor, waiter, PID 1 and its sleep')
    const begin = Date.now()
    const stopped = await runtime.stop(s.task as string, 5000)
    t.ok(Date.now() - begin < 2000, 'without waiting for the grace period')
    t.match(stopped, { state: 'shutdown', exitCode: 143, signal: 'SIGTERM', error: null, pid: null })
    t.same(await anyAlive(processes), [], 'nothing of it is left')
    t.equal(transitions.at(-1), `${s.task}:shutdown`)
    await t.rejects(runtime.execTarget(s.task as string), { code: 'NETD_ERR_TASK_STATE' })
    t.same(await runtime.stop(s.task as string, 10), stopped, 'stopping again changes nothing')
  })
})

t.test('stop: SIGKILL after the grace period for a task that ignores SIGTERM', async (t) => {
  const s = spec(['sh', '-c', 'trap "" TERM; echo ready; sleep 30'])
  await runtime.start(s)
  await waitFor('ready', async () => (await logsOf(runtime, s.task as string)).stdout === 'ready\n')
  const processes = await chainProcesses(runtime, s.task as string)
  const begin = Date.now()
  const stopped = await runtime.stop(s.task as string, 600)
  t.ok(Date.now() - begin >= 600, 'waited the grace period')
  t.match(stopped, { state: 'shutdown', exitCode: 137, signal: 'SIGKILL' })
  t.same(await anyAlive(processes), [])
})

t.test('exit codes: 0 is complete, 3 is failed with exit code 3', async (t) => {
  const ok = spec(['true'])
  const bad = spec(['sh', '-c', 'echo bye >&2; exit 3'])
  await runtime.start(ok)
  await runtime.start(bad)
  t.match(await ended(runtime, ok.task as string), { state: 'complete', exitCode: 0, error: null })
  t.match(await ended(runtime, bad.task as string), { state: 'failed', exitCode: 3, signal: null, error: 'non-zero exit (3)', message: 'finished' })
  t.equal(transitions.filter((x) => x.startsWith(bad.task as string)).at(-1), `${bad.task}:failed`)
  t.equal((await logsOf(runtime, bad.task as string)).stderr, 'bye\n', 'logs outlive the task')
  await runtime.remove(bad.task as string)
  t.equal(runtime.status(bad.task as string), undefined)
  t.equal(await stat(taskDir(stateDir, bad.task as string)).catch(() => null), null, 'remove deletes its directory')
})

t.test('SIGKILL to the task\'s process: failed, killed by SIGKILL', async (t) => {
  const s = spec(['sleep', 'infinity'])
  const started = await runtime.start(s)
  process.kill(started.pid as number, 'SIGKILL')
  t.match(await ended(runtime, s.task as string), { state: 'failed', exitCode: 137, signal: 'SIGKILL', error: 'non-zero exit (137): killed by SIGKILL' })
})

t.test('starts that are refused create nothing', async (t) => {
  const refused = async (input: TaskProcessSpecInput, code: string) => {
    await t.rejects(runtime.start(input), { code }, code)
    t.equal(await stat(taskDir(stateDir, input.task as string)).catch(() => null), null, `${code}: no state directory`)
  }
  await refused(spec(['true'], { netns: `${PREFIX}missing` }), 'NETD_ERR_TASK_NETNS')
  await refused(spec(['true'], { user: 'nosuchuser' }), 'NETD_ERR_TASK_USER')
  await refused(spec(['nosuchcommand']), 'NETD_ERR_TASK_COMMAND_NOT_FOUND')
  await refused(spec([]), 'NETD_ERR_TASK_NO_COMMAND')
  await refused(spec(['true'], { workdir: '/nonexistent/dir' }), 'NETD_ERR_TASK_WORKDIR')
  await refused(spec(['true'], { image: 'Bad/Image' }), 'NETD_ERR_TASK_SPEC')
  const once = spec(['true'])
  await runtime.start(once)
  await t.rejects(runtime.start(once), { code: 'NETD_ERR_TASK_EXISTS' }, 'a task id starts once')
})

/** A tiny image: dash, sleep, cat and id with their libraries, a passwd with a user the host does not have. */
async function buildImage (name: string, config: object): Promise<void> {
  const rootfs = join(imagesDir, name, 'rootfs')
  const copy = async (path: string, to = path) => {
    await mkdir(dirname(join(rootfs, to)), { recursive: true })
    await copyFile(path, join(rootfs, to))
  }
  for (const [binary, as] of [['/bin/dash', '/bin/sh'], ['/bin/sleep', '/bin/sleep'], ['/bin/cat', '/bin/cat'], ['/usr/bin/id', '/bin/id']] as const) {
    await copy(binary, as)
    const { stdout } = await run('ldd', [binary])
    for (const lib of stdout.matchAll(/(\/\S+\.so[^\s]*)/g)) await copy(lib[1] as string)
  }
  await mkdir(join(rootfs, 'etc'), { recursive: true })
  await mkdir(join(rootfs, 'work'), { recursive: true })
  await writeFile(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:4321:4321::/work:/bin/sh\n')
  await writeFile(join(rootfs, 'etc/group'), 'root:x:0:\napp:x:4321:\nextra:x:4400:app\n')
  await writeFile(join(imagesDir, name, 'config.json'), JSON.stringify(config))
}

t.test('a rootfs image: chroot, its own /proc, resolv.conf from the namespace, its users and defaults', async (t) => {
  await buildImage('weftlab-mini:1', {
    command: ['/bin/sh', '-c', 'echo pid=$$; echo root=$(echo /*); cat /etc/resolv.conf; id -u; id -G; pwd; echo HOME=$HOME IMG=$IMG; echo ready; exec sleep 30'],
    env: { IMG: 'image', PATH: '/bin' },
    workdir: '/work',
    user: 'app'
  })
  const s = spec([], { image: 'weftlab-mini:1', hostname: 'mini-1' })
  const started = await runtime.start(s)
  t.equal(started.state, 'running')
  const logs = await waitFor('output', async () => { const l = await logsOf(runtime, s.task as string); return l.stdout.includes('ready') ? l : null })
  const root = (await readdir(join(imagesDir, 'weftlab-mini:1/rootfs'))).sort().map((e) => `/${e}`).join(' ')
  t.equal(logs.stdout, ['pid=1', `root=${root}`, 'nameserver 127.0.0.11', 'options ndots:0', '4321', '4321 4400', '/work', 'HOME=/work IMG=image', 'ready', ''].join('\n'))
  t.equal(logs.stderr, '')

  const target = await runtime.execTarget(s.task as string)
  const inside = await exec(target, ['/bin/sh', '-c', 'cat /etc/passwd; id -u; pwd; read h < /proc/sys/kernel/hostname; echo $h; cat /proc/1/cmdline'])
  t.equal(inside.code, 0, inside.stderr)
  t.match(inside.stdout, /^root:x:0:0:root:\/root:\/bin\/sh\napp:x:4321:4321::\/work:\/bin\/sh\n4321\n\/work\nmini-1\nsleep\u000030\u0000$/, 'exec enters the image\'s root as the image\'s user; PID 1 is the command')
  const stopped = await runtime.stop(s.task as string, 200)
  t.match(stopped, { state: 'shutdown', exitCode: 137 }, 'sleep as PID 1 has no SIGTERM handler: killed after the grace period')
  t.equal(await readFile(join(imagesDir, 'weftlab-mini:1/rootfs/etc/resolv.conf'), 'utf8'), '', 'the image keeps only an empty mount point')
})

t.test('a restarted runtime adopts running tasks and learns how others ended', async (t) => {
  const first = newRuntime()
  const keep = spec(['sh', '-c', 'echo ready; exec sleep 300'])
  const endsWhileDown = spec(['sh', '-c', 'sleep 1; exit 5'])
  const dies = spec(['sleep', '300'])
  const stopByNext = spec(['sleep', '300'])
  const keepStatus = await first.start(keep)
  await first.start(endsWhileDown)
  const diesStatus = await first.start(dies)
  await first.start(stopByNext)
  const keepProcesses = await chainProcesses(first, keep.task as string)
  await first.close({ stopTasks: false })
  await t.rejects(first.start(spec(['true'])), { code: 'NETD_ERR_TASK_CLOSED' })

  // "netd" is down: one task ends by itself, another is killed.
  await waitFor('the exit status written with no runtime watching', () => stat(join(taskDir(stateDir, endsWhileDown.task as string), 'exit-status')).catch(() => null))
  process.kill(diesStatus.pid as number, 'SIGKILL')
  await waitFor('the killed task\'s exit status', () => stat(join(taskDir(stateDir, dies.task as string), 'exit-status')).catch(() => null))
  t.same(await anyAlive(keepProcesses), keepProcesses.map((p) => p.pid), 'running tasks are untouched by the close')

  const second = newRuntime()
  const changes: string[] = []
  second.onChange((s) => changes.push(`${s.task}:${s.state}`))
  const adopted = await second.adopt()
  t.match(adopted.get(keep.task as string), { state: 'running', pid: keepStatus.pid })
  t.match(adopted.get(endsWhileDown.task as string), { state: 'failed', exitCode: 5 })
  t.match(adopted.get(dies.task as string), { state: 'failed', exitCode: 137, signal: 'SIGKILL' })
  t.same(changes, [], 'adopting announces nothing')
  t.same(await logsOf(second, keep.task as string), { stdout: 'ready\n', stderr: '' })

  const target = await second.execTarget(keep.task as string)
  t.equal((await exec(target, ['cat', '/proc/1/cmdline'])).stdout, 'sleep\u0000300\u0000', 'exec into an adopted task')

  t.match(await second.stop(stopByNext.task as string, 200), { state: 'shutdown' }, 'an adopted task stops (no child of this runtime)')
  process.kill(keepStatus.pid as number, 'SIGKILL')
  t.match(await ended(second, keep.task as string, 5000), { state: 'failed', exitCode: 137 }, 'an adopted task\'s end is noticed')
  t.same(changes, [`${stopByNext.task}:shutdown`, `${keep.task}:failed`])
  t.same(await anyAlive(keepProcesses), [])
})

t.test('a supervisor killed from outside: the end is failed, and its PID 1 does not outlive it', async (t) => {
  const s = spec(['sleep', '300'])
  const started = await runtime.start(s)
  const record = await readRecord(taskDir(stateDir, s.task as string))
  const waiter = (await childrenOf(record?.supervisor?.pid as number))[0] as number
  process.kill(waiter, 'SIGKILL')
  t.match(await ended(runtime, s.task as string), { state: 'failed', exitCode: 137 })
  await waitFor('PID 1 killed', async () => !(await isAlive(record?.init ?? null)))
  t.notOk(await isAlive({ pid: started.pid as number, startTime: record?.init?.startTime as string }))
})

t.test('logs can be followed until the task ends', async (t) => {
  const s = spec(['sh', '-c', 'for i in 1 2 3; do echo line$i; sleep 0.2; done; echo done >&2'])
  await runtime.start(s)
  const followed = await logsOf(runtime, s.task as string, { follow: true })
  t.same(followed, { stdout: 'line1\nline2\nline3\n', stderr: 'done\n' })
  t.equal(runtime.status(s.task as string)?.state, 'complete')
})

t.test('logs are capped by rotation while the task runs, and read whole', async (t) => {
  // Rotation is copy + truncate: a write between the two is lost, so rotate while the task is idle.
  const rotating = newRuntime({ logMaxBytes: 4096, logCheckMs: 3_600_000 })
  const s = spec(['sh', '-c', 'i=0; while [ $i -lt 300 ]; do echo "line $i ................................"; i=$((i+1)); done; echo written; sleep 2; echo after; sleep 30'])
  await rotating.start(s)
  const dir = taskDir(stateDir, s.task as string)
  await waitFor('the burst', async () => (await logsOf(rotating, s.task as string)).stdout.endsWith('written\n'))
  await rotating.rotateLogs()
  t.ok((await stat(join(dir, 'stdout.log.1'))).size > 4096, 'rotated to .1')
  t.equal((await stat(join(dir, 'stdout.log'))).size, 0, 'the current file emptied')
  await waitFor('more output', async () => (await logsOf(rotating, s.task as string)).stdout.endsWith('after\n'))
  const lines = (await logsOf(rotating, s.task as string)).stdout.trim().split('\n')
  t.equal(lines.length, 302, 'every line, from the .1 file and the current one')
  t.same(lines.slice(-3), ['line 299 ................................', 'written', 'after'])
  t.same((await logsOf(rotating, s.task as string, { tail: 2 })).stdout, 'written\nafter\n', 'a tail reaches into .1')
  await rotating.stop(s.task as string, 1000)
})

t.test('close({ stopTasks: true }) leaves no process behind', async (t) => {
  const last = newRuntime()
  const a = spec(['sh', '-c', 'sleep 300 & sleep 300 & wait'])
  const b = spec(['sh', '-c', 'trap "" TERM; sleep 300'])
  await last.start(a)
  await last.start(b)
  await sleep(200)
  const processes = [...await chainProcesses(last, a.task as string), ...await chainProcesses(last, b.task as string)]
  t.ok(processes.length >= 8, `the chains (${processes.length} processes)`)
  await last.close({ stopTasks: true, graceMs: 300 })
  t.same(await anyAlive(processes), [])
  t.match(last.status(a.task as string), { state: 'shutdown' })
  t.match(last.status(b.task as string), { state: 'shutdown', exitCode: 137 })
})
