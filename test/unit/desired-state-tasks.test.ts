/**
 * The document's task list: what the manager puts in it (node-documents.ts
 * `nodeTasks`), what netd accepts, and the namespace each listed task gets
 * even without a network.
 */
import t from 'tap'
import { Simulation } from '../../manager/orchestrator/simulation.ts'
import { nodeDocumentFor, nodeTasks } from '../../manager/store/node-documents.ts'
import { parseDesiredState } from '../../netd/desired-state.ts'
import { desiredKernel } from '../../netd/desired-kernel.ts'

const NODE = { prefix: 'weft-', underlayAddress: '192.168.1.107', overlayMtu: 1450 }
const base = { version: 1, revision: 1, networks: [], endpoints: [], remoteEndpoints: [] }

t.test('netd reads the task list; duplicate ids are refused', async (t) => {
  const doc = parseDesiredState({ ...base, tasks: [{ id: 't1', name: 'web.1.t1', service: 'web', image: 'debian', command: ['sleep', '1'] }] })
  t.same(doc.tasks, [{ id: 't1', name: 'web.1.t1', service: 'web', image: 'debian', command: ['sleep', '1'], env: [], drainDelay: 2000, stopGracePeriod: 10000, desiredState: 'running' }], 'drain delay and grace period default to 2 s and 10 s')
  t.equal(parseDesiredState(base).tasks, undefined, 'a hand-written document may leave it out')
  t.throws(() => parseDesiredState({ ...base, tasks: [{ id: 't1', name: 'a', service: 's', image: 'i' }, { id: 't1', name: 'b', service: 's', image: 'i' }] }), { message: /tasks\[1\]\.id: duplicate task id "t1"/ })
  t.throws(() => parseDesiredState({ ...base, tasks: [{ id: 't1', name: '-x', service: 's', image: 'i', desiredState: 'paused' }] }), { code: 'NETD_ERR_INVALID_DOCUMENT' })
})

t.test('a listed task gets its namespace, network or not', async (t) => {
  const doc = parseDesiredState({ ...base, tasks: [{ id: 't1', name: 'web.1.t1', service: 'web', image: 'debian' }, { id: 't2', name: 'web.2.t2', service: 'web', image: 'debian', desiredState: 'shutdown' }] })
  const kernel = desiredKernel(doc, NODE)
  t.same([...kernel.tasks.keys()], ['t1', 't2'])
  t.match(kernel.tasks.get('t1'), { netns: 'weft-t-t1', loUp: true, interfaces: new Map() })
})

t.test('the manager lists a node\'s tasks from assignment until they end', async (t) => {
  const sim = new Simulation()
  sim.must({ type: 'cluster.init', clusterId: 'c1', node: { id: 'n1', hostname: 'manager', addr: '192.168.1.107' }, ingressNetworkId: 'ingress' })
  sim.must({ type: 'service.create', id: 'web', spec: { name: 'web', image: 'debian', args: ['sleep', '60'], env: ['A=1'], workdir: '/tmp', user: 'nobody', mode: { kind: 'replicated', replicas: 2 } } })
  sim.settle()
  const tasks = nodeTasks(sim.state, 'n1')
  t.equal(tasks.length, 2)
  t.match(tasks[0], { name: /^web\.[12]\.[a-z0-9]+$/, service: 'web', image: 'debian', command: ['sleep', '60'], env: ['A=1'], workdir: '/tmp', user: 'nobody', desiredState: 'running' })
  t.doesNotThrow(() => parseDesiredState(nodeDocumentFor(sim.state, 'n1')))
  const [first] = tasks
  sim.must({ type: 'service.remove', service: 'web' })
  t.same(nodeTasks(sim.state, 'n1').map((x) => [x.id, x.desiredState, x.name]), tasks.map((x) => [x.id, 'shutdown', x.id]), 'told to stop: still listed (its service gone, named by id)')
  t.same(nodeDocumentFor(sim.state, 'n1')!.endpoints, [], 'but out of every endpoint table at once')
  sim.must({ type: 'task.status', task: first!.id, state: 'shutdown', node: 'n1' })
  t.same(nodeTasks(sim.state, 'n1').map((x) => x.id), [tasks[1]!.id], 'gone once it ended')
})
