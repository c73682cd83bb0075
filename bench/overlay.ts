/**
 * bench/overlay: iperf3 throughput task-to-task over the VXLAN overlay next
 * to host-to-host over the underlay it rides on, in one run on one lab, and
 * their ratio — single stream and 4 streams. DESIGN.md's reference figures
 * on this machine kind: underlay 15–17 Gbit/s, overlay 0.72–0.86× of it.
 *
 *   node bench/overlay.ts [--seconds 5]
 */
import { parseArgs } from 'node:util'
import { spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { labDown, labUp } from '../lab/lab.ts'
import { NetdClient } from '../netd/api-client.ts'
import { taskNamespaceName } from '../netd/kernel-state.ts'
import { macForIp, nodeDocument, type ClusterView } from '../manager/node-view.ts'
import { runCommand } from '../lab/run-command.ts'

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' } } })
const seconds = Number(values.seconds)
const LAB = 'bench'

await labDown(LAB)
const lab = await labUp({ name: LAB, nodes: 2 })
try {
  const prefix = (host: string) => `${lab.netns(host)}-`
  const cluster: ClusterView = {
    revision: 1,
    networks: [{ id: 'bench', name: 'bench', subnet: '10.20.0.0/24', gateway: '10.20.0.1', vni: 4200 }],
    endpoints: [
      { task: 'client', network: 'bench', ip: '10.20.0.11', mac: macForIp('10.20.0.11'), node: lab.addr('h1') },
      { task: 'server', network: 'bench', ip: '10.20.0.12', mac: macForIp('10.20.0.12'), node: lab.addr('h2') }
    ]
  }
  for (const host of ['h1', 'h2']) await new NetdClient(lab.netdSocket(host)).call('PUT', '/state', nodeDocument(cluster, lab.addr(host)))

  const paths = {
    underlay: { server: lab.netns('h2'), client: lab.netns('h1'), target: lab.addr('h2') },
    overlay: { server: taskNamespaceName(prefix('h2'), 'server'), client: taskNamespaceName(prefix('h1'), 'client'), target: '10.20.0.12' }
  }
  const results: Record<string, Record<string, number>> = { underlay: {}, overlay: {} }
  for (const streams of [1, 4]) {
    // Alternate the two paths so drift in machine load hits both alike.
    for (const name of ['underlay', 'overlay'] as const) {
      const path = paths[name]
      const server = spawn('ip', ['netns', 'exec', path.server, 'iperf3', '-s', '-1', '-B', path.target], { stdio: 'ignore' })
      await sleep(300)
      const run = await runCommand(['ip', 'netns', 'exec', path.client, 'iperf3', '-J', '-c', path.target, '-t', String(seconds), '-P', String(streams)])
      server.kill()
      if (run.code !== 0) throw new Error(`iperf3 ${name} -P ${streams} failed: ${run.stderr || run.stdout.slice(0, 400)}`)
      const report = JSON.parse(run.stdout) as { end: { sum_received: { bits_per_second: number } } }
      results[name]![String(streams)] = report.end.sum_received.bits_per_second / 1e9
    }
  }
  const rows = [1, 4].map((streams) => {
    const underlay = results.underlay![String(streams)]!
    const overlay = results.overlay![String(streams)]!
    return `${String(streams).padEnd(8)} ${underlay.toFixed(2).padStart(14)} ${overlay.toFixed(2).padStart(14)} ${(overlay / underlay).toFixed(2).padStart(8)}×`
  })
  process.stdout.write([
    `overlay vs underlay throughput (iperf3, ${seconds} s per run, peer: the underlay itself)`,
    `${'streams'.padEnd(8)} ${'underlay Gb/s'.padStart(14)} ${'overlay Gb/s'.padStart(14)} ${'ratio'.padStart(9)}`,
    ...rows
  ].join('\n') + '\n')
} finally {
  await labDown(LAB)
}
