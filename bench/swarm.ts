/**
 * bench/swarm: how long `weft service create --replicas N` takes to have N
 * tasks running, on a lab of three nodes: from the service's creation to the
 * last task reported running, in the manager's own records (what the system
 * takes), and as a client polling `service ls` sees it (plus the CLI's start
 * up). Each N runs with and without an overlay network (a network adds a veth
 * pair and addresses per task), then its service is removed.
 *
 *   node bench/swarm.ts [--replicas 3,12,30] [--nodes 3]
 */
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { labDown, labUp, type Lab } from '../lab/lab.ts'

const { values } = parseArgs({ options: { replicas: { type: 'string', default: '3,12,30' }, nodes: { type: 'string', default: '3' } } })
const counts = values.replicas.split(',').map(Number)
const LAB = 'benchsw'
const IDLE = ['sh', '-c', 'trap "exit 0" TERM; sleep infinity & wait']

async function weft (lab: Lab, ...args: string[]): Promise<string> {
  const result = await lab.exec('h1', ['weft', ...args])
  if (result.code !== 0) throw new Error(`weft ${args.join(' ')}: ${result.stderr}`)
  return result.stdout
}

await labDown(LAB)
const lab = await labUp({ name: LAB, nodes: Number(values.nodes) })
try {
  const init = await weft(lab, 'swarm', 'init', '--advertise-addr', lab.addr('h1'))
  const join = init.split('run the following command:\n\n')[1]!.split('\n\n')[0]!
  for (const host of lab.topology.hosts.filter((h) => h.role === 'node' && h.name !== 'h1')) await lab.exec(host.name, ['sh', '-c', join])
  await weft(lab, 'network', 'create', 'benchnet')
  const rows: string[] = []
  for (const n of counts) {
    for (const network of [false, true]) {
      const name = `b${n}${network ? 'net' : ''}`
      const started = Date.now()
      await weft(lab, 'service', 'create', '--name', name, '--replicas', String(n), ...(network ? ['--network', 'benchnet'] : []), 'debian', ...IDLE)
      for (;;) {
        const ls = (await weft(lab, 'service', 'ls', '--format', 'json')).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { Name: string, Replicas: string })
        if (ls.find((s) => s.Name === name)?.Replicas === `${n}/${n}`) break
        await sleep(500)
      }
      const seen = Date.now() - started
      const created = Date.parse((JSON.parse(await weft(lab, 'service', 'inspect', name)) as Array<{ CreatedAt: string }>)[0]!.CreatedAt)
      const tasks = (await weft(lab, 'service', 'ps', name, '--format', 'json')).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { StatusAt: string, DesiredState: string })
      const last = Math.max(...tasks.filter((t) => t.DesiredState === 'Running').map((t) => Date.parse(t.StatusAt)))
      rows.push(`${String(n).padStart(4)}  ${network ? 'overlay' : 'none   '}  ${String(last - created).padStart(6)} ms  ${String(seen).padStart(6)} ms`)
      await weft(lab, 'service', 'rm', name)
      // Let the removed service's tasks stop and their namespaces go before the next run.
      for (;;) {
        const left = await Promise.all(lab.topology.hosts.filter((h) => h.role === 'node').map(async (h) => (await lab.exec(h.name, ['ip', 'netns', 'list'])).stdout.split('\n').filter((ns) => ns.startsWith(`${h.netns}-t-`)).length))
        if (left.every((count) => count === 0)) break
        await sleep(500)
      }
    }
  }
  console.log(`replicas  network  manager's records  seen by a polling client (${values.nodes} nodes)`)
  for (const row of rows) console.log(row)
} finally {
  await labDown(LAB)
}
