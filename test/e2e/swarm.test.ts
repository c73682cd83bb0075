/**
 * The Swarm walkthrough (shared/reference/docker-swarm-article.txt) with
 * `weft` for `docker`, on a lab of three hosts: each step runs the CLI on a
 * host, as a person would, and checks what that person would see.
 *
 * One cluster, built up step by step; the subtests run in order and each
 * relies on the ones before it.
 */
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startLab } from '../helpers/lab.ts'
import type { CommandResult } from '../../lab/run-command.ts'
import { IDLE, waitFor, weftCli, type TaskRow } from '../helpers/swarm.ts'

const lab = await startLab(t, { nodes: 3 })
const MANAGER = lab.addr('h1')
const { weft, ok, rows } = weftCli(lab)

const tasksOf = async (service: string): Promise<TaskRow[]> => await rows<TaskRow>('h1', 'service', 'ps', '--no-trunc', service)
const runningTasks = async (service: string): Promise<TaskRow[]> => (await tasksOf(service)).filter((r) => r.DesiredState === 'Running')

/** Resolves when the service has n tasks desired running and all of them run. */
async function converged (service: string, n: number, timeoutMs = 20_000): Promise<TaskRow[]> {
  return await waitFor(`${n} running tasks of ${service}`, async () => {
    const tasks = await runningTasks(service)
    return tasks.length === n && tasks.every((r) => r.State === 'running') && tasks
  }, timeoutMs)
}

const exec = async (host: string, task: string, ...argv: string[]): Promise<CommandResult> => await lab.exec(host, ['netd', 'exec', task, '--', ...argv])

interface Inspect { ID: string, Spec: Record<string, unknown>, UpdateStatus?: { State: string, StartedAt: string, CompletedAt?: string }, Endpoint: { VirtualIPs?: Array<{ Addr: string }> } }
const inspect = async (kind: string, ref: string): Promise<Inspect> => (JSON.parse(await ok('h1', kind, 'inspect', ref)) as Inspect[])[0]!

t.test('swarm init on the manager prints the worker join command', async (t) => {
  const out = await ok('h1', 'swarm', 'init', '--advertise-addr', MANAGER, '--dispatcher-heartbeat', '1s')
  t.match(out, /^Swarm initialized: current node \([a-z0-9]{25}\) is now a manager\.\n\nTo add a worker to this swarm, run the following command:\n\nweft swarm join \\\n--token SWMTKN-1-[a-z0-9]{50}-[a-z0-9]{25} \\\n192\.168\.99\.11:2377\n\nTo add a manager to this swarm, run 'weft swarm join-token manager' and follow the instructions\.\n$/)
  const command = out.split('run the following command:\n\n')[1]!.split('\n\n')[0]!
  t.equal((await weft('h1', 'swarm', 'join-token', 'worker')).stdout, `To add a worker to this swarm, run the following command:\n\n${command}\n`, 'join-token worker prints the same command')
  t.match(await ok('h1', 'info'), /^Swarm: active\nNodeID: [a-z0-9]{25}\nIs Manager: true\nClusterID: [a-z0-9]{25}\nManagers: 1\nNodes: 1\n/m)

  for (const host of ['h2', 'h3']) {
    // The printed command, as printed: backslash-newlines and all.
    const joined = await lab.exec(host, ['sh', '-c', command])
    t.equal(joined.code, 0, joined.stderr)
    t.equal(joined.stdout, 'This node joined a swarm as a worker.\n', `${host} joined`)
  }
  t.match(await ok('h1', 'info'), /^Managers: 1\nNodes: 3$/m, 'info counts three nodes')
  t.match(await ok('h2', 'info'), /^Swarm: active\nNodeID: [a-z0-9]{25}\nIs Manager: false\n/, 'a worker knows it is one')
})

