/**
 * apply, one command at a time: what each does, each way it is refused (by
 * code), and the properties the replicated log relies on — a refused command
 * changes nothing, apply never throws, never touches its input, and the same
 * commands give the same state, also through a JSON snapshot and restore.
 */
import t from 'tap'
import { apply, type ApplyOutcome } from '../../manager/store/apply.ts'
import type { CommandInput } from '../../manager/store/commands.ts'
import { COMMAND_TYPES, parseCommand } from '../../manager/store/commands.ts'
import { StoreError } from '../../manager/store/errors.ts'
import { expectedHoldings } from '../../manager/store/queries.ts'
import { emptyState, type ClusterState } from '../../manager/store/state.ts'
import { prng } from '../helpers/prng.ts'

const NOW = 1_700_000_000_000

class Cluster {
  state: ClusterState = emptyState()
  now = NOW

  try (command: CommandInput): ApplyOutcome {
    const outcome = apply(this.state, command, this.now++)
    this.state = outcome.state
    return outcome
  }

  must (command: CommandInput): NonNullable<ApplyOutcome['result']> {
    const outcome = this.try(command)
    if (outcome.error !== undefined) throw new Error(`${command.type}: ${outcome.error.code} ${outcome.error.message}`)
    return outcome.result
  }

  /** The code of the refusal, and a check that the refusal changed nothing. */
  refuse (command: CommandInput): string {
    const before = this.state
    const outcome = this.try(command)
    if (outcome.error === undefined) return 'accepted'
    if (outcome.state !== before) return 'refused, but the state changed'
    return outcome.error.code
  }
}

function initialised (): Cluster {
  const c = new Cluster()
  c.must({ type: 'cluster.init', clusterId: 'c1', node: { id: 'n1', hostname: 'manager', addr: '192.168.1.107' }, ingressNetworkId: 'ingress' })
  c.must({ type: 'node.join', node: { id: 'n2', hostname: 'worker1', addr: '192.168.1.108' } })
  c.must({ type: 'node.join', node: { id: 'n3', hostname: 'worker2', addr: '192.168.1.109' } })
  return c
}

t.test('cluster.init: the first manager, the ingress network, Swarm defaults', async (t) => {
  const c = new Cluster()
  t.equal(c.refuse({ type: 'node.join', node: { id: 'n2', hostname: 'w', addr: '10.1.1.1' } }), 'STORE_ERR_NOT_INITIALIZED')
  c.must({ type: 'cluster.init', clusterId: 'c1', node: { id: 'n1', hostname: 'manager', addr: '192.168.1.107' }, ingressNetworkId: 'ingress' })
  const ingress = c.state.networks.ingress!
  t.match(ingress, { name: 'ingress', subnet: '10.0.0.0/24', gateway: '10.0.0.1', vni: 4096, ingress: true })
  t.match(c.state.nodes.n1, { role: 'manager', status: 'ready', availability: 'active', managerStatus: { leader: true, reachability: 'reachable' }, ingress: { ip: '10.0.0.2', mac: '02:42:0a:00:00:02' } })
  t.equal(c.refuse({ type: 'cluster.init', clusterId: 'c2', node: { id: 'n9', hostname: 'x', addr: '192.168.1.1' }, ingressNetworkId: 'i2' }), 'STORE_ERR_ALREADY_INITIALIZED')

  const routed = new Cluster()
  routed.must({ type: 'cluster.init', clusterId: 'c1', node: { id: 'n1', hostname: 'm', addr: '10.0.0.7' }, ingressNetworkId: 'ingress', avoid: ['10.0.0.7/24'] })
  t.equal(routed.state.networks.ingress!.subnet, '10.0.1.0/24', 'the underlay subnet is skipped')
  const pooled = new Cluster()
  pooled.must({ type: 'cluster.init', clusterId: 'c1', node: { id: 'n1', hostname: 'm', addr: '192.168.0.2' }, ingressNetworkId: 'ingress', defaultAddrPool: ['172.30.0.0/16'], subnetSize: 26 })
  t.equal(pooled.state.networks.ingress!.subnet, '172.30.0.0/26')
  t.equal(new Cluster().refuse({ type: 'cluster.init', clusterId: 'c1', node: { id: 'n1', hostname: 'm', addr: '192.168.0.2' }, ingressNetworkId: 'ingress', defaultAddrPool: ['172.30.0.0/27'], subnetSize: 26 }), 'STORE_ERR_INVALID_ADDRESS')
})

