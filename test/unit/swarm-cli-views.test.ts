/**
 * What `weft node ls`, `service ls`, `service ps`, `info` and the inspect
 * commands print, from a cluster on paper (the orchestrator's simulation):
 * Docker's columns and words, history rows, and Docker-shaped inspect JSON.
 */
import t from 'tap'
import { inspectNetwork, inspectNode, inspectService, nodeRows, nodeTable, networkRows, resolve, serviceRows, taskRows, taskTable } from '../../cli/cluster-views.ts'
import { infoText } from '../../cli/swarm-commands.ts'
import { logPrefix, logTargets } from '../../cli/service-commands.ts'
import { formatTable } from '../../cli/table.ts'
import { Simulation } from '../../manager/orchestrator/simulation.ts'
import type { ClusterSnapshot } from '../../manager/control.ts'

function walkthrough (): Simulation {
  const sim = new Simulation({ now: Date.parse('2017-03-12T15:25:51Z') })
  sim.must({ type: 'cluster.init', clusterId: 'qi4i0vh7lgb60qxy3mdygb27f', node: { id: 'qc42f6myqfpoevfkrzmx08n0r', hostname: 'manager', addr: '192.168.1.107' }, ingressNetworkId: 'ingressnet0000000000000000' })
  sim.must({ type: 'node.join', node: { id: 'oibbiiwrgwjkw0ni38ydrfsre', hostname: 'worker1', addr: '192.168.1.108' } })
  sim.must({ type: 'node.join', node: { id: 'oocli2uzdt2hy6o50g5z6j7dq', hostname: 'worker2', addr: '192.168.1.109' } })
  sim.must({ type: 'service.create', id: 'kilpacb9uy4qdgtqvm4uvbk2c', spec: { name: 'myapp', image: 'alpine:latest', args: ['ping', 'shiyanjun.cn'] } })
  sim.must({ type: 'service.create', id: 'vf1kcgtd5byc8mifyzp0xcm8n', spec: { name: 'myredis', image: 'redis', mode: { kind: 'replicated', replicas: 2 }, ports: [{ target: 6379, published: 6379, mode: 'host' }] } })
  sim.settle()
  return sim
}

t.test('node ls: the article\'s table', async (t) => {
  const sim = walkthrough()
  const table = formatTable(['ID', 'HOSTNAME', 'STATUS', 'AVAILABILITY', 'MANAGER STATUS'], nodeTable(nodeRows(sim.state, 'qc42f6myqfpoevfkrzmx08n0r')))
  t.equal(table, [
    'ID                            HOSTNAME   STATUS   AVAILABILITY   MANAGER STATUS',
    'qc42f6myqfpoevfkrzmx08n0r *   manager    Ready    Active         Leader',
    'oibbiiwrgwjkw0ni38ydrfsre     worker1    Ready    Active',
    'oocli2uzdt2hy6o50g5z6j7dq     worker2    Ready    Active',
    ''
  ].join('\n'))
  sim.must({ type: 'node.update', node: 'manager', availability: 'drain' })
  sim.must({ type: 'node.status', node: 'worker2', status: 'down' })
  t.same(nodeRows(sim.state, null).map((r) => `${r.Hostname} ${r.Status} ${r.Availability} ${r.ManagerStatus}`), ['manager Ready Drain Leader', 'worker1 Ready Active ', 'worker2 Down Active '])
})

