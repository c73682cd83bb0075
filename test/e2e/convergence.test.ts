/**
 * Health, failure and convergence under load (issue 6): a swarm of three
 * whose `web` service answers two constant loads of short HTTP requests (from
 * a task through the VIP, from `outside` through h2's published port) while
 * each fault of the issue happens in turn (test/helpers/convergence.ts makes
 * them and measures; bench/convergence.ts prints the same figures). Each
 * scenario asserts how soon DNS and lb were right on every node and that no
 * request failed after its deadline; the netd-restart, manager-down,
 * rolling-update, node-drain and scale-down scenarios assert that none
 * failed at all.
 *
 * One cluster; the subtests run in order, each leaves `web` converged.
 */
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { startLab } from '../helpers/lab.ts'
import { LoadedCluster, type ScenarioResult } from '../helpers/convergence.ts'

const HEARTBEAT_MS = 1000
const GRACE_MS = 3 * HEARTBEAT_MS
const REPLICAS = 4
const lab = await startLab(t, { nodes: 3 })
const cluster = new LoadedCluster(lab, { heartbeatMs: HEARTBEAT_MS, replicas: REPLICAS, rate: 40 })
const root = t

function report (t: { comment: (message: string) => void }, result: ScenarioResult): void {
  t.comment(`${result.scenario}: DNS and lb right everywhere after ${result.convergedMs} ms; ${result.failed} failed requests ${JSON.stringify(result.errors)}, the last ${result.recoveryMs} ms after the fault${result.afterConverged.length === 0 ? '' : `; after convergence: ${result.afterConverged.join(', ')}`}`)
}

t.test('a swarm of three, web under load through its VIP and the routing mesh', async (t) => {
  await cluster.start(root)
  await sleep(2000)
  const [vip, mesh] = await cluster.snapshots()
  t.ok(vip!.ok > 0 && mesh!.ok > 0, `both loads are answered (${vip!.ok} through the VIP, ${mesh!.ok} through the mesh)`)
  t.equal(vip!.failed + mesh!.failed, 0, 'and none fails')
  t.equal(Object.keys(vip!.byBackend).length, REPLICAS, 'every task answers')
  const health = await lab.exec('h2', ['netd', 'health'])
  t.match(health.stdout, /TASK\s+STATUS\s+STREAK\s+LAST RESULT\n/, 'netd health lists the checks of the node\'s tasks')
  t.match(health.stdout, /healthy\s+0\s+\S+ exit 0: HTTP 200 from http:\/\/10\.[\d.]+:80\/healthz/, 'with their last result')
  const inspected = JSON.parse(await cluster.cli.ok('h1', 'service', 'inspect', 'web')) as Array<{ Spec: { TaskTemplate: { ContainerSpec: { Healthcheck: unknown } } }, TaskHealth: Array<{ Status: string, Log: unknown[] }> }>
  t.same(inspected[0]!.Spec.TaskTemplate.ContainerSpec.Healthcheck, { Test: ['HTTP', '/healthz:80'], Interval: 250_000_000, Timeout: 1_000_000_000, Retries: 2, StartPeriod: 0 }, 'service inspect shows the check')
  t.ok(inspected[0]!.TaskHealth.length === REPLICAS && inspected[0]!.TaskHealth.every((h) => h.Status === 'healthy'), 'and each task\'s health')
})

t.test('restart condition none: an unhealthy task leaves traffic and comes back once healthy', async (t) => {
  await cluster.cli.ok('h1', 'service', 'update', '--restart-condition', 'none', 'web')
  const { out, backMs } = await cluster.sickenAndHeal('h1')
  t.ok(out.convergedMs <= 2000, `out everywhere ${out.convergedMs} ms after /healthz started failing`)
  t.ok(backMs <= 3000, `back everywhere ${backMs} ms after it healed`)
  t.equal(out.failed, 0, 'no failed request')
  await cluster.cli.ok('h1', 'service', 'update', '--restart-condition', 'any', 'web')
})

t.test('a task made unhealthy leaves DNS and lb on every node, and is replaced', async (t) => {
  const result = await cluster.unhealthy('h3')
  report(t, result)
  // Detection takes up to interval × retries (2 × 250 ms) plus a probe; the rest is propagation.
  t.ok(result.convergedMs <= 2000, `out everywhere ${result.convergedMs} ms after its /healthz started failing`)
  t.ok(result.convergedMs - result.verdictMs <= 1000, `of which ${result.convergedMs - result.verdictMs} ms after its check's verdict (${result.verdictMs} ms)`)
  t.equal(result.replacedBy, 'restart policy', 'the unhealthy task was stopped and replaced (restart condition any)')
  t.equal(result.failed, 0, 'an unhealthy task that still answers fails no request')
})

t.test('a task killed leaves DNS and lb on every node within a second', async (t) => {
  const result = await cluster.taskKilled('h3')
  report(t, result)
  t.ok(result.convergedMs <= 1000, `out everywhere ${result.convergedMs} ms after the kill`)
  t.same(result.late, [], 'no request fails later than a second after the kill')
})

t.test('netd restarted on every node in turn: no request fails', async (t) => {
  const result = await cluster.netdRestarts()
  report(t, result)
  t.equal(result.failed, 0, 'no failed request')
})

t.test('the manager stopped: tasks keep resolving and balancing; a netd restart meanwhile restores the same state; the manager back, nodes resync', async (t) => {
  const result = await cluster.managerDown(2 * GRACE_MS)
  report(t, result)
  t.equal(result.revisionRestored, result.revisionBefore, 'h2 restarted without a manager: the same document, from its local copy')
  t.equal(result.servedWhileAway, result.servedBefore, 'h2 and h3 serve every task they served before')
  t.equal(result.answerWhileAway, cluster.vip, 'a task resolves web while the manager is away')
  t.equal(result.failed, 0, 'no failed request, through the manager\'s absence, a netd restart, and a scale up and down after its return')
})

t.test('a rolling update under load: no request fails', async (t) => {
  const result = await cluster.rollingUpdate()
  report(t, result)
  t.equal(result.failed, 0, 'no failed request')
})

for (const how of ['partition', 'kill'] as const) {
  t.test(`a node ${how === 'kill' ? 'killed' : 'partitioned'}: Down after the grace period, its tasks out of DNS and lb and replaced; back, its stale tasks stop`, async (t) => {
    const result = await cluster.nodeLost('h3', how, 4000)
    report(t, result)
    t.ok(result.convergedMs <= GRACE_MS + 3000, `out of DNS and lb on the other nodes ${result.convergedMs} ms after the fault (grace ${GRACE_MS} ms)`)
    t.ok(result.replacedMs <= GRACE_MS + 7000, `replaced, healthy and served ${result.replacedMs} ms after the fault`)
    t.same(result.late, [], 'no request fails once the node is out')
  })
}

t.test('a node drained under load: its tasks move elsewhere, no request fails', async (t) => {
  const result = await cluster.nodeDrain('h3')
  report(t, result)
  t.equal(result.failed, 0, 'no failed request')
})

t.test('a scale-down under load: no request fails', async (t) => {
  const result = await cluster.scaleDown(2)
  report(t, result)
  t.equal(result.failed, 0, 'no failed request')
})

t.test('service create --replicas 10: every task served on every node within seconds', async (t) => {
  const { ms } = await cluster.create('burst', 10)
  t.comment(`create --replicas 10: served everywhere after ${ms} ms`)
  t.ok(ms <= 10_000, `served everywhere ${ms} ms after the create`)
})
