/**
 * The agent's decision (netd/cluster/task-sync.ts): which tasks to start,
 * stop, end without a process, and forget, from the document's task list and
 * the runtime's statuses.
 */
import t from 'tap'
import { planTaskSync, processSpecOf, type SyncInput } from '../../netd/cluster/task-sync.ts'
import { routedSubnets } from '../../netd/cluster/underlay-routes.ts'
import type { Task } from '../../netd/desired-state.ts'
import type { TaskStatus } from '../../netd/runtime/status.ts'

const task = (id: string, desiredState: 'running' | 'shutdown' = 'running'): Task => ({
  id, name: `web.1.${id}`, service: 'web', image: 'debian', command: ['sleep', '1'], env: ['A=1', 'B=x=y'], drainDelay: 0, stopGracePeriod: 1000, desiredState
})
const status = (id: string, state: TaskStatus['state'], finishedAt: string | null = null, service = 'web'): TaskStatus => ({
  task: id, name: `${service}.1.${id}`, state, message: '', error: null, pid: null, exitCode: null, signal: null, startedAt: null, finishedAt
})
const input = (over: Partial<SyncInput>): SyncInput => ({ tasks: [], statuses: new Map(), busy: new Set(), rejected: new Set(), namespaces: new Set(), keep: 5, ...over })

t.test('start what is wanted once its namespace exists', async (t) => {
  const plan = planTaskSync(input({ tasks: [task('a'), task('b')], namespaces: new Set(['a']) }))
  t.same(plan.start.map((x) => x.id), ['a'], 'b waits for its namespace')
  t.same(plan.stop, [])
})

t.test('never twice: busy, rejected, or already known to the runtime (even ended)', async (t) => {
  const plan = planTaskSync(input({
    tasks: [task('a'), task('b'), task('c'), task('d')],
    namespaces: new Set(['a', 'b', 'c', 'd']),
    busy: new Set(['a']),
    rejected: new Set(['b']),
    statuses: new Map([['c', status('c', 'running')], ['d', status('d', 'failed', '2024-01-01')]])
  }))
  t.same(plan.start, [])
})

t.test('stop what is desired shutdown or no longer listed; end the never-started', async (t) => {
  const plan = planTaskSync(input({
    tasks: [task('a', 'shutdown'), task('b', 'shutdown'), task('c', 'shutdown')],
    statuses: new Map([['a', status('a', 'running')], ['c', status('c', 'shutdown', 'x')], ['gone', status('gone', 'running')], ['going', status('going', 'starting')]]),
    busy: new Set(['going'])
  }))
  t.same(plan.stop, ['a', 'gone'], 'a stop in progress is not asked again')
  t.same(plan.neverStarted, ['b'])
})

t.test('forget ended tasks beyond the most recent per service', async (t) => {
  const statuses = new Map<string, TaskStatus>()
  for (let i = 0; i < 7; i++) statuses.set(`w${i}`, status(`w${i}`, 'failed', `2024-01-01T00:00:0${i}Z`))
  statuses.set('db1', status('db1', 'complete', '2024-01-01T00:00:00Z', 'db'))
  statuses.set('kept', status('kept', 'failed', '2023-01-01T00:00:00Z'))
  const plan = planTaskSync(input({ statuses, tasks: [task('kept')], keep: 5 }))
  t.same(plan.forget, ['w0', 'w1'], 'the two oldest of web; db\'s one is kept; a listed task never')
})

t.test('the runtime\'s spec of a document task', async (t) => {
  t.same(processSpecOf({ ...task('a'), workdir: '/tmp', user: 'nobody' }, 'weftlab-x-h1-'), {
    task: 'a', name: 'web.1.a', netns: 'weftlab-x-h1-t-a', image: 'debian', command: ['sleep', '1'], env: { A: '1', B: 'x=y' }, workdir: '/tmp', user: 'nobody'
  })
})

t.test('swarm init avoids the subnets the underlay routes', async (t) => {
  t.same(routedSubnets([{ dst: 'default' }, { dst: '192.168.99.0/24' }, { dst: '10.9.8.7' }, { dst: '192.168.99.0/24' }, {}]), ['10.9.8.7/32', '192.168.99.0/24'])
})