t.test('node inspect: the article\'s shape', async (t) => {
  const sim = walkthrough()
  const snapshot: ClusterSnapshot = {
    state: sim.state,
    descriptions: { qc42f6myqfpoevfkrzmx08n0r: { hostname: 'manager', platform: { architecture: 'x86_64', os: 'linux' }, resources: { nanoCPUs: 1e9, memoryBytes: 1912082432 }, engineVersion: '0.1.0' } },
    managerAddr: '192.168.1.107:2377',
    manager: 'qc42f6myqfpoevfkrzmx08n0r'
  }
  const node = inspectNode(snapshot, sim.state.nodes.qc42f6myqfpoevfkrzmx08n0r!)
  t.match(node, {
    ID: 'qc42f6myqfpoevfkrzmx08n0r',
    Version: { Index: Number },
    CreatedAt: '2017-03-12T15:25:51.000Z',
    Spec: { Role: 'manager', Availability: 'active' },
    Description: { Hostname: 'manager', Platform: { Architecture: 'x86_64', OS: 'linux' }, Resources: { NanoCPUs: 1000000000, MemoryBytes: 1912082432 }, Engine: { EngineVersion: '0.1.0' } },
    Status: { State: 'ready', Addr: '192.168.1.107' },
    ManagerStatus: { Leader: true, Reachability: 'reachable', Addr: '192.168.1.107:2377' }
  })
  t.notOk('ManagerStatus' in inspectNode(snapshot, sim.state.nodes.oibbiiwrgwjkw0ni38ydrfsre!), 'a worker has none')
})

t.test('service ls and ps: the article\'s tables', async (t) => {
  const sim = walkthrough()
  t.same(serviceRows(sim.state).map((r) => [r.ID, r.Name, r.Mode, r.Replicas, r.Image, r.Ports]), [
    ['kilpacb9uy4q', 'myapp', 'replicated', '1/1', 'alpine:latest', ''],
    ['vf1kcgtd5byc', 'myredis', 'replicated', '2/2', 'redis', '*:6379->6379/tcp']
  ])
  sim.must({ type: 'service.scale', service: 'myredis', replicas: 3 })
  sim.settle()
  const redis = sim.state.services.vf1kcgtd5byc8mifyzp0xcm8n!
  const rows = taskRows(sim.state, [redis], sim.now + 48_000)
  t.same(rows.map((r) => [r.Name, r.Image, r.DesiredState, r.CurrentState.replace(/\d+ seconds/, 'N seconds'), r.Ports]), [
    ['myredis.1', 'redis', 'Running', 'Running N seconds ago', '*:6379->6379/tcp'],
    ['myredis.2', 'redis', 'Running', 'Running N seconds ago', '*:6379->6379/tcp'],
    ['myredis.3', 'redis', 'Running', 'Running N seconds ago', '*:6379->6379/tcp']
  ])
  t.same(new Set(rows.map((r) => r.Node)), new Set(['manager', 'worker1', 'worker2']), 'one per node')
  const [first] = rows
  sim.outcome = () => 'failed'
  sim.must({ type: 'task.status', task: Object.values(sim.state.tasks).find((x) => x.slot === 1 && x.service === redis.id)!.id, state: 'failed', message: 'finished', error: 'non-zero exit (137): killed by SIGKILL' })
  sim.outcome = () => 'running'
  sim.settle()
  const history = taskRows(sim.state, [redis], sim.now)
  t.equal(history[0]!.Name, 'myredis.1')
  t.equal(history[1]!.Name, ' \\_ myredis.1', 'the slot\'s history under it')
  t.equal(history[1]!.ID, first!.ID)
  t.match(taskTable(history)[1], [first!.ID, ' \\_ myredis.1', 'redis', first!.Node, 'Shutdown', /^Failed /, '"non-zero exit (137): killed by SIGKILL"', ''])
  t.same(taskRows(sim.state, [redis], sim.now, { filter: { desiredState: 'running' } }).length, 3)
  t.same(taskRows(sim.state, [redis], sim.now, { filter: { node: 'worker1' } }).every((r) => r.Node === 'worker1'), true)
  const targets = logTargets(sim.state, 'myredis')
  t.equal(targets.length, 4, 'logs of every task a node was given, history included')
  t.match(logPrefix(sim.state, targets[0]!, false), /^myredis\.1\.[a-z0-9]{12}@(manager|worker1|worker2)$/)
})

