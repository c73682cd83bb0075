/**
 * A deterministic cluster on paper: the store, the orchestrator, and agents
 * that play every ready node, driven by a logical clock. For tests and
 * scripted scenarios (and a dry run of what a change would do): no timers,
 * no sockets, the same run every time.
 *
 * One round: heartbeats from every node not marked silent, an orchestrator
 * round whose commands are applied in order, then one report per task from
 * the agents (a task assigned to a ready node starts, or ends as `outcome`
 * says; a task told to stop stops). `settle` repeats rounds, moving the clock
 * by `step`, or straight to the orchestrator's `wakeAt` when nothing
 * happened (or to the moment a silent node's grace period ends), until a
 * round does nothing and nothing is due.
 */
import type { HealthState } from '../../netd/health/health-spec.ts'
import { apply, type ApplyOutcome } from '../store/apply.ts'
import type { CommandInput } from '../store/commands.ts'
import { StoreError } from '../store/errors.ts'
import { emptyState, isTerminal, TASK_STATE_ORDER, type ClusterState, type TaskRecord } from '../store/state.ts'
import { plan, type Liveness, type ReconcilePlan } from './orchestrator.ts'

export type AgentOutcome = 'running' | 'failed' | 'rejected' | 'complete' | 'stay'

/** The reports every ready node's agent would send after one step of work. Down nodes send nothing. */
export function agentReports (
  state: ClusterState, outcome: (task: TaskRecord) => AgentOutcome = () => 'running', health: (task: TaskRecord) => HealthState = () => 'healthy'
): CommandInput[] {
  const reports: CommandInput[] = []
  const tasks = Object.values(state.tasks).sort((a, b) => (a.id < b.id ? -1 : 1))
  for (const task of tasks) {
    if (task.node === null || TASK_STATE_ORDER[task.state] < TASK_STATE_ORDER.assigned || isTerminal(task.state)) continue
    if (state.nodes[task.node]?.status !== 'ready') continue
    if (task.desiredState === 'shutdown') {
      reports.push({ type: 'task.status', task: task.id, node: task.node, state: 'shutdown', message: 'shutdown' })
      continue
    }
    if (task.state === 'running') {
      // A running task with a check reports each change of its health.
      const status = task.spec.healthcheck === undefined ? undefined : health(task)
      if (status !== undefined && task.health?.status !== status) {
        reports.push({ type: 'task.health', task: task.id, node: task.node, report: { status, failingStreak: status === 'healthy' ? 0 : 3, log: [] } })
      }
      continue
    }
    const next = outcome(task)
    if (next === 'stay') continue
    reports.push({
      type: 'task.status',
      task: task.id,
      node: task.node,
      state: next,
      message: next,
      ...(next === 'failed' || next === 'rejected' ? { error: 'task: non-zero exit (1)' } : {})
    })
  }
  return reports
}

export interface SimulationOptions {
  now?: number
  gracePeriod?: number
  /** What an agent does with a task it was given (default: it runs). */
  outcome?: (task: TaskRecord, simulation: Simulation) => AgentOutcome
  /** The health a running task with a check reports (default: healthy). */
  health?: (task: TaskRecord, simulation: Simulation) => HealthState
}

export interface RoundRecord {
  readonly plan: ReconcilePlan
  readonly reports: readonly CommandInput[]
}

export class Simulation {
  state: ClusterState = emptyState()
  now: number
  readonly gracePeriod: number
  /** Nodes whose heartbeats stopped (a crashed or cut-off host). */
  readonly silent = new Set<string>()
  readonly lastSeen = new Map<string, number>()
  outcome: (task: TaskRecord, simulation: Simulation) => AgentOutcome
  health: (task: TaskRecord, simulation: Simulation) => HealthState
  /** Every refusal by apply of a command the orchestrator or an agent sent: expected to stay empty. */
  readonly refused: Array<{ command: CommandInput, message: string }> = []
  #since: number

  constructor (options: SimulationOptions = {}) {
    this.now = options.now ?? 1_000_000
    this.#since = this.now
    this.gracePeriod = options.gracePeriod ?? 15_000
    this.outcome = options.outcome ?? (() => 'running')
    this.health = options.health ?? (() => 'healthy')
  }

  propose (command: CommandInput): ApplyOutcome {
    const outcome = apply(this.state, command, this.now)
    this.state = outcome.state
    return outcome
  }

  /** Proposes, and throws the store's error if it was refused: for setting up a scenario. */
  must (command: CommandInput): ApplyOutcome {
    const outcome = this.propose(command)
    if (outcome.error !== undefined) throw new StoreError(outcome.error.code, outcome.error.message)
    return outcome
  }

  liveness (): Liveness {
    return { lastSeen: this.lastSeen, since: this.#since, gracePeriod: this.gracePeriod }
  }

  round (): RoundRecord {
    for (const id of Object.keys(this.state.nodes)) if (!this.silent.has(id)) this.lastSeen.set(id, this.now)
    const planned = plan(this.state, this.now, this.liveness())
    for (const { command, error } of planned.rejected) this.refused.push({ command, message: `${error.code}: ${error.message}` })
    for (const command of planned.commands) this.#record(command)
    const reports = agentReports(this.state, (task) => this.outcome(task, this), (task) => this.health(task, this))
      .filter((r) => (r.type !== 'task.status' && r.type !== 'task.health') || !this.silent.has(r.node ?? ''))
    for (const report of reports) this.#record(report)
    return { plan: planned, reports }
  }

  #record (command: CommandInput): void {
    const outcome = this.propose(command)
    if (outcome.error !== undefined) this.refused.push({ command, message: `${outcome.error.code}: ${outcome.error.message}` })
  }

  /** Rounds until quiet; returns how many. Throws if it has not settled after `maxRounds`. */
  settle (options: { step?: number, maxRounds?: number } = {}): number {
    const step = options.step ?? 1000
    const maxRounds = options.maxRounds ?? 500
    for (let rounds = 1; rounds <= maxRounds; rounds++) {
      const { plan: planned, reports } = this.round()
      if (planned.commands.length > 0 || reports.length > 0) {
        this.now += step
        continue
      }
      // Time alone brings about the orchestrator's timers and, as the leader's heartbeat clock, silent nodes going Down.
      const deadlines = [...this.silent]
        .filter((id) => this.state.nodes[id]?.status === 'ready')
        .map((id) => Math.max(this.lastSeen.get(id) ?? this.#since, this.#since) + this.gracePeriod + 1)
      const next = Math.min(planned.wakeAt ?? Infinity, ...deadlines)
      if (next === Infinity) return rounds
      this.now = Math.max(this.now + 1, next)
    }
    throw new Error(`the simulation did not settle in ${maxRounds} rounds`)
  }

  /** Moves the clock without doing anything (heartbeats included). */
  advance (ms: number): void {
    this.now += ms
  }
}