t.test('node ls: every node ready, the manager leads and is marked *', async (t) => {
  const text = await ok('h1', 'node', 'ls')
  const lines = text.trim().split('\n')
  t.match(lines[0], /^ID\s+HOSTNAME\s+STATUS\s+AVAILABILITY\s+MANAGER STATUS$/)
  t.match(lines[1], /^[a-z0-9]{25} \*\s+h1\s+Ready\s+Active\s+Leader$/)
  t.match(lines[2], /^[a-z0-9]{25}\s+h2\s+Ready\s+Active$/)
  t.match(lines[3], /^[a-z0-9]{25}\s+h3\s+Ready\s+Active$/)
  const self = JSON.parse(await ok('h1', 'node', 'inspect', 'self')) as Array<Record<string, any>>
  t.match(self[0], {
    Spec: { Role: 'manager', Availability: 'active' },
    Description: { Hostname: 'h1', Platform: { OS: 'linux' } },
    Status: { State: 'ready', Addr: MANAGER },
    ManagerStatus: { Leader: true, Reachability: 'reachable', Addr: `${MANAGER}:2377` }
  })
  t.equal((await ok('h1', 'node', 'ls', '-q')).trim().split('\n').length, 3)
  const worker = await weft('h2', 'node', 'ls')
  t.equal(worker.code, 1)
  t.equal(worker.stderr, 'weft: This node is not a swarm manager. Worker nodes can\'t be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager. [NETD_ERR_SWARM_NOT_MANAGER]\n')
})

t.test('drain the manager, label a worker, and place a constrained service on it', async (t) => {
  await ok('h1', 'node', 'update', '--availability', 'drain', 'h1')
  t.match(await ok('h1', 'node', 'ls'), /\*\s+h1\s+Ready\s+Drain\s+Leader/)
  await ok('h1', 'node', 'update', '--label-add', 'datacenter=bjidc', 'h2')
  t.match((JSON.parse(await ok('h1', 'node', 'inspect', 'h2')) as any[])[0].Spec.Labels, { datacenter: 'bjidc' })
  await ok('h1', 'service', 'create', '--name', 'pinned', '--replicas', '2', '--constraint', 'node.labels.datacenter==bjidc', 'debian', ...IDLE)
  const tasks = await converged('pinned', 2)
  t.same(tasks.map((r) => r.Node), ['h2', 'h2'], 'both tasks on the labelled worker')
  await ok('h1', 'service', 'rm', 'pinned')
  await ok('h1', 'node', 'update', '--availability', 'active', 'h1')
})

t.test('service create, ls and ps: myapp and a two-replica redis', async (t) => {
  const started = Date.now()
  const id = (await ok('h1', 'service', 'create', '--replicas', '1', '--name', 'myapp', 'debian', ...IDLE)).trim()
  t.match(id, /^[a-z0-9]{25}$/, 'create prints the service id')
  const redisStarted = Date.now()
  await ok('h1', 'service', 'create', '--replicas', '2', '--name', 'myredis', 'debian', 'redis-server', '--port', '6379', '--save', '', '--appendonly', 'no')
  await converged('myapp', 1)
  const redis = await converged('myredis', 2)
  // From the manager's records: the service's creation to its last task reported running.
  const created = Date.parse((await inspect('service', 'myredis') as unknown as { CreatedAt: string }).CreatedAt)
  const createToRunningMs = Math.max(...redis.map((r) => Date.parse(r.StatusAt))) - created
  t.comment(`service create --replicas 2 → both running: ${createToRunningMs} ms in the manager's records, ${Date.now() - redisStarted} ms as the CLI saw it (both services: ${Date.now() - started} ms)`)
  t.equal(new Set(redis.map((r) => r.Node)).size, 2, 'the replicas are spread over two nodes')

  const ls = await ok('h1', 'service', 'ls')
  t.match(ls, /^ID\s+NAME\s+MODE\s+REPLICAS\s+IMAGE\s+PORTS$/m)
  t.match(ls, new RegExp(`^${id.slice(0, 12)}\\s+myapp\\s+replicated\\s+1/1\\s+debian$`, 'm'))
  t.match(ls, /^[a-z0-9]{12}\s+myredis\s+replicated\s+2\/2\s+debian$/m)
  const ps = await ok('h1', 'service', 'ps', 'myredis')
  t.match(ps, /^ID\s+NAME\s+IMAGE\s+NODE\s+DESIRED STATE\s+CURRENT STATE\s+ERROR\s+PORTS$/m)
  t.match(ps, /^[a-z0-9]{12}\s+myredis\.1\s+debian\s+h\d\s+Running\s+Running (less than a second|\d+ seconds?) ago$/m)
  t.match(ps, /^[a-z0-9]{12}\s+myredis\.2\s+debian\s+h\d\s+Running\s+Running /m)
  const pong = await exec(redis[0]!.Node, 'myredis.1', 'redis-cli', 'ping')
  t.equal(pong.stdout.trim(), 'PONG', 'redis answers inside its task')
  t.same((await ok('h1', 'service', 'ls', '-q')).trim().split('\n').length, 2)
})