t.test('node.join and node.update', async (t) => {
  const c = initialised()
  t.match(c.state.nodes.n2, { role: 'worker', status: 'ready', managerStatus: null, ingress: { ip: '10.0.0.3' } })
  t.equal(c.refuse({ type: 'node.join', node: { id: 'n2', hostname: 'again', addr: '192.168.1.200' } }), 'STORE_ERR_EXISTS')
  t.equal(c.refuse({ type: 'node.join', node: { id: 'n9', hostname: 'twin', addr: '192.168.1.108' } }), 'STORE_ERR_ADDRESS_IN_USE')
  t.equal(c.refuse({ type: 'node.join', node: { id: 'n9', hostname: 'bad', addr: '192.168.1.300' } }), 'STORE_ERR_INVALID_COMMAND')

  c.must({ type: 'node.update', node: 'manager', availability: 'drain' })
  t.equal(c.state.nodes.n1!.availability, 'drain', 'by hostname, as `docker node update --availability drain manager`')
  c.must({ type: 'node.update', node: 'worker1', labelsAdd: { datacenter: 'bjidc', zone: 'a' } })
  c.must({ type: 'node.update', node: 'worker1', labelsRemove: ['zone'] })
  t.same(c.state.nodes.n2!.labels, { datacenter: 'bjidc' })
  const before = c.state
  t.equal(c.must({ type: 'node.update', node: 'worker1', labelsAdd: { datacenter: 'bjidc' } }).changed, false)
  t.equal(c.state, before, 'a change to the same values is no change at all')

  c.must({ type: 'node.update', node: 'worker1', role: 'manager' })
  t.match(c.state.nodes.n2, { role: 'manager', managerStatus: { leader: false, reachability: 'reachable' } })
  c.must({ type: 'node.leader', node: 'worker1' })
  t.equal(c.state.nodes.n2!.managerStatus!.leader, true)
  t.equal(c.state.nodes.n1!.managerStatus!.leader, false, 'one leader at a time')
  t.equal(c.refuse({ type: 'node.leader', node: 'worker2' }), 'STORE_ERR_INVALID_SPEC')
  c.must({ type: 'node.update', node: 'manager', role: 'worker' })
  t.equal(c.refuse({ type: 'node.update', node: 'worker1', role: 'worker' }), 'STORE_ERR_LAST_MANAGER')
  t.equal(c.refuse({ type: 'node.update', node: 'worker2', availability: 'pause', version: 0 }), 'STORE_ERR_VERSION_CONFLICT')
  t.equal(c.refuse({ type: 'node.update', node: 'nobody', availability: 'pause' }), 'STORE_ERR_NOT_FOUND')
  c.must({ type: 'node.join', node: { id: 'n4', hostname: 'worker2', addr: '192.168.1.110' } })
  t.equal(c.refuse({ type: 'node.update', node: 'worker2', availability: 'pause' }), 'STORE_ERR_AMBIGUOUS', 'two nodes named worker2')
  c.must({ type: 'node.update', node: 'n4', availability: 'pause' })
})

t.test('node.status and node.remove: Swarm’s force rules', async (t) => {
  const c = initialised()
  c.must({ type: 'service.create', id: 's1', spec: { name: 'web', image: 'nginx', ports: [{ target: 80, published: 8080 }] } })
  c.must({ type: 'task.create', id: 't1', service: 's1', slot: 1 })
  c.must({ type: 'task.assign', task: 't1', node: 'n2' })
  c.must({ type: 'task.status', task: 't1', node: 'n2', state: 'running' })
  const ip = c.state.tasks.t1!.attachments[0]!.ip

  t.equal(c.refuse({ type: 'node.remove', node: 'manager', force: true }), 'STORE_ERR_NODE_IS_MANAGER')
  t.equal(c.refuse({ type: 'node.remove', node: 'worker1' }), 'STORE_ERR_NODE_NOT_DOWN')
  c.must({ type: 'node.status', node: 'worker1', status: 'down', message: 'heartbeat failure' })
  t.match(c.state.nodes.n2, { status: 'down', statusMessage: 'heartbeat failure' })
  const index = c.state.index
  t.equal(c.must({ type: 'node.status', node: 'worker1', status: 'down' }).changed, false)
  t.equal(c.state.index, index, 'a repeated transition is not counted')
  c.must({ type: 'node.remove', node: 'worker1' })
  t.equal(c.state.nodes.n2, undefined)
  t.match(c.state.tasks.t1, { state: 'shutdown', desiredState: 'shutdown', message: 'node removed', attachments: [] })
  t.equal(c.state.ipam.networks.ingress!.held[ip], undefined, "the removed node's task address is free")
  t.equal(c.state.ipam.networks.ingress!.held['10.0.0.3'], undefined, 'and so is its ingress endpoint')
  c.must({ type: 'node.remove', node: 'worker2', force: true })
  t.same(expectedHoldings(c.state).ingress, c.state.ipam.networks.ingress!.held)
})

