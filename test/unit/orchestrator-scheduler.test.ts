/**
 * The scheduler: spread, eligibility (availability, status, constraints, host
 * ports), Swarm's "no suitable node" explanations, and its invariants over
 * random clusters: never an ineligible node, spread within one of even,
 * exactly one task per eligible node for a global service.
 */
import t from 'tap'
import { apply } from '../../manager/store/apply.ts'
import type { CommandInput } from '../../manager/store/commands.ts'
import { emptyState, type ClusterState } from '../../manager/store/state.ts'
import { ineligibility, schedule } from '../../manager/orchestrator/scheduler.ts'
import { Simulation } from '../../manager/orchestrator/simulation.ts'
import { isActive } from '../../manager/store/queries.ts'
import { prng } from '../helpers/prng.ts'

function build (commands: readonly CommandInput[]): ClusterState {
  let state = emptyState()
  for (const command of commands) {
    const outcome = apply(state, command, 1000)
    if (outcome.error !== undefined) throw new Error(`${command.type}: ${outcome.error.message}`)
    state = outcome.state
  }
  return state
}

const THREE_NODES: CommandInput[] = [
  { type: 'cluster.init', clusterId: 'c', node: { id: 'n1', hostname: 'manager', addr: '192.168.1.107' }, ingressNetworkId: 'ingress' },
  { type: 'node.join', node: { id: 'n2', hostname: 'worker1', addr: '192.168.1.108', labels: { datacenter: 'bjidc' } } },
  { type: 'node.join', node: { id: 'n3', hostname: 'worker2', addr: '192.168.1.109' } }
]

function withTasks (extra: readonly CommandInput[], spec: Record<string, unknown>, count: number): ClusterState {
  const commands: CommandInput[] = [...THREE_NODES, ...extra, { type: 'service.create', id: 's1', spec: { name: 'web', image: 'nginx', mode: { kind: 'replicated', replicas: count }, ...spec } }]
  for (let slot = 1; slot <= count; slot++) commands.push({ type: 'task.create', id: `t${slot}`, service: 's1', slot })
  return build(commands)
}

const placements = (state: ClusterState): string[] =>
  schedule(state).assignments.map(({ task, node }) => `${task}>${state.nodes[node]!.hostname}`)

t.test('replicas spread over nodes, hostname order breaking ties (the walkthrough: manager, worker1, worker2)', async (t) => {
  t.same(placements(withTasks([], {}, 3)), ['t1>manager', 't2>worker1', 't3>worker2'])
  t.same(placements(withTasks([], {}, 5)), ['t1>manager', 't2>worker1', 't3>worker2', 't4>manager', 't5>worker1'])
})

t.test('fewest tasks of the service first, then fewest tasks overall', async (t) => {
  let state = withTasks([], {}, 1)
  // Another service already has two tasks on manager and one on worker1.
  const other: CommandInput[] = [{ type: 'service.create', id: 's0', spec: { name: 'busy', image: 'x', mode: { kind: 'replicated', replicas: 3 } } }]
  for (const [slot, node] of [[1, 'n1'], [2, 'n1'], [3, 'n2']] as const) {
    other.push({ type: 'task.create', id: `b${slot}`, service: 's0', slot }, { type: 'task.assign', task: `b${slot}`, node })
  }
  for (const command of other) state = apply(state, command, 1000).state
  t.same(placements(state), ['t1>worker2'])
})

t.test('pause and drain take no new tasks; down nodes neither; explanations', async (t) => {
  const paused = withTasks([{ type: 'node.update', node: 'manager', availability: 'drain' }, { type: 'node.update', node: 'worker1', availability: 'pause' }], {}, 2)
  t.same(placements(paused), ['t1>worker2', 't2>worker2'])
  const down = withTasks([
    { type: 'node.status', node: 'worker2', status: 'down' },
    { type: 'node.update', node: 'manager', availability: 'drain' },
    { type: 'node.update', node: 'worker1', availability: 'pause' }
  ], {}, 1)
  t.same(schedule(down).unschedulable, [{ task: 't1', error: 'no suitable node (3 nodes not available for new tasks)' }])
})

t.test('constraints', async (t) => {
  t.same(placements(withTasks([], { constraints: ['node.labels.datacenter==bjidc'] }, 2)), ['t1>worker1', 't2>worker1'])
  t.same(placements(withTasks([], { constraints: ['node.role!=manager'] }, 2)), ['t1>worker1', 't2>worker2'])
  const none = withTasks([{ type: 'node.status', node: 'worker2', status: 'down' }], { constraints: ['node.hostname==nowhere'] }, 1)
  t.same(schedule(none).unschedulable, [{ task: 't1', error: 'no suitable node (1 node not available for new tasks; scheduling constraints not satisfied on 2 nodes)' }])
})

