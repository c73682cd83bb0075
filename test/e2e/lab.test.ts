import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { REPO_ROOT, labDown, labList, labUp, openLab } from '../../lab/lab.ts'
import { LabErrorCode } from '../../lab/errors.ts'
import { isSameProcess } from '../../lab/processes.ts'
import { readState } from '../../lab/state.ts'
import { runCommand } from '../../lab/run-command.ts'
import { labPrefix } from '../../lab/topology.ts'
import { reserveLabName, startLab } from '../helpers/lab.ts'

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root: creates network namespaces')
  process.exit(0)
}

async function labNamespaces(name: string): Promise<string[]> {
  return (await fs.readdir('/run/netns').catch(() => [] as string[])).filter((n) => n.startsWith(labPrefix(name)))
}

async function etcNetnsDirs(name: string): Promise<string[]> {
  return (await fs.readdir('/etc/netns').catch(() => [] as string[])).filter((n) => n.startsWith(labPrefix(name)))
}

/** Asserts that nothing of the lab is left: namespaces, /etc/netns, state, and the processes it recorded. */
async function assertGone(t: Test, name: string, recorded: { pid: number; startTime: string; script: string }[]): Promise<void> {
  t.same(await labNamespaces(name), [], 'no namespace left')
  t.same(await etcNetnsDirs(name), [], 'no /etc/netns directory left')
  t.notOk(existsSync(`/run/weft/labs/${name}`), 'no state directory left')
  for (const record of recorded) t.notOk(await isSameProcess(record), `process ${record.pid} (${path.basename(record.script)}) stopped`)
}

t.test('a 2-node lab', async (t) => {
  const lab = await startLab(t, { nodes: 2 })
  const state = await readState(lab.name)
  const recorded = Object.values(state?.processes ?? {})
  t.same(Object.keys(state?.processes ?? {}).sort(), ['dns', 'h1', 'h2'], 'netd on each node and the resolver are recorded')

  t.test('hosts reach each other and outside over the underlay', async (t) => {
    for (const [from, to] of [['h1', 'h2'], ['h2', 'h1'], ['h1', 'outside'], ['outside', 'h2']] as const) {
      const ping = await lab.exec(from, ['ping', '-c', '1', '-W', '2', lab.addr(to)])
      t.equal(ping.code, 0, `${from} pings ${to}`)
    }
  })

  t.test('the lab resolver answers from the hosts', async (t) => {
    const direct = await lab.exec('h2', ['dig', '+short', '@192.168.99.2', 'h1.lab.test'])
    t.equal(direct.stdout.trim(), '192.168.99.11')
    const viaResolvConf = await lab.exec('outside', ['dig', '+short', '+search', 'h2'])
    t.equal(viaResolvConf.stdout.trim(), '192.168.99.12', 'resolv.conf points at the lab resolver with search lab.test')
    const overTcp = await lab.exec('h1', ['dig', '+tcp', '+short', 'big.lab.test'])
    t.equal(overTcp.stdout.trim().split('\n').length, 100, 'TCP carries all 100 records')
    const overUdp = await lab.exec('h1', ['dig', '+notcp', '+ignore', 'big.lab.test'])
    t.match(overUdp.stdout, /flags: qr aa tc/, 'UDP answer is truncated')
    const refused = await lab.exec('h1', ['dig', 'example.com'])
    t.match(refused.stdout, /status: REFUSED/, 'names outside the zone are refused, not forwarded')
    const slow = await lab.exec('h1', ['dig', '+tries=1', '+time=1', 'slow.lab.test'])
    t.not(slow.code, 0, 'slow.lab.test times out')
  })

  t.test('the underlay bridge is a plain switch: its frames do not go through netfilter', async (t) => {
    const underlay = lab.netns('ul')
    if (!existsSync('/proc/sys/net/bridge')) {
      t.plan(0, 'br_netfilter is not in this kernel')
      return
    }
    const value = await runCommand(['ip', 'netns', 'exec', underlay, 'sysctl', '-n', 'net.bridge.bridge-nf-call-iptables'])
    t.equal(value.stdout.trim(), '0', value.stderr)
  })

  t.test('the root namespace holds no lab address', async (t) => {
    const addrs = await runCommand(['ip', '-4', '-o', 'addr', 'show'])
    t.notMatch(addrs.stdout, /192\.168\.99\./)
  })

  t.test('exec runs on the host with netd on PATH and the exit code propagated', async (t) => {
    t.equal((await lab.exec('h1', ['sh', '-c', 'exit 3'])).code, 3)
    const env = await lab.exec('h2', ['sh', '-c', 'echo "$NETD_SOCKET"; command -v netd'])
    t.equal(env.stdout, `${lab.netdSocket('h2')}\n${path.join(REPO_ROOT, 'bin', 'netd')}\n`)
    const cli = await runCommand([path.join(REPO_ROOT, 'bin', 'weft'), 'lab', 'exec', '--name', lab.name, 'h1', '--', 'sh', '-c', 'exit 4'])
    t.equal(cli.code, 4, 'weft lab exec propagates the exit code')
  })

  t.test('netd restarts and stops on request', async (t) => {
    const before = (await readState(lab.name))?.processes.h1
    await lab.restartNetd('h1')
    const after = (await readState(lab.name))?.processes.h1
    t.ok(before && after && before.pid !== after.pid, 'a new netd process')
    t.ok(before && !(await isSameProcess(before)), 'the old one is gone')
    await lab.stopNetd('h2', 'SIGKILL')
    t.equal((await readState(lab.name))?.processes.h2, undefined)
    t.same((await labList()).find((l) => l.name === lab.name)?.state, 'running')
    await lab.startNetd('h2')
    t.ok((await readState(lab.name))?.processes.h2)
    await t.rejects(lab.startNetd('h2'), { code: LabErrorCode.netdStart }, 'starting twice is refused')
    const current = Object.values((await readState(lab.name))?.processes ?? {})
    recorded.push(...current.filter((r) => !recorded.some((known) => known.pid === r.pid)))
  })

  t.test('up of an existing lab fails and leaves it alone', async (t) => {
    await t.rejects(labUp({ name: lab.name, nodes: 1 }), { code: LabErrorCode.exists })
    t.equal((await lab.exec('h1', ['ping', '-c', '1', '-W', '2', lab.addr('h2')])).code, 0)
  })

  t.test('a second lab coexists and goes away alone', async (t) => {
    const other = await startLab(t, { nodes: 1 })
    const otherRecorded = Object.values((await readState(other.name))?.processes ?? {})
    t.equal((await other.exec('h1', ['ping', '-c', '1', '-W', '2', other.addr('outside')])).code, 0, 'same addresses, own underlay')
    t.equal((await other.exec('h1', ['dig', '+short', 'h1.lab.test'])).stdout.trim(), '192.168.99.11')
    const names = (await labList()).map((l) => l.name)
    t.ok(names.includes(lab.name) && names.includes(other.name), 'ls lists both')
    await other.down()
    await assertGone(t, other.name, otherRecorded)
    t.equal((await lab.exec('h1', ['ping', '-c', '1', '-W', '2', lab.addr('h2')])).code, 0, 'the first lab still works')
  })

  t.test('down removes everything and is idempotent', async (t) => {
    await lab.down()
    await assertGone(t, lab.name, recorded)
    await lab.down()
    await t.rejects(openLab(lab.name), { code: LabErrorCode.notFound })
  })
})