t.test('networks: create, and remove refused while in use', async (t) => {
  const c = initialised()
  const made = c.must({ type: 'network.create', id: 'net1', name: 'my-network' })
  t.same(made.detail, { subnet: '10.0.1.0/24', gateway: '10.0.1.1', vni: 4097 })
  c.must({ type: 'network.create', id: 'net2', name: 'custom', subnet: '192.168.50.0/24', gateway: '192.168.50.254', attachable: true, labels: { team: 'a' } })
  t.match(c.state.networks.net2, { subnet: '192.168.50.0/24', gateway: '192.168.50.254', vni: 4098, attachable: true, labels: { team: 'a' } })
  t.equal(c.refuse({ type: 'network.create', id: 'net3', name: 'my-network' }), 'STORE_ERR_NAME_IN_USE')
  t.equal(c.refuse({ type: 'network.create', id: 'net1', name: 'other' }), 'STORE_ERR_EXISTS')
  t.equal(c.refuse({ type: 'network.create', id: 'net3', name: 'x', subnet: '10.0.0.0/16' }), 'STORE_ERR_SUBNET_OVERLAP')
  t.equal(c.refuse({ type: 'network.create', id: 'net3', name: 'x', driver: 'bridge' } as unknown as CommandInput), 'STORE_ERR_INVALID_COMMAND')
  t.equal(c.refuse({ type: 'network.remove', network: 'ingress' }), 'STORE_ERR_NETWORK_IN_USE')

  c.must({ type: 'service.create', id: 's1', spec: { name: 'web', image: 'nginx', networks: [{ network: 'my-network' }] } })
  t.equal(c.refuse({ type: 'network.remove', network: 'my-network' }), 'STORE_ERR_NETWORK_IN_USE')
  c.must({ type: 'task.create', id: 't1', service: 's1', slot: 1 })
  c.must({ type: 'task.assign', task: 't1', node: 'n2' })
  c.must({ type: 'service.remove', service: 'web' })
  t.equal(c.refuse({ type: 'network.remove', network: 'my-network' }), 'STORE_ERR_NETWORK_IN_USE', 'a task still stopping holds its address')
  c.must({ type: 'task.status', task: 't1', node: 'n2', state: 'shutdown' })
  c.must({ type: 'network.remove', network: 'my-network' })
  t.equal(c.state.ipam.networks.net1, undefined)
  t.equal(c.state.ipam.vnis['4097'], undefined)
})

t.test('service.create: VIPs per network, and every reason to refuse', async (t) => {
  const c = initialised()
  c.must({ type: 'network.create', id: 'net1', name: 'my-network' })
  const made = c.must({ type: 'service.create', id: 's1', spec: { name: 'web', image: 'nginx', networks: [{ network: 'my-network', aliases: ['www'] }], ports: [{ target: 80, published: 8080 }] } })
  t.same(made.detail, { vips: [{ network: 'net1', ip: '10.0.1.2' }, { network: 'ingress', ip: '10.0.0.5' }] }, 'a VIP on its network and on ingress, since it publishes')
  const spec = { name: 'other', image: 'x' }
  t.equal(c.refuse({ type: 'service.create', id: 's2', spec: { ...spec, name: 'WEB' } }), 'STORE_ERR_NAME_IN_USE', 'names are DNS names: case does not matter')
  t.equal(c.refuse({ type: 'service.create', id: 's1', spec }), 'STORE_ERR_EXISTS')
  t.equal(c.refuse({ type: 'service.create', id: 's2', spec: { ...spec, networks: [{ network: 'nope' }] } }), 'STORE_ERR_NOT_FOUND')
  t.equal(c.refuse({ type: 'service.create', id: 's2', spec: { ...spec, networks: [{ network: 'ingress' }] } }), 'STORE_ERR_INVALID_SPEC')
  t.equal(c.refuse({ type: 'service.create', id: 's2', spec: { ...spec, networks: [{ network: 'net1' }, { network: 'my-network' }] } }), 'STORE_ERR_INVALID_SPEC')
  t.equal(c.refuse({ type: 'service.create', id: 's2', spec: { ...spec, constraints: ['node.role=manager'] } }), 'STORE_ERR_INVALID_CONSTRAINT')
  t.equal(c.refuse({ type: 'service.create', id: 's2', spec: { ...spec, ports: [{ target: 81, published: 8080 }] } }), 'STORE_ERR_PORT_IN_USE')
  t.equal(c.refuse({ type: 'service.create', id: 's2', spec: { ...spec, ports: [{ target: 81, published: 8080, mode: 'host' }] } }), 'STORE_ERR_PORT_IN_USE', 'host mode too')
  t.equal(c.refuse({ type: 'service.create', id: 's2', spec: { ...spec, ports: [{ target: 1, published: 9000 }, { target: 2, published: 9000 }] } }), 'STORE_ERR_PORT_IN_USE')
  t.equal(c.refuse({ type: 'service.create', id: 's2', spec: { ...spec, endpointMode: 'dnsrr', ports: [{ target: 81, published: 9000 }] } }), 'STORE_ERR_INVALID_SPEC')
  t.equal(c.refuse({ type: 'service.create', id: 's2', spec: { ...spec, name: 'bad name' } }), 'STORE_ERR_INVALID_COMMAND')
  const out = c.try({ type: 'service.create', id: 's2', spec: { ...spec, ports: [{ target: 81, published: 8080 }] } })
  t.match(out.error?.message, /port 8080\/tcp is already published by service web \(s1\)/)
  const dnsrr = c.must({ type: 'service.create', id: 's3', spec: { name: 'db', image: 'redis', endpointMode: 'dnsrr', networks: [{ network: 'net1' }], ports: [{ target: 6379, published: 6379, mode: 'host' }] } })
  t.same(dnsrr.detail, { vips: [] }, 'dnsrr: no VIP')
  c.must({ type: 'service.create', id: 's4', spec: { name: 'agent', image: 'x', mode: { kind: 'global' } } })
  t.equal(c.refuse({ type: 'service.scale', service: 'agent', replicas: 3 }), 'STORE_ERR_INVALID_SPEC')
})

