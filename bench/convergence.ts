/**
 * bench/convergence (issue 6): for each fault, the time from the fault (or
 * from `service create`) to DNS and lb being right on every node, and the
 * requests that failed meanwhile, on a lab of three under two constant loads
 * (a task through the VIP, `outside` through a published port). The faults
 * and the measurements are the e2e test's (test/helpers/convergence.ts); here
 * they run with a 5 s grace period (heartbeat 1.67 s × 3), the issue's figure.
 *
 * Swarm's line is its documented timers, printed as such (no Docker here):
 * heartbeat 5 s with a grace of 3 periods before a node is Down, health
 * checks every 30 s × 3 retries by default, and a 600 s DNS TTL.
 *
 * Targets: task death or unhealthiness to out of DNS and lb everywhere ≤ 1 s
 * (measured from the check's verdict: the check's own interval × retries is
 * printed apart); node death to tasks replaced and reachable ≤ 10 s;
 * `service create --replicas 10` to all reachable ≤ 3 s.
 *
 *   node bench/convergence.ts [--rate 50] [--replicas 4]
 */
import { parseArgs } from 'node:util'
import { labDown, labUp } from '../lab/lab.ts'
import { LoadedCluster, SWARM_FIGURES, type ScenarioResult } from '../test/helpers/convergence.ts'

const { values } = parseArgs({ options: { rate: { type: 'string', default: '50' }, replicas: { type: 'string', default: '4' } } })
const LAB = 'benchcv'
const HEARTBEAT_MS = 1667

const cleanups: Array<() => void | Promise<void>> = []
const teardown = { teardown: (fn: () => void | Promise<void>) => { cleanups.push(fn) } }
let stopping = false
async function cleanup (): Promise<void> {
  if (stopping) return
  stopping = true
  for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined)
  await labDown(LAB).catch(() => undefined)
}
process.on('SIGINT', () => { void cleanup().then(() => process.exit(130)) })
process.on('SIGTERM', () => { void cleanup().then(() => process.exit(143)) })

interface Row { scenario: string, everywhereMs: number | null, replacedMs: number | null, failed: number | null, target: string, swarm: string }
const rows: Row[] = []
const row = (result: ScenarioResult, target: string, extra: Partial<Row> = {}): void => {
  rows.push({ scenario: result.scenario, everywhereMs: result.convergedMs, replacedMs: null, failed: result.failed, target, swarm: SWARM_FIGURES[result.scenario] ?? '', ...extra })
  process.stderr.write(`${result.scenario}: ${result.convergedMs} ms, ${result.failed} failed ${JSON.stringify(result.errors)}${result.afterConverged.length === 0 ? '' : `; after convergence: ${result.afterConverged.join(', ')}`}\n`)
}

try {
  await labDown(LAB).catch(() => undefined)
  const lab = await labUp({ name: LAB, nodes: 3 })
  const cluster = new LoadedCluster(lab, { heartbeatMs: HEARTBEAT_MS, replicas: Number(values.replicas), rate: Number(values.rate) })
  await cluster.start(teardown)

  const created = await cluster.create('burst', 10)
  rows.push({ scenario: 'create 10', everywhereMs: created.ms, replacedMs: null, failed: null, target: '≤ 3000', swarm: SWARM_FIGURES['create 10']! })
  await cluster.cli.ok('h1', 'service', 'rm', 'burst')

  const unhealthy = await cluster.unhealthy('h3')
  // The check's own verdict (interval × retries) is the user's setting; from then on it is weft's.
  row(unhealthy, `≤ 1000 after verdict (${unhealthy.verdictMs} ms)`, { everywhereMs: unhealthy.convergedMs - unhealthy.verdictMs })
  row(await cluster.taskKilled('h3'), '≤ 1000')
  for (const how of ['kill', 'partition'] as const) {
    const lost = await cluster.nodeLost('h3', how, 3000)
    row(lost, 'replaced ≤ 10000', { replacedMs: lost.replacedMs })
  }
  row(await cluster.netdRestarts(), '0 failed')
  row(await cluster.managerDown(10_000), '0 failed')
  row(await cluster.rollingUpdate(), '0 failed')
  row(await cluster.nodeDrain('h3'), '0 failed')
  row(await cluster.scaleDown(2), '0 failed')

  const text = (v: number | null): string => (v === null ? '-' : String(v))
  console.log(`convergence, lab of 3, grace ${3 * HEARTBEAT_MS} ms, load ${values.rate} req/s through a VIP and ${values.rate} req/s through the routing mesh`)
  console.log(['scenario'.padEnd(17), 'DNS+lb ms'.padStart(9), 'replaced ms'.padStart(11), 'failed'.padStart(6), '  target'.padEnd(28), 'Swarm'].join(' '))
  for (const r of rows) {
    console.log([r.scenario.padEnd(17), text(r.everywhereMs).padStart(9), text(r.replacedMs).padStart(11), text(r.failed).padStart(6), `  ${r.target}`.padEnd(28), r.swarm].join(' '))
  }
} finally {
  await cleanup()
}
