/**
 * From the cluster state to each node's desired-state document: every
 * document passes netd's own validation, and carries what that node needs —
 * its tasks' endpoints, peers on the networks they use, services with their
 * VIPs, aliases and ports, health, and the routing mesh's ingress endpoints.
 */
import t from 'tap'
import { Simulation } from '../../manager/orchestrator/simulation.ts'
import { clusterView, nodeDocumentFor, nodeDocuments } from '../../manager/store/node-documents.ts'
import { parseDesiredState, type DesiredState } from '../../netd/desired-state.ts'

function walkthrough (): Simulation {
  const sim = new Simulation()
  sim.must({ type: 'cluster.init', clusterId: 'c1', node: { id: 'n1', hostname: 'manager', addr: '192.168.1.107' }, ingressNetworkId: 'ingress' })
  sim.must({ type: 'node.join', node: { id: 'n2', hostname: 'worker1', addr: '192.168.1.108' } })
  sim.must({ type: 'node.join', node: { id: 'n3', hostname: 'worker2', addr: '192.168.1.109' } })
  sim.must({ type: 'network.create', id: 'net', name: 'my-network' })
  sim.must({ type: 'network.create', id: 'back', name: 'back' })
  sim.must({
    type: 'service.create',
    id: 'web',
    spec: {
      name: 'myweb', image: 'nginx', mode: { kind: 'replicated', replicas: 2 }, scheduler: 'sh',
      networks: [{ network: 'my-network', aliases: ['www'] }], ports: [{ name: 'http', target: 80, published: 8080 }]
    }
  })
  sim.must({ type: 'service.create', id: 'db', spec: { name: 'db', image: 'redis', endpointMode: 'dnsrr', constraints: ['node.hostname==worker2'], networks: [{ network: 'back' }, { network: 'my-network' }] } })
  sim.settle()
  return sim
}

const parse = (sim: Simulation, node: string): DesiredState => parseDesiredState(nodeDocumentFor(sim.state, node))

t.test('every node’s document passes netd’s validation', async (t) => {
  const sim = walkthrough()
  const docs = nodeDocuments(sim.state)
  t.same([...docs.keys()], ['n1', 'n2', 'n3'])
  for (const [node, doc] of docs) t.doesNotThrow(() => parseDesiredState(doc), node)
  t.equal(nodeDocumentFor(sim.state, 'nobody'), undefined)
})

t.test('what one node gets: its tasks, its peers on those networks, the services, the routing mesh', async (t) => {
  const sim = walkthrough()
  const s = sim.state
  const manager = parse(sim, 'n1') // runs myweb.1
  t.equal(manager.revision, s.index)
  t.same(manager.networks.map((n) => `${n.name} ${n.subnet} ${n.vni}${n.ingress ? ' ingress' : ''}`).sort(), ['ingress 10.0.0.0/24 4096 ingress', 'my-network 10.0.1.0/24 4097'])
  const web1 = Object.values(s.tasks).find((x) => x.service === 'web' && x.slot === 1)!
  t.same(manager.endpoints.map((e) => `${e.task} ${e.network} ${e.ip} ${e.name}`).sort(), [
    `${web1.id} ingress ${web1.attachments.find((a) => a.network === 'ingress')!.ip} myweb.1.${web1.id}`,
    `${web1.id} net ${web1.attachments.find((a) => a.network === 'net')!.ip} myweb.1.${web1.id}`
  ])
  t.match(manager.ingress, { network: 'ingress', ip: s.nodes.n1!.ingress.ip, mac: s.nodes.n1!.ingress.mac })
  const peers = manager.remoteEndpoints.map((e) => `${e.network} ${e.node} ${e.service ?? 'node'}`).sort()
  t.same(peers, [
    'ingress 192.168.1.108 node', 'ingress 192.168.1.108 web', 'ingress 192.168.1.109 node',
    'net 192.168.1.108 web', 'net 192.168.1.109 db'
  ], 'myweb.2 on worker1 (both networks), db on worker2 (my-network only), and each peer node’s ingress endpoint')
  const web = manager.services.find((x) => x.id === 'web')!
  t.same(web, {
    id: 'web', name: 'myweb', endpointMode: 'vip', scheduler: 'sh',
    networks: [
      { network: 'net', vip: s.services.web!.vips[0]!.ip, aliases: ['www'] },
      { network: 'ingress', vip: s.services.web!.vips[1]!.ip, aliases: [] }
    ],
    ports: [{ name: 'http', protocol: 'tcp', target: 80, published: 8080, mode: 'ingress' }]
  })
  const db = manager.services.find((x) => x.id === 'db')!
  t.same(db.networks, [{ network: 'net', aliases: [] }], 'dnsrr: no VIP; only the networks this node is on')
  t.ok(manager.remoteEndpoints.every((e) => e.healthy), 'running tasks are healthy')
})