t.test('service.update, scale and rollback', async (t) => {
  const c = initialised()
  c.must({ type: 'network.create', id: 'net1', name: 'front' })
  c.must({ type: 'network.create', id: 'net2', name: 'back' })
  c.must({ type: 'service.create', id: 's1', spec: { name: 'redis', image: 'redis:3.0.6', mode: { kind: 'replicated', replicas: 3 }, networks: [{ network: 'front' }, { network: 'back' }] } })
  const s1 = () => c.state.services.s1!
  const [front, back] = s1().vips
  t.equal(s1().specVersion, 1)

  c.must({ type: 'service.scale', service: 'redis', replicas: 5 })
  t.equal(s1().specVersion, 1, 'scaling does not replace tasks')
  t.equal(s1().updateStatus, null)
  const base = { ...s1().spec, networks: [{ network: 'front' }, { network: 'back' }] }
  const index = c.state.index
  t.equal(c.must({ type: 'service.update', service: 'redis', spec: base }).changed, false, 'the same spec, networks by name: no change')
  t.equal(c.state.index, index)

  c.must({ type: 'service.update', service: 'redis', spec: { ...base, image: 'redis:3.0.7', networks: [{ network: 'front' }] } })
  t.match(s1(), { specVersion: 2, updateStatus: { state: 'updating' }, previousSpec: { image: 'redis:3.0.6' } })
  t.same(s1().vips, [front], 'the VIP on a network it keeps stays; the other is released')
  t.equal(c.state.ipam.networks.net2!.held[back!.ip], undefined)
  const version = s1().version
  t.equal(c.refuse({ type: 'service.update', service: 'redis', spec: { ...base, image: 'x' }, version: version - 1 }), 'STORE_ERR_VERSION_CONFLICT')
  t.equal(c.refuse({ type: 'service.update', service: 'redis', spec: { ...base, name: 'redis2' } }), 'STORE_ERR_INVALID_SPEC')
  t.equal(c.refuse({ type: 'service.update', service: 'redis', spec: { ...base, mode: { kind: 'global' } } }), 'STORE_ERR_INVALID_SPEC')
  t.equal(c.refuse({ type: 'service.update-state', service: 'redis', state: 'rollback_completed' }), 'STORE_ERR_INVALID_TRANSITION')

  c.must({ type: 'service.update', service: 'redis', spec: { ...s1().spec, update: { parallelism: 2 } } })
  t.equal(s1().specVersion, 2, 'update config is not part of what tasks run')

  c.must({ type: 'service.rollback', service: 'redis' })
  t.equal(s1().spec.update.parallelism, 1, 'the whole previous spec comes back')
  t.match(s1(), { specVersion: 2, updateStatus: { state: 'rollback_completed' } }, 'with the same task spec, there is nothing to roll')
  c.must({ type: 'service.rollback', service: 'redis' })
  t.equal(s1().spec.update.parallelism, 2, 'a second rollback goes forward again (the specs swap)')

  c.must({ type: 'service.update', service: 'redis', spec: { ...s1().spec, image: 'redis:3.0.8' } })
  c.must({ type: 'service.rollback', service: 'redis' })
  t.match(s1(), { specVersion: 4, spec: { image: 'redis:3.0.7' }, updateStatus: { state: 'rollback_started', message: 'manually requested rollback' } })
  c.must({ type: 'service.update-state', service: 'redis', state: 'rollback_completed', message: 'rollback completed' })
  t.match(s1().updateStatus, { state: 'rollback_completed', completedAt: c.now - 1 })
  t.equal(c.refuse({ type: 'service.update-state', service: 'redis', state: 'completed' }), 'STORE_ERR_INVALID_TRANSITION')

  c.must({ type: 'service.create', id: 's2', spec: { name: 'fresh', image: 'x' } })
  t.equal(c.refuse({ type: 'service.rollback', service: 'fresh' }), 'STORE_ERR_NO_PREVIOUS_SPEC')
  c.must({ type: 'service.update', service: 'fresh', spec: { name: 'fresh', image: 'x', ports: [{ target: 80, published: 80 }] } })
  t.same(c.state.services.s2!.vips.map((v) => v.network), ['ingress'], 'publishing a port joins ingress, with a VIP')
  t.equal(c.state.services.s2!.specVersion, 2, 'which replaces the tasks: they join ingress too')
})

