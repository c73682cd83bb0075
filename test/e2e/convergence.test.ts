/**
 * Health, failure and convergence under load (issue 6): a swarm of three
 * whose `web` service answers two constant loads of short HTTP requests (from
 * a task through the VIP, from `outside` through h2's published port) while
 * each fault of the issue happens in turn. Each scenario asserts how soon DNS
 * and lb were right on every node and that no request failed after its
 * deadline; the netd-restart, manager-down, rolling-update and scale-down
 * scenarios assert that no request failed at all.
 *
 * One cluster (test/helpers/convergence.ts); the subtests run in order, and
 * each leaves `web` converged for the next.
 */
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { startLab } from '../helpers/lab.ts'
import { LoadedCluster, netdGet, when, WEB, type ScenarioResult } from '../helpers/convergence.ts'
import { waitFor, type TaskRow } from '../helpers/swarm.ts'

const HEARTBEAT_MS = 1000
const GRACE_MS = 3 * HEARTBEAT_MS
const REPLICAS = 4
const lab = await startLab(t, { nodes: 3 })
const cluster = new LoadedCluster(lab, { heartbeatMs: HEARTBEAT_MS, replicas: REPLICAS, rate: 40 })
const { ok } = cluster.cli
const root = t

function report (t: { comment: (message: string) => void }, result: ScenarioResult): void {
  t.comment(`${result.scenario}: DNS and lb right everywhere after ${result.convergedMs} ms; ${result.failed} failed requests (${JSON.stringify(result.errors)}), last ${result.recoveryMs} ms after the fault`)
}

/** A running, healthy task of web on `node`. */
async function taskOn (node: string): Promise<TaskRow> {
  const row = (await cluster.running(WEB)).find((r) => r.Node === node)
  if (row === undefined) throw new Error(`no task of ${WEB} on ${node}`)
  return row
}

t.test('a swarm of three, web under load through its VIP and the routing mesh', async (t) => {
  await cluster.start(root)
  await sleep(2000)
  const [vip, mesh] = await cluster.snapshots()
  t.ok(vip!.ok > 0 && mesh!.ok > 0, `both loads are answered (${vip!.ok} through the VIP, ${mesh!.ok} through the mesh)`)
  t.equal(vip!.failed + mesh!.failed, 0, 'and none fails')
  t.equal(Object.keys(vip!.byBackend).length, REPLICAS, 'every task answers')
})

t.test('a task made unhealthy leaves DNS and lb on every node, and is replaced', async (t) => {
  const victim = await taskOn('h3')
  const target = await cluster.target(victim)
  const faultAt = Date.now()
  const sicken = await lab.exec('h3', ['ip', 'netns', 'exec', `${lab.netns('h3')}-t-${victim.ID}`, 'curl', '-s', `http://${target.ip}/sicken`])
  t.equal(sicken.code, 0, sicken.stderr)
  const out = await when('the unhealthy task out of DNS and lb everywhere', async () => await cluster.unserved(target), 10_000)
  // Detection takes up to interval × retries (2 × 250 ms) plus a probe; the rest is propagation.
  t.ok(out - faultAt <= 2000, `out everywhere ${out - faultAt} ms after /healthz failed`)
  await cluster.healthy(REPLICAS, 30_000)
  const row = (await cluster.tasks(WEB)).find((r) => r.ID === victim.ID)
  t.equal(row?.DesiredState, 'Shutdown', 'the unhealthy task was stopped (restart policy any)')
  const result = await cluster.result('unhealthy', faultAt, out, 0)
  report(t, result)
  t.equal(result.failed, 0, 'an unhealthy task that still answers fails no request')
})

t.test('a task killed leaves DNS and lb on every node within a second', async (t) => {
  const victim = await taskOn('h3')
  const target = await cluster.target(victim)
  const pid = await cluster.initPid(victim)
  const faultAt = Date.now()
  process.kill(pid, 'SIGKILL')
  const out = await when('the dead task out of DNS and lb everywhere', async () => await cluster.unserved(target), 10_000)
  t.ok(out - faultAt <= 1000, `out everywhere ${out - faultAt} ms after the kill`)
  await cluster.healthy(REPLICAS, 30_000)
  const result = await cluster.result('task killed', faultAt, out, 1000)
  report(t, result)
  t.equal(result.failedAfterDeadline, 0, 'no request fails later than a second after the kill')
})

