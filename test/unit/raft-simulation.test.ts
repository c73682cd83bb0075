/**
 * Property: Raft never loses a committed entry, whatever the network and the
 * crashes do. Each seed drives a group of 3 or 5 through thousands of steps of
 * lost, delayed, reordered and duplicated messages, partitions, crashes (also
 * right after a write, before the messages leave) and restarts from what was
 * persisted (a torn write keeps only a prefix of the last batch), with clients proposing all along, and, in the membership runs,
 * voters added and removed. The simulation checks Election Safety, Log
 * Matching, Leader Completeness and State Machine Safety as it goes; at the
 * end the network heals, every member restarts, and each voter must hold
 * every proposal that was ever acknowledged.
 *
 * A failing seed replays exactly: RAFT_SIM_SEED=n runs that seed alone.
 * RAFT_SIM_SEEDS=n runs n seeds per case (a stress loop; default 100).
 */
import t, { type Test } from 'tap'
import { Simulation, type SimulationOptions } from '../helpers/raft-simulation.ts'
import type { NodeId } from '../../manager/raft/types.ts'

const SEEDS = Number(process.env.RAFT_SIM_SEEDS ?? 100)
const ONLY = process.env.RAFT_SIM_SEED === undefined ? null : Number(process.env.RAFT_SIM_SEED)
const seeds = (offset: number): number[] => ONLY !== null ? [ONLY] : Array.from({ length: SEEDS }, (_, k) => offset + k)

interface Scenario {
  readonly nodes: readonly NodeId[]
  readonly voters?: readonly NodeId[]
  readonly steps: number
  /** Probability per step that the leader proposes a membership change. */
  readonly membership: number
}

/** Runs one seed; returns what went wrong (empty when every property held). */
function run (seed: number, scenario: Scenario): { problems: string[], acknowledged: number, leaders: number } {
  // Each seed also draws its own settings, so the runs cover both election styles and many batch sizes.
  const options: SimulationOptions = {
    seed,
    nodes: scenario.nodes,
    voters: scenario.voters ?? scenario.nodes,
    electionTicks: 6 + (seed % 6),
    preVote: seed % 3 !== 0,
    checkQuorum: seed % 4 !== 0,
    maxEntriesPerMessage: 1 + (seed % 4),
    snapshotEvery: 10 + (seed % 30)
  }
  const sim = new Simulation(options)
  const pick = <T>(items: readonly T[]): T => items[Math.floor(sim.random() * items.length)]!
  sim.faults = {
    drop: 0.3 * sim.random(),
    duplicate: 0.1 * sim.random(),
    maxDelay: 1 + Math.floor(sim.random() * 8),
    crashAfterPersist: 0.01 * sim.random(),
    crashDuringPersist: 0.01 * sim.random()
  }
  const crashRate = 0.02 * sim.random()
  const partitionRate = 0.03 * sim.random()
  const nodes = scenario.nodes
  let command = 0

  for (let step = 0; step < scenario.steps; step++) {
    const r = sim.random()
    if (r < partitionRate) {
      const cut = 1 + Math.floor(sim.random() * (nodes.length - 1))
      const shuffled = [...nodes].sort(() => sim.random() - 0.5)
      sim.partition([shuffled.slice(0, cut), shuffled.slice(cut)])
    } else if (r < 2 * partitionRate) {
      sim.heal()
    }
    if (sim.random() < crashRate) sim.crash(pick(nodes))
    for (const id of nodes) if (sim.core(id) === null && sim.random() < 0.1) sim.restart(id)
    if (sim.random() < 0.3) sim.propose(pick(nodes), `c${command++}`)
    if (sim.random() < scenario.membership) {
      const leader = sim.leaderIds()[0]
      if (leader !== undefined) {
        const voters = sim.core(leader)!.voters
        const id = pick(nodes)
        if (!voters.includes(id)) sim.proposeConfChange(leader, 'add', id)
        else if (voters.length > 1) sim.proposeConfChange(leader, 'remove', id)
      }
    }
    sim.step()
    if (step % 100 === 0) sim.checkLogMatching()
  }

  // Heal everything and wait for one leader, a final acknowledged proposal, and every voter caught up.
  sim.heal()
  sim.faults = { drop: 0, duplicate: 0, maxDelay: 1, crashAfterPersist: 0 }
  for (const id of nodes) sim.restart(id)
  let voters: readonly NodeId[] = []
  let settled = false
  for (let step = 0; step < 3000 && !settled; step++) {
    sim.step()
    const leader = sim.leaderIds()[0]
    if (leader === undefined) continue
    if (step % 50 === 0) sim.propose(leader, `final${step}`)
    const core = sim.core(leader)!
    voters = core.voters
    settled = core.commitIndex === core.lastIndex &&
      voters.every((id) => sim.core(id)!.appliedIndex === core.lastIndex) &&
      sim.acknowledged.some((a) => a.data.startsWith('final'))
  }
  sim.checkLogMatching()

  const problems = [...sim.violations]
  if (!settled) problems.push('no leader settled the group within 3000 steps of a healed network')
  for (const id of voters) {
    for (const lost of sim.lostAcknowledged(id)) problems.push(`${id} lacks acknowledged ${JSON.stringify(lost)}`)
  }
  const states = new Set(voters.map((id) => JSON.stringify(sim.member(id).applied)))
  if (states.size > 1) problems.push(`voters' state machines differ (${states.size} versions)`)
  return { problems, acknowledged: sim.acknowledged.length, leaders: sim.leaders.size }
}

function property (t: Test, name: string, offset: number, scenario: Scenario): void {
  t.test(name, async (t) => {
    const failures: string[] = []
    let acknowledged = 0
    let leaders = 0
    for (const seed of seeds(offset)) {
      const result = run(seed, scenario)
      acknowledged += result.acknowledged
      leaders += result.leaders
      if (result.problems.length > 0) failures.push(`seed ${seed}: ${result.problems.slice(0, 5).join('; ')}`)
    }
    t.same(failures, [], `${seeds(offset).length} seeds, ${acknowledged} acknowledged proposals, ${leaders} terms with a leader`)
    t.ok(acknowledged > 0, 'proposals were acknowledged')
  })
}

property(t, '3 members: no acknowledged proposal is lost, no safety property is broken', 1000, { nodes: ['a', 'b', 'c'], steps: 2500, membership: 0 })
property(t, '5 members: no acknowledged proposal is lost, no safety property is broken', 2000, { nodes: ['a', 'b', 'c', 'd', 'e'], steps: 2500, membership: 0 })
property(t, 'voters added and removed one at a time: the same, across configurations', 3000, { nodes: ['a', 'b', 'c', 'd', 'e'], voters: ['a', 'b', 'c'], steps: 3000, membership: 0.02 })
