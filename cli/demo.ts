/**
 * The README's demo: a lab of three hosts, two overlay networks, netd's own
 * view of them, and real traffic across hosts — a ping and an HTTP request.
 *
 *   node cli/demo.ts [--keep]     (--keep leaves the lab up to explore)
 */
import { parseArgs } from 'node:util'
import { spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { labDown, labUp } from '../lab/lab.ts'
import { NetdClient } from '../netd/api-client.ts'
import { taskNamespaceName } from '../netd/kernel-state.ts'
import { macForIp, nodeDocument, type ClusterEndpoint, type ClusterView } from '../manager/node-view.ts'
import { runCommand } from '../lab/run-command.ts'

const { values } = parseArgs({ options: { keep: { type: 'boolean', default: false } } })
const LAB = 'demo'
const say = (text: string): void => { process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`) }

await labDown(LAB)
say('weft lab up --nodes 3 --name demo')
const lab = await labUp({ name: LAB, nodes: 3 })
process.stdout.write(lab.topology.hosts.map((h) => `${h.name.padEnd(8)} ${h.netns.padEnd(24)} ${h.address ?? ''}`).join('\n') + '\n')
let failed = false
try {
  const hosts = ['h1', 'h2', 'h3']
  const endpoint = (task: string, network: string, ip: string, host: string): ClusterEndpoint =>
    ({ task, network, ip, mac: macForIp(ip), node: lab.addr(host) })
  const cluster: ClusterView = {
    revision: 1,
    networks: [
      { id: 'frontend', name: 'frontend', subnet: '10.0.1.0/24', gateway: '10.0.1.1', vni: 4097 },
      { id: 'backend', name: 'backend', subnet: '10.0.2.0/24', gateway: '10.0.2.1', vni: 4098 }
    ],
    endpoints: [
      endpoint('web1', 'frontend', '10.0.1.11', 'h1'),
      endpoint('web2', 'frontend', '10.0.1.12', 'h2'),
      endpoint('web2', 'backend', '10.0.2.12', 'h2'),
      endpoint('db1', 'backend', '10.0.2.13', 'h3')
    ]
  }
  say('netd apply: each node gets its own view of the cluster (its tasks, their networks, their peers)')
  for (const host of hosts) {
    const doc = nodeDocument(cluster, lab.addr(host))
    const summary = await new NetdClient(lab.netdSocket(host)).call<{ commands: number, durationMs: number }>('PUT', '/state', doc)
    process.stdout.write(`${host}: ${doc.networks.length} network(s), ${doc.endpoints.length} local and ${doc.remoteEndpoints.length} remote endpoint(s): ${summary.commands} kernel changes in ${summary.durationMs} ms\n`)
  }
  const show = async (host: string, ...argv: string[]): Promise<void> => {
    process.stdout.write(`\n${host}$ ${argv.join(' ')}\n`)
    process.stdout.write((await lab.exec(host, argv)).stdout)
  }
  say('what netd on h2 built')
  await show('h2', 'netd', 'networks')
  await show('h2', 'netd', 'endpoints')
  await show('h2', 'netd', 'fdb', 'frontend')
  await show('h2', 'netd', 'check')

  const taskNs = (host: string, task: string): string => taskNamespaceName(`${lab.netns(host)}-`, task)
  say('ping web1 (h1) → web2 (h2) over the frontend overlay')
  const ping = await runCommand(['ip', 'netns', 'exec', taskNs('h1', 'web1'), 'ping', '-c', '3', '-i', '0.2', '10.0.1.12'])
  process.stdout.write(ping.stdout)
  failed ||= ping.code !== 0

  say('HTTP: db1 (h3) → web2 (h2) over the backend overlay')
  const server = spawn('ip', ['netns', 'exec', taskNs('h2', 'web2'), process.execPath, '-e',
    "require('http').createServer((q, s) => s.end('hello from web2 on h2, you are ' + q.socket.remoteAddress + '\\n')).listen(80)"], { stdio: 'ignore' })
  await sleep(500)
  const curl = await runCommand(['ip', 'netns', 'exec', taskNs('h3', 'db1'), 'curl', '-sS', '--max-time', '3', 'http://10.0.2.12/'])
  server.kill()
  process.stdout.write(curl.stdout + curl.stderr)
  failed ||= curl.code !== 0

  say('isolation: web1 is not on the backend network, so db1 cannot reach it')
  const isolated = await runCommand(['ip', 'netns', 'exec', taskNs('h3', 'db1'), 'ping', '-c', '1', '-W', '1', '10.0.1.11'])
  process.stdout.write(isolated.code === 0 ? 'UNEXPECTED: reachable\n' : 'unreachable, as it should be\n')
  failed ||= isolated.code === 0
} finally {
  if (values.keep) {
    say('the lab stays up: try `bin/weft lab exec --name demo h1 -- netd networks`; remove it with `bin/weft lab down --name demo`')
  } else {
    await labDown(LAB)
    say('lab removed (run with --keep to explore it)')
  }
}
process.exitCode = failed ? 1 : 0