t.test('task life cycle', async (t) => {
  const c = initialised()
  c.must({ type: 'network.create', id: 'net1', name: 'my-network' })
  c.must({ type: 'service.create', id: 's1', spec: { name: 'web', image: 'nginx', networks: [{ network: 'net1' }], constraints: ['node.role==worker'], mode: { kind: 'replicated', replicas: 2 } } })
  c.must({ type: 'task.create', id: 't1', service: 's1', slot: 1 })
  t.match(c.state.tasks.t1, { state: 'pending', desiredState: 'running', allocated: true, attachments: [{ network: 'net1', ip: '10.0.1.3', mac: '02:42:0a:00:01:03' }], specVersion: 1, spec: { image: 'nginx' } })
  t.equal(c.refuse({ type: 'task.create', id: 't2', service: 's1', slot: 1 }), 'STORE_ERR_SLOT_TAKEN')
  t.equal(c.refuse({ type: 'task.create', id: 't2', service: 's1', node: 'n2' }), 'STORE_ERR_INVALID_COMMAND', 'a replicated task has a slot')
  t.equal(c.refuse({ type: 'task.create', id: 't1', service: 's1', slot: 2 }), 'STORE_ERR_EXISTS')
  t.equal(c.refuse({ type: 'task.status', task: 't1', state: 'running' }), 'STORE_ERR_INVALID_TRANSITION', 'not assigned yet')

  t.equal(c.refuse({ type: 'task.assign', task: 't1', node: 'n1' }), 'STORE_ERR_NOT_SCHEDULABLE', 'constraints are checked again')
  c.must({ type: 'node.update', node: 'worker1', availability: 'pause' })
  t.equal(c.refuse({ type: 'task.assign', task: 't1', node: 'n2' }), 'STORE_ERR_NOT_SCHEDULABLE', 'a paused node takes no new task')
  c.must({ type: 'node.status', node: 'worker2', status: 'down' })
  t.equal(c.refuse({ type: 'task.assign', task: 't1', node: 'n3' }), 'STORE_ERR_NOT_SCHEDULABLE', 'nor does a down one')
  c.must({ type: 'node.update', node: 'worker1', availability: 'active' })
  c.must({ type: 'task.assign', task: 't1', node: 'n2' })
  t.match(c.state.tasks.t1, { state: 'assigned', node: 'n2' })

  t.equal(c.refuse({ type: 'task.status', task: 't1', node: 'n3', state: 'running' }), 'STORE_ERR_NOT_FOUND', 'a node reports its own tasks only')
  c.must({ type: 'task.status', task: 't1', node: 'n2', state: 'preparing' })
  c.must({ type: 'task.status', task: 't1', node: 'n2', state: 'running', message: 'started' })
  t.match(c.state.tasks.t1, { state: 'running', runningAt: c.now - 1 })
  const index = c.state.index
  t.equal(c.must({ type: 'task.status', task: 't1', node: 'n2', state: 'running', message: 'started' }).changed, false)
  t.equal(c.state.index, index, 'a repeated report changes nothing')
  t.equal(c.refuse({ type: 'task.status', task: 't1', node: 'n2', state: 'starting' }), 'STORE_ERR_INVALID_TRANSITION', 'a late report of an older state')
  c.must({ type: 'task.health', task: 't1', report: { status: 'unhealthy', failingStreak: 3, log: [] } })
  t.match(c.state.tasks.t1!.health, { status: 'unhealthy', failingStreak: 3, changedAt: c.now - 1 })
  const changedAt = c.state.tasks.t1!.health!.changedAt
  c.now += 10
  c.must({ type: 'task.health', task: 't1', report: { status: 'unhealthy', failingStreak: 4, log: [] } })
  t.match(c.state.tasks.t1!.health, { failingStreak: 4, changedAt }, 'changedAt is when the status changed')
  t.equal(c.refuse({ type: 'task.remove', task: 't1' }), 'STORE_ERR_TASK_ACTIVE')

  c.must({ type: 'task.create', id: 't2', service: 's1', slot: 1, replaces: 't1', restarts: 1 })
  t.match(c.state.tasks.t1, { desiredState: 'shutdown', state: 'running' }, 'the replaced task is told to stop; it still runs')
  t.match(c.state.tasks.t2, { restarts: 1, slot: 1 })
  c.must({ type: 'task.status', task: 't1', node: 'n2', state: 'failed', error: 'exit 1' })
  t.match(c.state.tasks.t1, { state: 'failed', error: 'exit 1', attachments: [] })
  t.equal(c.state.ipam.networks.net1!.held['10.0.1.3'], undefined, 'an ended task holds no address')
  t.equal(c.refuse({ type: 'task.status', task: 't1', node: 'n2', state: 'complete' }), 'STORE_ERR_INVALID_TRANSITION', 'terminal is final')
  c.must({ type: 'task.remove', task: 't1' })
  t.equal(c.state.tasks.t1, undefined)

  c.must({ type: 'task.shutdown', task: 't2' })
  t.match(c.state.tasks.t2, { state: 'shutdown', desiredState: 'shutdown', attachments: [] }, 'a task no node has yet ends at once')
  t.same(expectedHoldings(c.state).net1, c.state.ipam.networks.net1!.held)

  c.must({ type: 'service.create', id: 'g1', spec: { name: 'agent', image: 'x', mode: { kind: 'global' } } })
  t.equal(c.refuse({ type: 'task.create', id: 'g-a', service: 'g1', slot: 1 }), 'STORE_ERR_INVALID_COMMAND')
  c.must({ type: 'task.create', id: 'g-a', service: 'g1', node: 'n1' })
  t.equal(c.refuse({ type: 'task.create', id: 'g-b', service: 'g1', node: 'n1' }), 'STORE_ERR_SLOT_TAKEN', 'one task per node')
  t.equal(c.refuse({ type: 'task.assign', task: 'g-a', node: 'n2' }), 'STORE_ERR_NOT_SCHEDULABLE', 'a global task goes to its own node')
  t.equal(c.refuse({ type: 'task.status', task: 'g-a', node: 'n1', state: 'running' }), 'STORE_ERR_INVALID_TRANSITION', 'a node cannot start what it was not given')
})