t.test('netd restarted on every node in turn: no request fails', async (t) => {
  const faultAt = Date.now()
  for (const node of cluster.nodes) {
    await lab.restartNetd(node)
    await waitFor(`${node} back in the swarm`, async () => ((await netdGet(lab.netdSocket(node), '/swarm/info')) as { agent?: { state: string } }).agent?.state === 'ready', 20_000)
  }
  await cluster.healthy(REPLICAS, 20_000)
  const result = await cluster.result('netd restarts', faultAt, Date.now(), 0)
  report(t, result)
  t.equal(result.failed, 0, 'no failed request')
})

t.test('the manager stopped: tasks keep resolving and balancing; a netd restart meanwhile restores the same state; the manager back, nodes resync', async (t) => {
  const faultAt = Date.now()
  const before = await netdGet(lab.netdSocket('h2'), '/state') as { revision: number }
  const targets = await Promise.all((await cluster.running(WEB)).map(async (r) => await cluster.target(r)))
  await lab.stopNetd('h1', 'SIGKILL')
  await sleep(GRACE_MS)
  await lab.restartNetd('h2')
  const restored = await netdGet(lab.netdSocket('h2'), '/state') as { revision: number }
  t.equal(restored.revision, before.revision, 'h2 restarted without a manager: the same document, from its local copy')
  t.equal((await cluster.servedOf(targets, ['h2', 'h3'])).length, targets.length, 'h2 and h3 serve every task, as before')
  const names = await lab.exec('h2', ['ip', 'netns', 'exec', `${lab.netns('h2')}-t-${cluster.client!.ID}`, 'dig', '+short', '+time=1', '+tries=1', '@127.0.0.11', WEB])
  t.equal(names.stdout.trim(), cluster.vip, `a task resolves ${WEB} while the manager is away`)
  await sleep(2000)
  await lab.startNetd('h1')
  await waitFor('every node ready again', async () => {
    const nodes = await cluster.cli.rows<{ Hostname: string, Status: string }>('h1', 'node', 'ls')
    return nodes.length === 3 && nodes.every((n) => n.Status === 'Ready')
  }, 30_000)
  await ok('h1', 'service', 'scale', `${WEB}=${REPLICAS + 1}`)
  await cluster.healthy(REPLICAS + 1, 30_000)
  t.pass('a change made after the manager came back reaches every node, none restarted')
  await ok('h1', 'service', 'scale', `${WEB}=${REPLICAS}`)
  await cluster.healthy(REPLICAS, 30_000)
  const result = await cluster.result('manager down', faultAt, Date.now(), 0)
  report(t, result)
  t.equal(result.failed, 0, 'no failed request, through the manager\'s absence, a netd restart, and a scale up and down after its return')
})

t.test('a rolling update under load: no request fails', async (t) => {
  const faultAt = Date.now()
  await ok('h1', 'service', 'update', '--env-add', 'VERSION=2', WEB)
  await waitFor('the update completed', async () => {
    const inspected = JSON.parse(await ok('h1', 'service', 'inspect', WEB)) as Array<{ UpdateStatus?: { State: string } }>
    return inspected[0]!.UpdateStatus?.State === 'completed'
  }, 90_000)
  await cluster.healthy(REPLICAS, 30_000)
  const result = await cluster.result('rolling update', faultAt, Date.now(), 0)
  report(t, result)
  t.equal(result.failed, 0, 'no failed request')
})

