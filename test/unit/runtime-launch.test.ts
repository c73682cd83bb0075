/**
 * The launch chain as data (settings, plan, argv), and the two waiting
 * shells run for real (no root needed): how a task ended must be recorded
 * whatever signal reaches the process group.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  encodeArgs, execArgv, execChain, planLaunch, supervisorArgv, taskSettings, INIT_SCRIPT, NO_ROOT_MOUNTS, READ_ARGS, SUPERVISOR_SCRIPT, WAITER_SCRIPT, type Tools
} from '../../netd/runtime/launch.ts'
import { parseTaskProcessSpec } from '../../netd/runtime/spec.ts'
import type { ResolvedImage } from '../../netd/runtime/image.ts'
import { parseExitStatus } from '../../netd/runtime/task-dir.ts'

const tools: Tools = { sh: '/bin/sh', ip: '/sbin/ip', unshare: '/usr/bin/unshare', nsenter: '/usr/bin/nsenter', setpriv: '/usr/bin/setpriv', env: '/usr/bin/env', mount: '/bin/mount' }
const host: ResolvedImage = { kind: 'host', reference: 'debian' }
const rootfs: ResolvedImage = {
  kind: 'rootfs',
  reference: 'app:1',
  dir: '/images/app:1',
  rootfs: '/images/app:1/rootfs',
  config: { command: ['/bin/app', '--serve'], env: { A: 'image', B: 'image' }, workdir: '/srv', user: 'app' }
}
const spec = (extra: object = {}) => parseTaskProcessSpec({ task: 't1', name: 'web.1.t1', netns: 'weft-t-t1', image: 'debian', ...extra })
const user = { uid: 65534, gid: 65534, groups: [65534, 100], home: '/nonexistent', name: 'nobody' }

t.test('settings: the task\'s values over the image\'s defaults', async (t) => {
  const own = taskSettings(spec({ command: ['sh'], env: { B: 'task' }, workdir: '/tmp', user: 'nobody', hostname: 'h' }), rootfs)
  t.same(own, { command: ['sh'], env: { A: 'image', B: 'task' }, workdir: '/tmp', user: 'nobody', hostname: 'h' })
  const defaults = taskSettings(spec(), rootfs)
  t.same(defaults, { command: ['/bin/app', '--serve'], env: { A: 'image', B: 'image' }, workdir: '/srv', user: 'app', hostname: 'web.1.t1' })
})

t.test('the host filesystem has no default command', async (t) => {
  t.throws(() => taskSettings(spec(), host), { code: 'NETD_ERR_TASK_NO_COMMAND' })
  t.same(taskSettings(spec({ command: ['sleep', 'infinity'] }), host), { command: ['sleep', 'infinity'], env: {}, workdir: '/', user: undefined, hostname: 'web.1.t1' })
})

t.test('the plan: PATH, HOSTNAME and HOME unless the task sets them, sorted', async (t) => {
  const s = spec({ command: ['x'], env: { ZED: '1', PATH: '/opt/bin', AAA: '' } })
  const plan = planLaunch(s, host, taskSettings(s, host), user, NO_ROOT_MOUNTS)
  t.same(Object.keys(plan.env), ['AAA', 'HOME', 'HOSTNAME', 'PATH', 'ZED'])
  t.same(plan.env, { AAA: '', HOME: '/nonexistent', HOSTNAME: 'web.1.t1', PATH: '/opt/bin', ZED: '1' })
  t.equal(plan.rootfs, null)
  const bare = planLaunch(spec({ command: ['x'] }), host, taskSettings(spec({ command: ['x'] }), host), user, NO_ROOT_MOUNTS)
  t.equal(bare.env.PATH, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
})

t.test('the supervisor argv: the chain in order, nothing of the task\'s env or command on it', async (t) => {
  const s = spec({ command: ['sh', '-c', 'echo $FOO'], env: { FOO: 'secret' }, workdir: '/tmp' })
  const plan = planLaunch(s, host, taskSettings(s, host), user, NO_ROOT_MOUNTS)
  const argv = supervisorArgv(plan, '/state/tasks/t1', '/state/tasks/t1/launch.args', tools)
  t.same(argv, [
    '/bin/sh', '-c', SUPERVISOR_SCRIPT, 'weft-supervisor', '/state/tasks/t1',
    '/sbin/ip', 'netns', 'exec', 'weft-t-t1',
    '/usr/bin/unshare', '--pid', '--mount', '--uts', '--ipc', '--propagation', 'private', '--',
    '/bin/sh', '-c', WAITER_SCRIPT, 'weft-waiter',
    '/bin/sh', '-c', INIT_SCRIPT, 'weft-init', 'web.1.t1', '/bin/mount', '', '', '', '', '/state/tasks/t1/launch.args'
  ])
  t.notOk(argv.some((a) => a.includes('secret') || a.includes('echo $FOO')), 'command lines are world-readable')
})

t.test('the exec chain: env exactly, groups while root, then chroot, chdir and setuid', async (t) => {
  const s = spec({ command: ['sh', '-c', 'echo $FOO'], env: { FOO: 'a b' }, workdir: '/tmp' })
  const plan = planLaunch(s, host, taskSettings(s, host), user, NO_ROOT_MOUNTS)
  t.same(execChain(plan, tools), [
    '/usr/bin/env', '-i', 'FOO=a b', 'HOME=/nonexistent', 'HOSTNAME=web.1.t1', `PATH=${plan.env.PATH}`,
    '/usr/bin/setpriv', '--regid', '65534', '--groups', '65534,100', '--',
    '/usr/bin/unshare', '--wd', '/tmp', '--setuid', '65534', '--',
    'sh', '-c', 'echo $FOO'
  ])
  const mounts = { proc: '/images/app:1/rootfs/proc', dev: '', sys: '', resolvConf: '/images/app:1/rootfs/etc/resolv.conf' }
  const chrooted = planLaunch(spec(), rootfs, taskSettings(spec(), rootfs), { ...user, groups: [] }, mounts)
  const chain = execChain(chrooted, tools)
  t.same(chain.slice(chain.indexOf('/usr/bin/setpriv')), [
    '/usr/bin/setpriv', '--regid', '65534', '--clear-groups', '--',
    '/usr/bin/unshare', '--root', '/images/app:1/rootfs', '--wd', '/srv', '--setuid', '65534', '--',
    '/bin/app', '--serve'
  ])
  const argv = supervisorArgv(chrooted, '/d', '/d/launch.args', tools)
  t.same(argv.slice(argv.indexOf(INIT_SCRIPT) + 1), ['weft-init', 'web.1.t1', '/bin/mount', mounts.proc, '', '', mounts.resolvConf, '/d/launch.args'])
})

t.test('the args file: any argument without NUL comes back as it was', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-rt-args-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const args = ['/usr/bin/env', '-i', 'A=1', 'B=two words', 'C=', 'D=line1\nline2\n', 'E=back\\slash \\n \\c \\0101', 'F=\\', 'G= lead and trail ', 'H=\ttab\r', 'I=$(x) `y` "q" \'s\' * ?', 'r', 'e', '', '\n', 'ünï', 'end']
  const file = join(dir, 'launch.args')
  await writeFile(file, encodeArgs(args))
  const child = spawn('/bin/sh', ['-c', `args=$1\n${READ_ARGS}printf '%s\\0' "$@"`, 'test', file], { stdio: ['ignore', 'pipe', 'inherit'] })
  const out: Buffer[] = []
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
  await new Promise((resolve) => child.once('close', resolve))
  t.same(Buffer.concat(out).toString().split('\0').slice(0, -1), args)
})

t.test('exec argv: groups, then nsenter into every namespace, root, workdir and uid', async (t) => {
  t.same(execArgv(4242, { uid: 1, gid: 2, groups: [2, 3], workdir: '/w d' }, ['id', '-u'], tools), [
    '/usr/bin/setpriv', '--regid', '2', '--groups', '2,3', '--',
    '/usr/bin/nsenter', '--target', '4242', '--mount', '--uts', '--ipc', '--net', '--pid', '--root', '--wdns=/w d', '--setuid', '1', '--',
    'id', '-u'
  ])
})

/** Runs the supervisor and waiter around `task` (a shell script), as the real chain nests them. */
function superviseScript (dir: string, task: string): { pid: number, exited: Promise<void> } {
  const child = spawn('/bin/sh', ['-c', SUPERVISOR_SCRIPT, 'weft-supervisor', dir, '/bin/sh', '-c', WAITER_SCRIPT, 'weft-waiter', '/bin/sh', '-c', task], {
    detached: true, stdio: 'ignore'
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return { pid: child.pid as number, exited }
}

async function waitForFile (path: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await stat(path).catch(() => null)) !== null) return
    await sleep(10)
  }
  throw new Error(`no ${path}`)
}