t.test('an exhausted network: tasks pending with the error, on the service too, until addresses free up', async (t) => {
  const c = initialised()
  c.must({ type: 'network.create', id: 'tiny', name: 'tiny', subnet: '10.9.0.0/29' }) // 6 hosts: gateway, VIP, 4 tasks
  c.must({ type: 'service.create', id: 's1', spec: { name: 'web', image: 'nginx', networks: [{ network: 'tiny' }], mode: { kind: 'replicated', replicas: 5 } } })
  for (let slot = 1; slot <= 5; slot++) c.must({ type: 'task.create', id: `t${slot}`, service: 's1', slot })
  t.match(c.state.tasks.t5, { state: 'pending', allocated: false, attachments: [], error: /could not allocate an address: no free address left on network tiny \(10\.9\.0\.0\/29\)/ })
  t.match(c.state.services.s1!.allocationError, /no free address left on network tiny/)
  t.equal(c.refuse({ type: 'task.allocate', task: 't5' }), 'STORE_ERR_POOL_EXHAUSTED')
  t.equal(c.refuse({ type: 'task.assign', task: 't5', node: 'n2' }), 'STORE_ERR_INVALID_TRANSITION', 'no addresses, no node')
  t.equal(c.refuse({ type: 'service.create', id: 's2', spec: { name: 'other', image: 'x', networks: [{ network: 'tiny' }] } }), 'STORE_ERR_POOL_EXHAUSTED', 'a VIP that cannot be had refuses the service')
  c.must({ type: 'task.shutdown', task: 't2' })
  c.must({ type: 'task.allocate', task: 't5' })
  t.match(c.state.tasks.t5, { allocated: true, error: null, attachments: [{ ip: '10.9.0.4' }] })
  t.equal(c.state.services.s1!.allocationError, null)
})

t.test('commands are validated: at the edge (throws) and in apply (refuses)', async (t) => {
  t.throws(() => parseCommand({ type: 'network.create', id: 'n', name: '' }), StoreError)
  t.match(parseCommand({ type: 'service.create', id: 's', spec: { name: 'web', image: 'nginx' } }), {
    spec: { mode: { kind: 'replicated', replicas: 1 }, endpointMode: 'vip', scheduler: 'rr', restart: { condition: 'any' }, update: { parallelism: 1, failureAction: 'pause' } }
  }, 'defaults are filled in, as the log will hold them')
  t.equal(COMMAND_TYPES.length, 21)
  const c = initialised()
  t.match(c.try({ type: 'network.create', id: 'BAD ID', name: 'x' }).error, { code: 'STORE_ERR_INVALID_COMMAND', message: /id:/ })
  t.match(apply(c.state, { type: 'node.status', node: 'n2', status: 'down' }, Number.NaN).error, { code: 'STORE_ERR_INVALID_COMMAND' })
})