t.test('down removes a lab whose state file was deleted', async (t) => {
  const lab = await startLab(t, { nodes: 1 })
  const recorded = Object.values((await readState(lab.name))?.processes ?? {})
  await fs.rm(`/run/weft/labs/${lab.name}`, { recursive: true })
  t.same((await labList()).find((l) => l.name === lab.name), { name: lab.name, nodes: 1, namespaces: 4, state: 'orphaned' })
  await labDown(lab.name)
  await assertGone(t, lab.name, recorded)
})

t.test('down removes a lab whose creator was killed during up', async (t) => {
  const name = await reserveLabName(t)
  // A netd that never answers keeps `up` waiting, so the kill surely lands mid-way.
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-lab-test-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const hang = path.join(dir, 'hanging-netd.ts')
  await fs.writeFile(hang, 'setInterval(() => {}, 1 << 30)\n')
  const creator = spawn(path.join(REPO_ROOT, 'bin', 'weft'), ['lab', 'up', '--name', name, '--nodes', '2', '--netd-entry', hang], { stdio: 'ignore' })
  const exited = new Promise((resolve) => creator.on('exit', resolve))
  for (let i = 0; i < 100 && Object.keys((await readState(name).catch(() => null))?.processes ?? {}).length < 3; i++) await sleep(100)
  const recorded = Object.values((await readState(name))?.processes ?? {})
  t.equal(recorded.length, 3, 'up got as far as starting the daemons')
  creator.kill('SIGKILL')
  await exited
  t.equal((await labList()).find((l) => l.name === name)?.state, 'creating')
  await labDown(name)
  await assertGone(t, name, recorded)
})

t.test('a failed up tears down what it created and points at the log', async (t) => {
  const name = await reserveLabName(t)
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-lab-test-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const failing = path.join(dir, 'failing-netd.ts')
  await fs.writeFile(failing, "console.error('netd: cannot parse --frobnicate'); process.exit(1)\n")
  await t.rejects(labUp({ name, nodes: 1, netdEntry: failing }), {
    code: LabErrorCode.netdStart,
    message: new RegExp(`netd on h1 exited during startup; see /run/weft/labs/${name}/h1/netd.log; its last lines:\nnetd: cannot parse --frobnicate`),
  })
  await assertGone(t, name, [])
  await t.rejects(labUp({ name, nodes: 1, netdEntry: path.join(dir, 'missing.ts') }), { code: LabErrorCode.netdStart, message: /does not exist/ })
  t.same(await labNamespaces(name), [], 'a missing netd is caught before anything is created')
})
