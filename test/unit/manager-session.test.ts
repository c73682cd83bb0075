/**
 * The manager module in one process, over real mutual TLS on 127.0.0.1, with
 * a test playing a worker node: join and registration, the document stream,
 * task reports, heartbeats and Down, removal, the control API's roles, logs
 * requests, and a restart that keeps the state. No root needed.
 */
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { bootstrapCluster } from '../../manager/ca/bootstrap.ts'
import { joinSwarm, type JoinedNode } from '../../manager/api/join.ts'
import { connectNode } from '../../manager/api/mtls.ts'
import type { RpcClient } from '../../manager/api/rpc-client.ts'
import type { SessionEvent } from '../../manager/dispatcher.ts'
import { Manager } from '../../manager/manager.ts'
import { writeManagerFiles } from '../../manager/manager-files.ts'
import type { DesiredStateInput } from '../../netd/desired-state.ts'

const dir = await mkdtemp(join(tmpdir(), 'weft-manager-'))
t.teardown(async () => await rm(dir, { recursive: true, force: true }))
const log = pino({ level: 'silent' })
const boot = await bootstrapCluster({ now: new Date() })
await writeManagerFiles(dir, { rootCa: boot.rootCa, tokens: boot.joinTokens, config: { advertiseAddr: '127.0.0.1:2377', listenAddr: '127.0.0.1:2377', heartbeatPeriodMs: 100 } })
const open = async (): Promise<Manager> => await Manager.open({ dir, nodeId: boot.manager.nodeId, credentials: boot.credentials, log, listen: { host: '127.0.0.1', port: 0 }, reconnectAllowanceMs: 0 })
let manager = await open()
t.teardown(async () => await manager.close())
await manager.propose({ type: 'cluster.init', clusterId: boot.rootCa.clusterId, node: { id: boot.manager.nodeId, hostname: 'm1', addr: '192.168.1.107' }, ingressNetworkId: 'ingress1' })

const description = (hostname: string) => ({ hostname, platform: { architecture: 'x86_64', os: 'linux' }, resources: { nanoCPUs: 1e9, memoryBytes: 1 << 30 }, engineVersion: 'test' })