t.test('inspect: service and network documents', async (t) => {
  const sim = walkthrough()
  sim.must({ type: 'network.create', id: 'net1', name: 'my-network', labels: { a: 'b' } })
  sim.must({ type: 'service.create', id: 'web', spec: { name: 'myweb', image: 'nginx', networks: [{ network: 'my-network', aliases: ['www'] }], update: { delay: 10_000 }, env: ['A=1'], workdir: '/tmp', user: 'nobody' } })
  sim.must({ type: 'service.update', service: 'myweb', spec: { name: 'myweb', image: 'nginx:2', networks: [{ network: 'my-network', aliases: ['www'] }], update: { delay: 10_000 } } })
  const service = inspectService(sim.state, sim.state.services.web!)
  t.match(service, {
    ID: 'web',
    Spec: {
      Name: 'myweb',
      TaskTemplate: { ContainerSpec: { Image: 'nginx:2' }, Networks: [{ Target: 'net1', Name: 'my-network', Aliases: ['www'] }] },
      Mode: { Replicated: { Replicas: 1 } },
      UpdateConfig: { Parallelism: 1, Delay: 10_000_000_000, FailureAction: 'pause' },
      EndpointSpec: { Mode: 'vip' }
    },
    PreviousSpec: { TaskTemplate: { ContainerSpec: { Image: 'nginx', Env: ['A=1'], Dir: '/tmp', User: 'nobody' } } },
    Endpoint: { VirtualIPs: [{ NetworkID: 'net1', Addr: /^10\.0\.1\.\d+\/24$/ }] },
    UpdateStatus: { State: 'updating' }
  })
  t.match(inspectNetwork(sim.state, sim.state.networks.net1!), {
    Name: 'my-network', Id: 'net1', Scope: 'swarm', Driver: 'overlay', IPAM: { Config: [{ Subnet: '10.0.1.0/24', Gateway: '10.0.1.1' }] },
    Ingress: false, Services: { myweb: { ID: 'web' } }, Options: { 'com.docker.network.driver.overlay.vxlanid_list': String(sim.state.networks.net1!.vni) }, Labels: { a: 'b' }
  })
  t.same(networkRows(sim.state).map((r) => `${r.Name} ${r.Driver} ${r.Scope}`), ['ingress overlay swarm', 'my-network overlay swarm'])
})

t.test('references: id, name, unique id prefix', async (t) => {
  const items = [{ id: 'abc123', name: 'web' }, { id: 'abd456', name: 'db' }]
  t.equal(resolve(items, 'web', (i) => i.name, 'service').id, 'abc123')
  t.equal(resolve(items, 'abd', (i) => i.name, 'service').id, 'abd456')
  t.throws(() => resolve(items, 'ab', (i) => i.name, 'service'), { code: 'WEFT_ERR_NOT_FOUND', message: /ambiguous/ })
  t.throws(() => resolve(items, 'zz', (i) => i.name, 'service'), { code: 'WEFT_ERR_NOT_FOUND', message: 'No such service: zz' })
})

t.test('info: the Swarm section', async (t) => {
  const agent = { state: 'ready' as const, manager: '192.168.1.107:2377', lastError: null, heartbeatPeriodMs: 5000 }
  t.equal(infoText({ state: 'active', nodeId: 'qc42', nodeAddr: '192.168.1.107', isManager: true, clusterId: 'qi4i', managers: 1, nodes: 3, managerAddrs: ['192.168.1.107:2377'], agent }),
    'Swarm: active\nNodeID: qc42\nIs Manager: true\nClusterID: qi4i\nManagers: 1\nNodes: 3\nNode Address: 192.168.1.107\nManager Addresses:\n 192.168.1.107:2377\n')
  t.equal(infoText({ state: 'active', nodeId: 'oibb', nodeAddr: '192.168.1.108', isManager: false, clusterId: null, managers: null, nodes: null, managerAddrs: ['192.168.1.107:2377'], agent }),
    'Swarm: active\nNodeID: oibb\nIs Manager: false\nNode Address: 192.168.1.108\nManager Addresses:\n 192.168.1.107:2377\n')
  t.equal(infoText({ state: 'inactive', nodeId: null, nodeAddr: '192.168.1.108', isManager: false, clusterId: null, managers: null, nodes: null, managerAddrs: [], agent: null }), 'Swarm: inactive\n')
})