t.test('the supervisor records exit codes and deaths by signal, and survives signals to the group', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-rt-launch-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const status = async () => parseExitStatus(await readFile(join(dir, 'exit-status'), 'utf8'))
  const pidFile = join(dir, 'supervisor.pid')

  let run = superviseScript(dir, 'exit 3')
  await run.exited
  t.equal(await status(), 3, 'an exit code')
  t.equal(await readFile(pidFile, 'utf8'), `${run.pid}\n`, 'the supervisor wrote its own pid')

  await rm(join(dir, 'exit-status'))
  await rm(pidFile)
  run = superviseScript(dir, 'kill -KILL $$')
  await run.exited
  t.equal(await status(), 137, 'SIGKILL is 128+9 (unshare --fork would have said 1)')

  // The group gets SIGTERM: the task (no handler) dies of it, both shells wait and record it.
  await rm(join(dir, 'exit-status'))
  await rm(pidFile)
  run = superviseScript(dir, 'sleep 5')
  await waitForFile(pidFile)
  await sleep(100)
  for (const signal of ['SIGHUP', 'SIGUSR1', 'SIGTERM'] as const) process.kill(-run.pid, signal)
  await run.exited
  t.equal(await status(), 129, 'the first signal that reached the task (SIGHUP) is recorded')

  // A task that ignores SIGTERM keeps running, and so do the shells around it.
  await rm(join(dir, 'exit-status'))
  await rm(pidFile)
  run = superviseScript(dir, 'trap "exit 42" USR2; trap "" TERM; while :; do sleep 0.05; done')
  await waitForFile(pidFile)
  await sleep(100)
  process.kill(-run.pid, 'SIGTERM')
  await sleep(200)
  t.equal((await stat(join(dir, 'exit-status')).catch(() => null)), null, 'still running after SIGTERM')
  process.kill(-run.pid, 'SIGUSR2')
  await run.exited
  t.equal(await status(), 42, 'the task\'s own exit code, after the shells were signalled')
})

t.test('the init script fails with 125 and says why', async (t) => {
  const child = spawn('/bin/sh', ['-c', INIT_SCRIPT, 'weft-init', 'h', '/bin/false', '', '', '', '', '/nonexistent'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
  t.equal(code, 125)
  t.equal(stderr, 'weft: cannot mount /proc\n')
})