async function until<T> (what: string, probe: () => T | undefined | null | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = probe()
    if (value !== undefined && value !== null && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

/** A worker's side of a session, driven by the test. */
class Worker {
  readonly events: SessionEvent[] = []
  client!: RpcClient
  #heartbeat: NodeJS.Timeout | null = null
  readonly node: JoinedNode
  readonly addr: string
  constructor (node: JoinedNode, addr: string) {
    this.node = node
    this.addr = addr
  }

  async connect (): Promise<void> {
    this.client = await connectNode({ host: '127.0.0.1', port: manager.address.port, credentials: this.node.credentials })
  }

  async register (hostname: string): Promise<unknown> {
    return await this.client.call('node.register', { addr: this.addr, description: description(hostname) })
  }

  async subscribe (): Promise<void> {
    await this.client.subscribe('node.session', {}, (event) => {
      this.events.push(event as SessionEvent)
      if ((event as SessionEvent).type === 'logs') {
        const request = event as Extract<SessionEvent, { type: 'logs' }>
        void this.client.call('logs.result', { request: request.request, stdout: `out of ${request.task}\n`, stderr: '', error: null })
      }
    })
  }

  beat (on: boolean): void {
    if (this.#heartbeat !== null) clearInterval(this.#heartbeat)
    this.#heartbeat = on ? setInterval(() => { this.client.call('node.heartbeat').catch(() => {}) }, 50) : null
  }

  document (): DesiredStateInput | undefined {
    const docs = this.events.filter((e): e is Extract<SessionEvent, { type: 'document' }> => e.type === 'document')
    return docs.at(-1)?.document as DesiredStateInput | undefined
  }

  async close (): Promise<void> {
    this.beat(false)
    await this.client.close()
  }
}

const manager1 = { host: '127.0.0.1', port: manager.address.port }
const worker = new Worker(await joinSwarm({ manager: manager1, token: boot.joinTokens.worker }), '192.168.1.108')
t.teardown(async () => await worker.close())

t.test('a joined node is recorded when it registers, with the hostname and address it reports', async (t) => {
  await worker.connect()
  t.equal(manager.state.nodes[worker.node.identity.nodeId], undefined, 'admitted, not yet recorded')
  t.same(await worker.register('w1'), { nodeId: worker.node.identity.nodeId, heartbeatPeriodMs: 100 })
  t.match(manager.state.nodes[worker.node.identity.nodeId], { hostname: 'w1', addr: '192.168.1.108', role: 'worker', status: 'ready' })
  t.same(await worker.register('w1'), { nodeId: worker.node.identity.nodeId, heartbeatPeriodMs: 100 }, 'registering again (a new session) is fine')
  t.match(manager.snapshot().descriptions[worker.node.identity.nodeId], { hostname: 'w1' })
  worker.beat(true)
  await worker.subscribe()
  const doc = await until('a first document', () => worker.document())
  t.match(doc, { version: 1, tasks: [], ingress: { network: 'ingress1' } }, 'the routing mesh, no task yet')
  t.equal(manager.state.nodes[boot.manager.nodeId]?.managerStatus?.leader, true, 'the manager recorded itself as the leader')
})

t.test('a service: tasks reach the worker\'s document and its reports move them on', async (t) => {
  await manager.control({ op: 'propose', command: { type: 'service.create', id: 'svc1', spec: { name: 'web', image: 'debian', args: ['sleep', '60'], env: ['A=1'], mode: { kind: 'replicated', replicas: 2 } } } })
  const doc = await until('the worker\'s task', () => worker.document()?.tasks?.length === 1 && worker.document())
  const task = doc.tasks![0]!
  t.match(task, { name: /^web\.\d\./, service: 'svc1', image: 'debian', command: ['sleep', '60'], env: ['A=1'], desiredState: 'running' })
  await worker.client.call('task.status', { task: task.id, state: 'starting', message: 'starting' })
  await worker.client.call('task.status', { task: task.id, state: 'running', message: 'started' })
  t.equal(manager.state.tasks[task.id]?.state, 'running')
  const other = Object.values(manager.state.tasks).find((x) => x.id !== task.id)!
  await t.rejects(worker.client.call('task.status', { task: other.id, state: 'running' }), { code: 'STORE_ERR_NOT_FOUND' }, 'a node reports only its own tasks')
  await t.rejects(worker.client.call('task.status', { task: task.id, state: 'starting' }), { code: 'STORE_ERR_INVALID_TRANSITION' }, 'never backwards')
  const logs = await manager.control({ op: 'logs', tasks: [task.id, other.id] }) as Array<{ stdout: string, error: string | null }>
  t.equal(logs[0]!.stdout, `out of ${task.id}\n`, 'logs come from the node, over its session')
  t.match(logs[1]!.error, /not connected/, 'the manager node itself has no session in this test')
})

t.test('the control API: users\' commands only, checked before the log', async (t) => {
  const index = manager.state.index
  await t.rejects(manager.control({ op: 'propose', command: { type: 'task.remove', task: 'x' } }), { code: 'MANAGER_ERR_INVALID_REQUEST' })
  await t.rejects(manager.control({ op: 'propose', command: { type: 'network.create', id: 'n1', name: 'bad name' } }), { code: 'STORE_ERR_INVALID_COMMAND' })
  await t.rejects(manager.control({ op: 'propose', command: { type: 'node.update', node: 'w1', role: 'manager' } }), { code: 'MANAGER_ERR_UNSUPPORTED' })
  await t.rejects(manager.control({ op: 'propose', command: { type: 'service.scale', service: 'nope', replicas: 1 } }), { code: 'STORE_ERR_NOT_FOUND' })
  await t.rejects(manager.control({ op: 'bogus' }), { code: 'MANAGER_ERR_INVALID_REQUEST' })
  t.equal(manager.state.index, index, 'nothing changed')
  await t.rejects(worker.client.call('control', { op: 'state' }), { code: 'API_ERR_FORBIDDEN' }, 'a worker may not use the control API')
  const { token } = await manager.control({ op: 'join-token', role: 'worker', rotate: true }) as { token: string }
  t.not(token, boot.joinTokens.worker, 'rotated')
  await t.rejects(joinSwarm({ manager: manager1, token: boot.joinTokens.worker }), { code: 'CA_ERR_TOKEN_SECRET' }, 'the old token no longer admits')
  await t.rejects(joinSwarm({ manager: manager1, token: boot.joinTokens.manager }), { code: 'MANAGER_ERR_UNSUPPORTED' }, 'no second manager yet')
})

t.test('a silent node is down after three heartbeat periods, and its task moves', async (t) => {
  const id = worker.node.identity.nodeId
  const task = worker.document()!.tasks![0]!.id
  worker.beat(false)
  await until('the worker down', () => manager.state.nodes[id]?.status === 'down', 3000)
  t.match(manager.state.nodes[id], { status: 'down', statusMessage: 'heartbeat failure' })
  await until('the task replaced on the manager node', () => Object.values(manager.state.tasks).filter((x) => x.desiredState === 'running' && x.node === boot.manager.nodeId).length === 2)
  t.equal(manager.state.tasks[task]?.desiredState, 'shutdown')
  worker.beat(true)
  await until('the worker ready again', () => manager.state.nodes[id]?.status === 'ready', 3000)
  t.pass('heard from again: ready')
})

t.test('a removed node is told, and cannot come back with its certificate', async (t) => {
  const id = worker.node.identity.nodeId
  await manager.control({ op: 'propose', command: { type: 'node.remove', node: 'w1', force: true } })
  await until('the removal event', () => worker.events.some((e) => e.type === 'removed'))
  await t.rejects(worker.client.call('node.heartbeat'), { code: 'MANAGER_ERR_NODE_REMOVED' })
  await t.rejects(worker.register('w1'), { code: 'MANAGER_ERR_NODE_REMOVED' })
  t.equal(manager.state.nodes[id], undefined)
})

t.test('a restart keeps the state, and a join admitted before it', async (t) => {
  const { token } = await manager.control({ op: 'join-token', role: 'worker' }) as { token: string }
  const late = new Worker(await joinSwarm({ manager: manager1, token }), '192.168.1.109')
  const before = manager.state
  await manager.close()
  manager = await open()
  t.same(manager.state, before, 'the same state, replayed from the log')
  await late.connect()
  t.teardown(async () => await late.close())
  await late.register('w2')
  t.match(manager.state.nodes[late.node.identity.nodeId], { hostname: 'w2', addr: '192.168.1.109' })
})