t.test('a node without tasks is still on the routing mesh', async (t) => {
  const sim = walkthrough()
  sim.must({ type: 'node.join', node: { id: 'n4', hostname: 'worker3', addr: '192.168.1.110' } })
  sim.must({ type: 'node.update', node: 'worker3', availability: 'pause' })
  sim.settle()
  const idle = parse(sim, 'n4')
  t.same(idle.endpoints, [])
  t.same(idle.networks.map((n) => n.name), ['ingress'])
  t.same(idle.services.map((x) => x.name), ['myweb'], 'the published service, reachable through its ingress VIP')
  t.ok(idle.ingress)
})

t.test('health: unhealthy, not yet running, and stopping tasks', async (t) => {
  const sim = walkthrough()
  const web2 = Object.values(sim.state.tasks).find((x) => x.service === 'web' && x.slot === 2)!
  sim.must({ type: 'task.health', task: web2.id, report: { status: 'unhealthy', failingStreak: 3, log: [] } })
  const seen = parse(sim, 'n1').remoteEndpoints.filter((e) => e.task === web2.id)
  t.ok(seen.length === 2 && seen.every((e) => !e.healthy), 'a failing health check takes it out of load balancing')
  t.ok(parse(sim, 'n2').endpoints.filter((e) => e.task === web2.id).every((e) => !e.healthy))

  sim.must({ type: 'service.scale', service: 'myweb', replicas: 3 })
  sim.outcome = () => 'stay' // its node has not started it yet
  sim.round()
  const web3 = Object.values(sim.state.tasks).find((x) => x.service === 'web' && x.slot === 3)!
  t.equal(web3.state, 'assigned')
  t.ok(clusterView(sim.state).endpoints.filter((e) => e.task === web3.id).every((e) => e.healthy === false), 'not running: no traffic yet')

  sim.must({ type: 'task.health', task: web2.id, report: { status: 'healthy', failingStreak: 0, log: [] } })
  t.ok(parse(sim, 'n1').remoteEndpoints.filter((e) => e.task === web2.id).every((e) => e.healthy), 'healthy again: back in load balancing')
  sim.must({ type: 'task.shutdown', task: web2.id })
  const draining = clusterView(sim.state).endpoints.filter((e) => e.task === web2.id)
  t.ok(draining.length === 2 && draining.every((e) => e.healthy === false), 'told to stop: out of DNS and load balancing, its path kept while it drains')
  t.match(parse(sim, 'n2').tasks?.find((x) => x.id === web2.id), { desiredState: 'shutdown' }, 'its node learns to stop it from its task list')
  sim.must({ type: 'task.status', task: web2.id, node: web2.node!, state: 'shutdown' })
  t.same(clusterView(sim.state).endpoints.filter((e) => e.task === web2.id), [], 'ended: gone from every document')
})

t.test('health: a task with a health check gets traffic only once it has passed', async (t) => {
  const sim = walkthrough()
  sim.health = () => 'starting'
  sim.must({ type: 'service.update', service: 'myweb', spec: { ...sim.state.services.web!.spec, healthcheck: { test: { kind: 'tcp', port: 80 } } } })
  sim.round()
  sim.round()
  const fresh = Object.values(sim.state.tasks).filter((x) => x.service === 'web' && x.desiredState === 'running' && x.spec.healthcheck !== undefined)
  t.ok(fresh.length > 0 && fresh.every((x) => x.state === 'running'), 'the update started a task with the check')
  const endpointsOf = (id: string) => clusterView(sim.state).endpoints.filter((e) => e.task === id)
  t.ok(endpointsOf(fresh[0]!.id).every((e) => e.healthy === false), 'running, check not yet passed: no traffic')
  sim.must({ type: 'task.health', task: fresh[0]!.id, report: { status: 'starting', failingStreak: 1, log: [] } })
  t.ok(endpointsOf(fresh[0]!.id).every((e) => e.healthy === false), 'starting: no traffic')
  sim.must({ type: 'task.health', task: fresh[0]!.id, report: { status: 'healthy', failingStreak: 0, log: [] } })
  t.ok(endpointsOf(fresh[0]!.id).every((e) => e.healthy === true), 'healthy: traffic')
})