function deepFreeze<T> (value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const inner of Object.values(value)) deepFreeze(inner)
  }
  return value
}

/** A plausible command for this state (mostly valid, sometimes not), from the random stream. */
function randomCommand (random: () => number, state: ClusterState, counter: () => number): unknown {
  const pick = <T>(list: readonly T[]): T | undefined => list[Math.floor(random() * list.length)]
  const nodes = Object.keys(state.nodes)
  const networks = Object.values(state.networks).filter((n) => !n.ingress).map((n) => n.name)
  const services = Object.keys(state.services)
  const tasks = Object.keys(state.tasks)
  const roll = random()
  if (roll < 0.02) return pick([null, 42, 'x', {}, { type: 'task.status' }, { type: 'service.create', id: 'x', spec: { name: '-' } }])
  if (roll < 0.08) return { type: 'node.join', node: { id: `n${counter()}`, hostname: `h${counter() % 4}`, addr: `192.168.7.${counter() % 250 + 1}` } }
  if (roll < 0.12) return { type: 'node.update', node: pick(nodes) ?? 'none', availability: pick(['active', 'pause', 'drain']), labelsAdd: random() < 0.5 ? { zone: pick(['a', 'b'])! } : {} }
  if (roll < 0.16) return { type: 'node.status', node: pick(nodes) ?? 'none', status: pick(['ready', 'down']) }
  if (roll < 0.18) return { type: 'node.remove', node: pick(nodes) ?? 'none', force: random() < 0.5 }
  if (roll < 0.24) return { type: 'network.create', id: `net${counter()}`, name: `net${counter() % 6}`, ...(random() < 0.3 ? { subnet: `10.${counter() % 4}.${counter() % 3}.0/24` } : {}) }
  if (roll < 0.27) return { type: 'network.remove', network: pick(networks) ?? 'none' }
  if (roll < 0.35) {
    const global = random() < 0.3
    return {
      type: 'service.create',
      id: `s${counter()}`,
      spec: {
        name: `svc${counter() % 8}`,
        image: 'img:1',
        mode: global ? { kind: 'global' } : { kind: 'replicated', replicas: Math.floor(random() * 4) },
        networks: networks.length > 0 && random() < 0.7 ? [{ network: pick(networks)!, aliases: ['a'] }] : [],
        ports: random() < 0.3 ? [{ target: 80, published: 8000 + (counter() % 5), mode: pick(['ingress', 'host']) }] : [],
        constraints: random() < 0.2 ? [pick(['node.labels.zone==a', 'node.role!=manager', 'bad'])!] : []
      }
    }
  }
  if (roll < 0.4 && services.length > 0) {
    const service = state.services[pick(services)!]!
    const names = service.spec.networks.map((n) => state.networks[n.network]!.name)
    return { type: 'service.update', service: service.id, spec: { ...service.spec, networks: names.map((network) => ({ network })), image: `img:${counter() % 3}` } }
  }
  if (roll < 0.43) return { type: 'service.scale', service: pick(services) ?? 'none', replicas: Math.floor(random() * 5) }
  if (roll < 0.45) return { type: 'service.rollback', service: pick(services) ?? 'none' }
  if (roll < 0.48) return { type: 'service.remove', service: pick(services) ?? 'none' }
  if (roll < 0.62 && services.length > 0) {
    const service = state.services[pick(services)!]!
    return service.spec.mode.kind === 'global'
      ? { type: 'task.create', id: `t${counter()}`, service: service.id, node: pick(nodes) ?? 'none' }
      : { type: 'task.create', id: `t${counter()}`, service: service.id, slot: 1 + Math.floor(random() * 3), ...(random() < 0.5 && tasks.length > 0 ? { replaces: pick(tasks) } : {}) }
  }
  if (roll < 0.72) return { type: 'task.assign', task: pick(tasks) ?? 'none', node: pick(nodes) ?? 'none' }
  if (roll < 0.85) {
    const task = state.tasks[pick(tasks) ?? ''] 
    return { type: 'task.status', task: task?.id ?? 'none', state: pick(['preparing', 'starting', 'running', 'running', 'failed', 'complete', 'shutdown']), ...(task?.node ? { node: task.node } : {}) }
  }
  if (roll < 0.9) return { type: 'task.shutdown', task: pick(tasks) ?? 'none' }
  if (roll < 0.95) return { type: 'task.remove', task: pick(tasks) ?? 'none' }
  if (roll < 0.97) return { type: 'task.allocate', task: pick(tasks) ?? 'none' }
  return { type: 'task.health', task: pick(tasks) ?? 'none', healthy: random() < 0.5 }
}