t.test('scale to three: one replica per node', async (t) => {
  t.equal(await ok('h1', 'service', 'scale', 'myredis=3'), 'myredis scaled to 3\n')
  const tasks = await converged('myredis', 3)
  t.same(tasks.map((r) => r.Node).sort(), ['h1', 'h2', 'h3'])
  t.match(await ok('h1', 'service', 'ls'), /myredis\s+replicated\s+3\/3/)
})

t.test('env, workdir and user are what the task sees', async (t) => {
  await ok('h1', 'service', 'create', '--name', 'helloworld', '--env', 'MYVAR=myvalue', '--workdir', '/tmp', '--user', 'nobody', 'debian', ...IDLE)
  const [task] = await converged('helloworld', 1)
  const seen = await exec(task!.Node, 'helloworld.1', 'sh', '-c', 'echo "$MYVAR $(pwd) $(id -un)"')
  t.equal(seen.code, 0, seen.stderr)
  t.equal(seen.stdout, 'myvalue /tmp nobody\n')
  const logs = await ok('h1', 'service', 'logs', 'myredis')
  t.match(logs, /^myredis\.1\.[a-z0-9]{12}@h\d\s+\| .*Ready to accept connections/m, 'service logs gathers each task\'s output from its node')
  await ok('h1', 'service', 'rm', 'helloworld')
})

interface Attachment { task: string, host: string, ip: string }
let webTasks: Attachment[] = []