t.test('a node partitioned: Down after the grace period, its tasks out of DNS and lb and replaced; healed, its stale tasks stop', async (t) => {
  const victims = (await cluster.running(WEB)).filter((r) => r.Node === 'h3')
  t.ok(victims.length > 0, 'h3 runs tasks of web')
  const targets = await Promise.all(victims.map(async (v) => await cluster.target(v)))
  const faultAt = Date.now()
  await cluster.partition('h3')
  const others = ['h1', 'h2']
  const out = await when('h3\'s tasks out of DNS and lb on the other nodes', async () => (await Promise.all(targets.map(async (x) => await cluster.unserved(x, others)))).every(Boolean), 30_000)
  await cluster.healthy(REPLICAS, 30_000, others)
  const replaced = Date.now()
  t.ok(replaced - faultAt <= GRACE_MS + 7000, `replaced and served ${replaced - faultAt} ms after the partition (grace ${GRACE_MS} ms)`)
  await cluster.heal('h3')
  await waitFor('h3 ready again and its stale tasks stopped', async () => {
    const nodes = await cluster.cli.rows<{ Hostname: string, Status: string }>('h1', 'node', 'ls')
    const tasks = await netdGet(lab.netdSocket('h3'), '/swarm/tasks') as Array<{ task: string, state: string }>
    return nodes.every((n) => n.Status === 'Ready') && victims.every((v) => tasks.find((x) => x.task === v.ID)?.state !== 'running')
  }, 30_000)
  await cluster.healthy(REPLICAS, 30_000)
  const result = await cluster.result('node partitioned', faultAt, out, GRACE_MS + 3000)
  report(t, result)
  t.equal(result.failedAfterDeadline, 0, 'no request fails once the node is out')
})

t.test('a node killed: Down after the grace period, its tasks replaced and reachable; back, its stale tasks are shut down', async (t) => {
  await ok('h1', 'service', 'scale', `${WEB}=${REPLICAS + 2}`)
  await cluster.healthy(REPLICAS + 2, 30_000)
  const victims = (await cluster.running(WEB)).filter((r) => r.Node === 'h3')
  t.ok(victims.length > 0, 'h3 runs tasks of web')
  const targets = await Promise.all(victims.map(async (v) => await cluster.target(v)))
  const pids = await Promise.all(victims.map(async (v) => await cluster.initPid(v)))
  const faultAt = Date.now()
  // A host that dies: its netd, its tasks and its link, all at once.
  await cluster.partition('h3')
  await lab.stopNetd('h3', 'SIGKILL')
  for (const pid of pids) process.kill(pid, 'SIGKILL')
  const others = ['h1', 'h2']
  const out = await when('h3\'s tasks out of DNS and lb on the other nodes', async () => (await Promise.all(targets.map(async (x) => await cluster.unserved(x, others)))).every(Boolean), 30_000)
  await cluster.healthy(REPLICAS + 2, 30_000, others)
  const replaced = Date.now()
  t.ok(replaced - faultAt <= GRACE_MS + 7000, `replaced and served ${replaced - faultAt} ms after the kill (grace ${GRACE_MS} ms)`)
  await cluster.heal('h3')
  await lab.startNetd('h3')
  await waitFor('h3 ready again, running none of its old tasks', async () => {
    const nodes = await cluster.cli.rows<{ Hostname: string, Status: string }>('h1', 'node', 'ls')
    const tasks = await netdGet(lab.netdSocket('h3'), '/swarm/tasks') as Array<{ task: string, state: string }>
    return nodes.every((n) => n.Status === 'Ready') && victims.every((v) => tasks.find((x) => x.task === v.ID)?.state !== 'running')
  }, 30_000)
  const result = await cluster.result('node killed', faultAt, out, GRACE_MS + 3000)
  report(t, result)
  t.equal(result.failedAfterDeadline, 0, 'no request fails once the node is out')
})

t.test('a scale-down under load: no request fails', async (t) => {
  const faultAt = Date.now()
  await ok('h1', 'service', 'scale', `${WEB}=2`)
  await cluster.healthy(2, 30_000)
  await waitFor('the scaled-away tasks ended', async () => (await cluster.tasks(WEB)).filter((r) => r.DesiredState === 'Shutdown' && r.State === 'running').length === 0, 30_000)
  const result = await cluster.result('scale down', faultAt, Date.now(), 0)
  report(t, result)
  t.equal(result.failed, 0, 'no failed request')
})