/** What must hold after every command. */
function invariants (state: ClusterState): string[] {
  const problems: string[] = []
  const want = expectedHoldings(state)
  for (const id of new Set([...Object.keys(want), ...Object.keys(state.ipam.networks)])) {
    const held = JSON.stringify(Object.entries(state.ipam.networks[id]?.held ?? {}).sort())
    const expected = JSON.stringify(Object.entries(want[id] ?? {}).sort())
    if (held !== expected) problems.push(`network ${id}: held ${held}, objects hold ${expected}`)
  }
  const places = new Set<string>()
  for (const task of Object.values(state.tasks)) {
    if (task.desiredState !== 'running') continue
    const place = `${task.service}/${task.slot ?? task.node}`
    if (places.has(place)) problems.push(`two running tasks for ${place}`)
    places.add(place)
  }
  for (const service of Object.values(state.services)) {
    for (const { network } of service.spec.networks) if (!state.networks[network]) problems.push(`service ${service.id} on missing network ${network}`)
  }
  const vnis = Object.values(state.networks).map((n) => n.vni)
  if (new Set(vnis).size !== vnis.length) problems.push('a VNI is used twice')
  return problems
}

t.test('property: random commands never throw, refusals change nothing, invariants hold, replays are identical', async (t) => {
  const failures: string[] = []
  let applied = 0
  let refused = 0
  for (let run = 0; run < Number(process.env.RUNS ?? 12) && failures.length === 0; run++) {
    const random = prng(0xa991 + run)
    let n = 0
    const counter = (): number => n++
    const log: Array<{ command: unknown, now: number }> = []
    let state = apply(emptyState(), { type: 'cluster.init', clusterId: 'c', node: { id: 'n0', hostname: 'm', addr: '192.168.7.250' }, ingressNetworkId: 'ingress', defaultAddrPool: ['10.0.0.0/22'], subnetSize: 28 }, 0).state
    for (let step = 0; step < 250 && failures.length === 0; step++) {
      const command = randomCommand(random, state, counter)
      const now = 1000 * step
      deepFreeze(state)
      let outcome: ApplyOutcome
      try {
        outcome = apply(state, command, now)
      } catch (error) {
        failures.push(`run ${run} step ${step}: apply threw ${(error as Error).message} on ${JSON.stringify(command)}`)
        break
      }
      log.push({ command, now })
      if (outcome.error !== undefined) {
        refused++
        if (outcome.state !== state) failures.push(`run ${run} step ${step}: a refused command changed the state`)
        if (outcome.error.code === 'STORE_ERR_INTERNAL') failures.push(`run ${run} step ${step}: ${outcome.error.message} on ${JSON.stringify(command)}`)
      } else {
        applied++
        if (!outcome.result.changed && outcome.state !== state) failures.push(`run ${run} step ${step}: unchanged, but a new state`)
      }
      state = outcome.state
      for (const problem of invariants(state)) failures.push(`run ${run} step ${step} after ${JSON.stringify(command)}: ${problem}`)
    }
    // Replay the log from scratch, through a snapshot (JSON) every 17 entries: the same state, byte for byte.
    let replay = apply(emptyState(), { type: 'cluster.init', clusterId: 'c', node: { id: 'n0', hostname: 'm', addr: '192.168.7.250' }, ingressNetworkId: 'ingress', defaultAddrPool: ['10.0.0.0/22'], subnetSize: 28 }, 0).state
    log.forEach(({ command, now }, i) => {
      if (i % 17 === 0) replay = JSON.parse(JSON.stringify(replay)) as ClusterState
      replay = apply(replay, command, now).state
    })
    if (JSON.stringify(replay) !== JSON.stringify(state)) failures.push(`run ${run}: the replay differs`)
  }
  t.same(failures.slice(0, 5), [])
  t.ok(applied > 60 * Number(process.env.RUNS ?? 12) && refused > 25 * Number(process.env.RUNS ?? 12), `a mix of accepted (${applied}) and refused (${refused}) commands`)
})

t.test('every command type appears in the random mix', async (t) => {
  const random = prng(7)
  let n = 0
  const seen = new Set<string>()
  const state = apply(emptyState(), { type: 'cluster.init', clusterId: 'c', node: { id: 'n0', hostname: 'm', addr: '192.168.7.250' }, ingressNetworkId: 'ingress' }, 0).state
  const withService = apply(state, { type: 'service.create', id: 's', spec: { name: 's', image: 'i' } }, 0).state
  for (let i = 0; i < 2000; i++) {
    const command = randomCommand(random, withService, () => n++) as { type?: string } | null
    if (command && typeof command === 'object' && typeof command.type === 'string') seen.add(command.type)
  }
  const missing = COMMAND_TYPES.filter((type) => !seen.has(type) && !['cluster.init', 'node.leader', 'service.update-state'].includes(type))
  t.same(missing, [], 'the property test exercises every command but the ones with a test of their own')
})