t.test('an overlay network: tasks on three hosts reach each other by IP and by name', async (t) => {
  const id = (await ok('h1', 'network', 'create', '--driver', 'overlay', 'my-network')).trim()
  t.match(id, /^[a-z0-9]{25}$/)
  t.match(await ok('h1', 'network', 'ls'), new RegExp(`^${id.slice(0, 12)}\\s+my-network\\s+overlay\\s+swarm$`, 'm'))
  await ok('h1', 'service', 'create', '--replicas', '3', '--network', 'my-network', '--name', 'myweb', '--update-delay', '2s', '--update-monitor', '4s', 'debian', ...IDLE)
  const tasks = await converged('myweb', 3)
  t.same(tasks.map((r) => r.Node).sort(), ['h1', 'h2', 'h3'])
  webTasks = await Promise.all(tasks.map(async (r) => {
    const addr = await exec(r.Node, r.ID, 'ip', '-4', '-o', 'addr', 'show', 'eth0')
    return { task: r.ID, host: r.Node, ip: /inet (\d+\.\d+\.\d+\.\d+)\//.exec(addr.stdout)![1]! }
  }))
  for (const from of webTasks) {
    for (const to of webTasks.filter((x) => x !== from)) {
      const ping = await exec(from.host, from.task, 'ping', '-c', '1', '-W', '2', to.ip)
      t.equal(ping.code, 0, `${from.host} → ${to.host} (${to.ip})`)
    }
  }
  const names = await exec(webTasks[0]!.host, webTasks[0]!.task, 'getent', 'ahostsv4', 'tasks.myweb')
  t.same([...new Set(names.stdout.trim().split('\n').map((l) => l.split(/\s+/)[0]))].sort(), webTasks.map((w) => w.ip).sort(), 'tasks.myweb lists the three')
  const vip = (await inspect('service', 'myweb')).Endpoint.VirtualIPs![0]!.Addr.split('/')[0]
  const byName = await exec(webTasks[1]!.host, webTasks[1]!.task, 'getent', 'hosts', 'myweb')
  t.match(byName.stdout, new RegExp(`^${vip!.replace(/\./g, '\\.')}\\s+myweb`), 'the service name is its VIP')
})

t.test('a task killed with SIGKILL is replaced', async (t) => {
  const victim = (await runningTasks('myredis')).find((r) => r.Slot === 2)!
  const record = JSON.parse(await readFile(join(lab.hostDir(victim.Node), 'tasks', victim.ID, 'record.json'), 'utf8')) as { init: { pid: number } }
  process.kill(record.init.pid, 'SIGKILL')
  const failed = await waitFor('the failure reported', async () => (await tasksOf('myredis')).find((r) => r.ID === victim.ID && r.State === 'failed'))
  t.equal(failed.Error, '"non-zero exit (137): killed by SIGKILL"')
  const replaced = await waitFor('a replacement in slot 2', async () => (await runningTasks('myredis')).find((r) => r.Slot === 2 && r.ID !== victim.ID && r.State === 'running'), 20_000)
  t.ok(replaced, `slot 2 runs ${replaced.ID.slice(0, 12)} on ${replaced.Node}`)
  t.match(await ok('h1', 'service', 'ps', 'myredis'), /^[a-z0-9]{12}\s+ \\_ myredis\.2\s+debian\s+h\d\s+Shutdown\s+Failed /m, 'the failed task is history')
})

t.test('a rolling update replaces one task at a time, update-delay apart', async (t) => {
  const before = new Set((await runningTasks('myweb')).map((r) => r.ID))
  await ok('h1', 'service', 'update', '--image', 'debian:12', 'myweb')
  const done = await waitFor('the update to complete', async () => {
    const service = await inspect('service', 'myweb')
    return service.UpdateStatus?.State === 'completed' && service.UpdateStatus
  }, 40_000)
  const took = Date.parse(done.CompletedAt!) - Date.parse(done.StartedAt)
  t.ok(took >= 2 * 2000, `three batches, two delays of 2 s between them: ${took} ms`)
  const after = await converged('myweb', 3)
  t.ok(after.every((r) => !before.has(r.ID)), 'every task was replaced')
  t.match(await ok('h1', 'service', 'ps', 'myweb', '-f', 'desired-state=running'), /myweb\.1\s+debian:12\s/)
  t.match((await inspect('service', 'myweb')).Spec, { TaskTemplate: { ContainerSpec: { Image: 'debian:12' } } })
  webTasks = await Promise.all(after.map(async (r) => {
    const addr = await exec(r.Node, r.ID, 'ip', '-4', '-o', 'addr', 'show', 'eth0')
    return { task: r.ID, host: r.Node, ip: /inet (\d+\.\d+\.\d+\.\d+)\//.exec(addr.stdout)![1]! }
  }))
})

t.test('the manager killed with SIGKILL and restarted keeps every service, network and address', async (t) => {
  const snapshot = async (): Promise<string> => JSON.stringify({
    services: await rows('h1', 'service', 'ls', '--no-trunc'),
    networks: await rows('h1', 'network', 'ls', '--no-trunc'),
    vips: (await inspect('service', 'myweb')).Endpoint.VirtualIPs,
    tasks: (await runningTasks('myweb')).map((r) => `${r.ID} ${r.Node} ${r.State}`).sort(),
    nodes: (await rows('h1', 'node', 'ls')).map((r) => `${r.Hostname} ${r.Status} ${r.Availability}`)
  })
  const before = await snapshot()
  await lab.stopNetd('h1', 'SIGKILL')
  const ping = await exec(webTasks[1]!.host, webTasks[1]!.task, 'ping', '-c', '1', '-W', '2', webTasks[2]!.ip)
  t.equal(ping.code, 0, 'with the manager down, tasks still reach each other')
  await lab.startNetd('h1')
  t.equal(await snapshot(), before, 'the same services, networks, VIPs, tasks and nodes')
  const after = await Promise.all(webTasks.map(async (w) => (await exec(w.host, w.task, 'ip', '-4', '-o', 'addr', 'show', 'eth0')).stdout))
  t.same(after.map((a) => /inet (\S+)\//.exec(a)?.[1]), webTasks.map((w) => w.ip), 'every task keeps its address')
  await ok('h1', 'service', 'scale', 'myapp=2')
  await converged('myapp', 2)
  t.pass('and the restarted manager takes new changes')
})

t.test('bad input: one line, exit status 1, nothing changed', async (t) => {
  const state = async (): Promise<string> => JSON.stringify([await rows('h1', 'service', 'ls', '--no-trunc'), await rows('h1', 'network', 'ls', '--no-trunc'), await rows('h1', 'node', 'ls')])
  const before = await state()
  const cases: Array<[string[], RegExp]> = [
    [['service', 'create', '--replicas', 'x', 'debian', 'true'], /--replicas: must be a whole number \[WEFT_ERR_USAGE\]/],
    [['service', 'create', '--name', 'myapp', 'debian', 'true'], /service myapp already exists .* \[STORE_ERR_NAME_IN_USE\]/],
    [['service', 'create', '--network', 'nope', 'debian', 'true'], /network nope not found \[STORE_ERR_NOT_FOUND\]/],
    [['service', 'create', '--constraint', 'node.foo==1', 'debian', 'true'], /\[STORE_ERR_INVALID_CONSTRAINT\]/],
    [['service', 'create', '--publish', 'published=99999,target=80', 'debian', 'true'], /--publish: published must be a port/],
    [['service', 'update', '--update-delay', 'soon', 'myweb'], /invalid duration "soon" for --update-delay: .* \[WEFT_ERR_USAGE\]/],
    [['service', 'scale', 'nosuch=2'], /No such service: nosuch \[WEFT_ERR_NOT_FOUND\]/],
    [['network', 'create', '--subnet', '10.0.0.0/24', 'clash'], /\[STORE_ERR_SUBNET_OVERLAP\]/],
    [['network', 'create', '--driver', 'bridge', 'br'], /\[WEFT_ERR_USAGE\]/],
    [['network', 'rm', 'my-network'], /\[STORE_ERR_NETWORK_IN_USE\]/],
    [['node', 'update', '--availability', 'sleepy', 'h2'], /\[WEFT_ERR_USAGE\]/],
    [['node', 'rm', 'h2'], /node h2 is not down and can't be removed \(use force\) \[STORE_ERR_NODE_NOT_DOWN\]/],
    [['node', 'promote', 'h2'], /\[MANAGER_ERR_UNSUPPORTED\]/],
    [['node', 'demote', 'h1'], /last manager .* \[STORE_ERR_LAST_MANAGER\]/],
    [['swarm', 'init'], /already part of a swarm.* \[NETD_ERR_SWARM_ACTIVE\]/],
    [['swarm', 'join-token', 'admin'], /\[WEFT_ERR_USAGE\]/]
  ]
  for (const [args, message] of cases) {
    const result = await weft('h1', ...args)
    t.equal(result.code, 1, `weft ${args.join(' ')}: exit 1`)
    t.match(result.stderr, /^weft: [^\n]+\n$/, 'one line')
    t.match(result.stderr, message)
  }
  t.equal(await state(), before, 'services, networks and nodes as they were')
})

t.test('service rm: the tasks stop on their nodes and their addresses are released', async (t) => {
  await ok('h1', 'service', 'rm', 'myweb')
  t.match((await weft('h1', 'service', 'ps', 'myweb')).stderr, /No such service: myweb/)
  for (const w of webTasks) {
    await waitFor(`task ${w.task} gone from ${w.host}`, async () => {
      const namespaces = await lab.exec(w.host, ['ip', 'netns', 'list'])
      return !namespaces.stdout.includes(w.task)
    })
  }
  const network = JSON.parse(await ok('h1', 'network', 'inspect', 'my-network')) as Array<{ Services: object }>
  t.same(network[0]!.Services, {}, 'no service on the network')
  t.equal(await ok('h1', 'network', 'rm', 'my-network'), 'my-network\n', 'the network can go: no task holds an address on it')
  t.notMatch(await ok('h1', 'network', 'ls'), /my-network/)
})

t.test('nodes leave; the manager only with --force', async (t) => {
  for (const host of ['h3', 'h2']) {
    t.equal(await ok(host, 'swarm', 'leave'), 'Node left the swarm.\n')
    t.equal(await ok(host, 'info'), 'Swarm: inactive\n')
  }
  const nodes = await waitFor('h2 and h3 down', async () => {
    const list = await rows<{ Hostname: string, Status: string }>('h1', 'node', 'ls')
    return list.filter((n) => n.Status === 'Down').length === 2 && list
  })
  t.same(nodes.map((n) => `${n.Hostname} ${n.Status}`), ['h1 Ready', 'h2 Down', 'h3 Down'])
  await converged('myredis', 3)
  t.same((await runningTasks('myredis')).map((r) => r.Node), ['h1', 'h1', 'h1'], 'their tasks moved to the node that is left')
  const refused = await weft('h1', 'swarm', 'leave')
  t.equal(refused.code, 1)
  t.match(refused.stderr, /Use `--force` to ignore this message\. \[NETD_ERR_SWARM_LEAVE_MANAGER\]/)
  t.equal(await ok('h1', 'swarm', 'leave', '--force'), 'Node left the swarm.\n')
  t.equal(await ok('h1', 'info'), 'Swarm: inactive\n')
  for (const host of ['h1', 'h2', 'h3']) {
    const namespaces = (await lab.exec(host, ['ip', 'netns', 'list'])).stdout.split('\n').filter((n) => n.startsWith(`${lab.netns(host)}-`))
    t.same(namespaces, [], `${host} keeps no namespace of its own`)
    const tasks = JSON.parse((await lab.exec(host, ['curl', '-s', '--unix-socket', lab.netdSocket(host), 'http://netd/swarm/tasks'])).stdout) as unknown[]
    t.same(tasks, [], `${host} runs no task`)
  }
})