t.test('host-mode ports: one task of the service per node', async (t) => {
  const state = withTasks([], { ports: [{ target: 80, published: 8080, mode: 'host' }] }, 4)
  const decision = schedule(state)
  t.same(decision.assignments.map((a) => state.nodes[a.node]!.hostname), ['manager', 'worker1', 'worker2'])
  t.same(decision.unschedulable, [{ task: 't4', error: 'no suitable node (host-mode port already in use on 3 nodes)' }])
  const ingressMode = withTasks([], { ports: [{ target: 80, published: 8080 }] }, 4)
  t.equal(schedule(ingressMode).assignments.length, 4, 'ingress-mode ports do not limit placement')
})

t.test('a global task waits for its own node', async (t) => {
  const state = build([
    ...THREE_NODES,
    { type: 'node.update', node: 'worker1', availability: 'pause' },
    { type: 'service.create', id: 'g', spec: { name: 'agent', image: 'x', mode: { kind: 'global' } } },
    { type: 'task.create', id: 'g1', service: 'g', node: 'n1' },
    { type: 'task.create', id: 'g2', service: 'g', node: 'n2' }
  ])
  const decision = schedule(state)
  t.same(decision.assignments, [{ task: 'g1', node: 'n1' }])
  t.same(decision.unschedulable, [{ task: 'g2', error: 'no suitable node (1 node not available for new tasks)' }])
  t.equal(ineligibility(state, state.nodes.n3!, state.tasks.g1!), null)
})

t.test('property: placements respect eligibility, spread evenly, one global task per eligible node', async (t) => {
  const failures: string[] = []
  for (let run = 0; run < 40 && failures.length === 0; run++) {
    const random = prng(0x5c4e + run)
    const sim = new Simulation()
    sim.must({ type: 'cluster.init', clusterId: 'c', node: { id: 'n0', hostname: 'h0', addr: '192.168.9.1' }, ingressNetworkId: 'ingress' })
    const nodeCount = 1 + Math.floor(random() * 7)
    for (let i = 1; i < nodeCount; i++) {
      sim.must({ type: 'node.join', node: { id: `n${i}`, hostname: `h${i}`, addr: `192.168.9.${i + 1}`, labels: random() < 0.5 ? { zone: 'a' } : { zone: 'b' } } })
    }
    for (let i = 0; i < nodeCount; i++) {
      const roll = random()
      if (roll < 0.15) sim.must({ type: 'node.update', node: `n${i}`, availability: 'drain' })
      else if (roll < 0.25) sim.must({ type: 'node.update', node: `n${i}`, availability: 'pause' })
      else if (roll < 0.35 && i > 0) sim.silent.add(`n${i}`)
    }
    sim.advance(60_000) // silent nodes miss their heartbeats
    const replicas = Math.floor(random() * 12)
    const constraints = random() < 0.4 ? ['node.labels.zone==a'] : []
    sim.must({ type: 'service.create', id: 'r', spec: { name: 'rep', image: 'x', mode: { kind: 'replicated', replicas }, constraints } })
    sim.must({ type: 'service.create', id: 'g', spec: { name: 'glob', image: 'x', mode: { kind: 'global' }, constraints: random() < 0.5 ? ['node.labels.zone==b'] : [] } })
    sim.settle()
    const state = sim.state
    if (sim.refused.length > 0) failures.push(`run ${run}: refused ${JSON.stringify(sim.refused[0])}`)
    const eligible = (service: string): string[] => Object.values(state.nodes).filter((n) => {
      const zone = state.services[service]!.spec.constraints[0]?.split('==')[1]
      return n.status === 'ready' && n.availability === 'active' && (zone === undefined || n.labels.zone === zone)
    }).map((n) => n.id).sort()
    const active = Object.values(state.tasks).filter(isActive)
    for (const task of active) {
      if (!eligible(task.service).includes(task.node!)) failures.push(`run ${run}: task ${task.id} of ${task.service} on ineligible node ${task.node}`)
    }
    const repEligible = eligible('r')
    const perNode = repEligible.map((node) => active.filter((t) => t.service === 'r' && t.node === node).length)
    if (repEligible.length > 0) {
      if (Math.max(...perNode) - Math.min(...perNode) > 1) failures.push(`run ${run}: uneven spread ${perNode.join(',')}`)
      if (perNode.reduce((a, b) => a + b, 0) !== replicas) failures.push(`run ${run}: ${perNode.reduce((a, b) => a + b, 0)} of ${replicas} replicas placed`)
    } else if (replicas > 0) {
      const pending = Object.values(state.tasks).filter((t) => t.service === 'r' && t.state === 'pending' && t.desiredState === 'running')
      if (pending.length !== replicas || pending.some((t) => !/^no suitable node/.test(t.error ?? ''))) failures.push(`run ${run}: unplaceable replicas without an explanation`)
    }
    const globalNodes = active.filter((t) => t.service === 'g').map((t) => t.node!).sort()
    if (JSON.stringify(globalNodes) !== JSON.stringify(eligible('g'))) failures.push(`run ${run}: global on ${globalNodes.join(',')}, eligible ${eligible('g').join(',')}`)
  }
  t.same(failures.slice(0, 5), [])
})
