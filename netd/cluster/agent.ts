/**
 * The node agent: this node's session with the manager, and the task runtime
 * kept in line with what the manager wants.
 *
 * One session at a time, over mutual TLS with the node's certificate:
 *   1. node.register (description, underlay address): the manager records a
 *      newly admitted node, and answers the heartbeat period;
 *   2. node.session: the node's desired-state document, pushed on change;
 *      each one is applied by the daemon exactly as `netd apply` would, then
 *      the runtime is synced to its task list (task-sync.ts);
 *   3. every task's current status is reported again (reports made while
 *      the manager was away are not lost), then each change as it happens;
 *   4. node.heartbeat every period; a failed heartbeat ends the session.
 * A lost session is retried with exponential backoff (100 ms to 5 s). While
 * no manager answers, the node keeps the last document: tasks keep running,
 * resolving and balancing on it (the data plane survives the control plane).
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { parseManagerAddress } from '../../manager/ca/join-command.ts'
import { connectNode } from '../../manager/api/mtls.ts'
import type { RpcClient } from '../../manager/api/rpc-client.ts'
import type { NodeDescription } from '../../manager/control.ts'
import { MAX_LOG_BYTES, type RegisterResult, type SessionEvent } from '../../manager/dispatcher.ts'
import type { NetdDaemon } from '../daemon.ts'
import { taskNamespaceName } from '../kernel-state.ts'
import type { TaskRuntime } from '../runtime/runtime.ts'
import { isFinal, type TaskStatus } from '../runtime/status.ts'
import type { DesiredState, Task } from '../desired-state.ts'
import type { HealthReport } from '../health/health-spec.ts'
import type { HealthMonitor } from '../health/monitor.ts'
import { probeTargetOf } from '../health/probe-target.ts'
import type { Membership } from './identity.ts'
import { planTaskSync, processSpecOf } from './task-sync.ts'

export interface AgentOptions {
  readonly membership: Membership
  readonly daemon: NetdDaemon
  readonly runtime: TaskRuntime
  readonly description: NodeDescription
  /** The node's underlay address (netd's --advertise-addr). */
  readonly advertiseAddr: string
  readonly log: Logger
  /** Runs the health checks of the tasks this node runs. */
  readonly health: HealthMonitor
  /** How long a stopped task gets between SIGTERM and SIGKILL (Docker's default: 10 s). */
  readonly stopGraceMs?: number
  /** Ended tasks kept per service, with their logs, once the manager forgot them. */
  readonly keepEnded?: number
}

export type AgentState = 'connecting' | 'ready' | 'removed' | 'stopped'

export interface AgentStatus {
  readonly state: AgentState
  readonly manager: string
  readonly lastError: string | null
  readonly heartbeatPeriodMs: number
}

const BACKOFF_MIN_MS = 100
const BACKOFF_MAX_MS = 5000
const SYNC_EVERY_MS = 2000
/** Errors of node.register that retrying will not fix: the node is told, not retried, before its first registration. */
const FATAL = new Set(['MANAGER_ERR_NODE_REMOVED', 'STORE_ERR_ADDRESS_IN_USE', 'STORE_ERR_INVALID_COMMAND', 'API_ERR_UNAUTHENTICATED', 'API_ERR_MANAGER_UNTRUSTED'])

export class Agent {
  readonly #options: AgentOptions
  readonly #log: Logger
  readonly #manager: string
  #state: AgentState = 'connecting'
  #lastError: string | null = null
  #heartbeatPeriodMs = 1000
  #client: RpcClient | null = null
  readonly #stop = new AbortController()
  #loop: Promise<void> | null = null
  #everRegistered = false
  readonly #registered: Promise<void>
  #resolveRegistered!: () => void
  #rejectRegistered!: (error: Error) => void
  #nextDocument: unknown = null
  #applying: Promise<void> | null = null
  readonly #busy = new Set<string>()
  readonly #rejected = new Map<string, string>()
  /** Tasks ended without a process (desired shutdown before they started), reported this session. */
  readonly #endedUnstarted = new Set<string>()
  readonly #unlisten: () => void
  readonly #unlistenHealth: () => void
  #syncTimer: NodeJS.Timeout | null = null

  constructor (options: AgentOptions) {
    this.#options = options
    this.#log = options.log.child({ component: 'agent', nodeId: options.membership.identity.nodeId })
    this.#manager = options.membership.identity.managers[0]!
    this.#registered = new Promise<void>((resolve, reject) => { this.#resolveRegistered = resolve; this.#rejectRegistered = reject })
    this.#registered.catch(() => {})
    this.#unlisten = options.runtime.onChange((status) => {
      if (isFinal(status.state)) {
        // Out of local answers and backend sets before the manager hears of it.
        options.daemon.setLocallyDown(status.task, true).catch((error: unknown) => this.#log.warn({ task: status.task, err: error }, 'could not take an ended task out of traffic'))
      }
      this.#report(status.task, status.state, status.message, status.error)
      if (status.state !== 'starting' && status.state !== 'running') this.#sync()
      else this.#syncHealth()
    })
    this.#unlistenHealth = options.health.onChange((task, report) => {
      // Unhealthy leaves local traffic now; back to healthy waits for the manager, which hears of it next.
      options.daemon.setLocallyDown(task, report.status === 'unhealthy').catch((error: unknown) => this.#log.warn({ task, err: error }, 'could not apply a health change locally'))
      this.#reportHealth(task, report)
    })
  }

  /** Starts the session loop and the runtime sync. */
  start (): void {
    if (this.#loop !== null) return
    this.#sync()
    this.#syncTimer = setInterval(() => this.#sync(), SYNC_EVERY_MS)
    this.#syncTimer.unref()
    this.#loop = this.#run()
  }

  /** Resolves once the manager has recorded this node; rejects with the manager's refusal. */
  registered (timeoutMs: number): Promise<void> {
    return Promise.race([
      this.#registered,
      sleep(timeoutMs, undefined, { ref: false }).then(() => { throw new Error(`the manager at ${this.#manager} did not record this node within ${timeoutMs / 1000} s${this.#lastError === null ? '' : ` (last error: ${this.#lastError})`}`) })
    ])
  }

  status (): AgentStatus {
    return { state: this.#state, manager: this.#manager, lastError: this.#lastError, heartbeatPeriodMs: this.#heartbeatPeriodMs }
  }

  /** Tells the manager this node leaves (best effort). */
  async announceLeave (): Promise<void> {
    await this.#client?.call('node.leave', {}, { timeoutMs: 3000 }).catch((error: unknown) => this.#log.warn({ err: error }, 'could not tell the manager this node leaves'))
  }

  /** Ends the session; running tasks are left alone. */
  async stop (): Promise<void> {
    this.#state = 'stopped'
    this.#stop.abort()
    this.#unlisten()
    this.#unlistenHealth()
    for (const task of this.#options.health.reports().keys()) this.#options.health.unwatch(task)
    if (this.#syncTimer !== null) clearInterval(this.#syncTimer)
    await this.#client?.close()
    await this.#loop
    await this.#applying
  }

  async #run (): Promise<void> {
    let backoff = BACKOFF_MIN_MS
    const signal = this.#stop.signal
    while (!signal.aborted) {
      try {
        await this.#session()
        backoff = BACKOFF_MIN_MS
      } catch (error) {
        const code = (error as { code?: string }).code ?? ''
        this.#lastError = (error as Error).message
        if (signal.aborted) break
        this.#log.warn({ err: error, manager: this.#manager }, 'session with the manager ended')
        if (FATAL.has(code) && !this.#everRegistered) {
          this.#rejectRegistered(error as Error)
          this.#state = 'stopped'
          return
        }
        if (code === 'MANAGER_ERR_NODE_REMOVED') {
          await this.#removed()
          return
        }
      } finally {
        this.#client = null
        if (this.#state === 'ready') this.#state = 'connecting'
      }
      const wait = backoff * (0.8 + 0.4 * Math.random())
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS)
      await sleep(wait, undefined, { signal }).catch(() => {})
    }
  }

  /** One session, until the connection ends (resolves) or fails (rejects). */
  async #session (): Promise<void> {
    const { membership, description, advertiseAddr } = this.#options
    const { host, port } = parseManagerAddress(this.#manager)
    const client = await connectNode({ host, port, credentials: membership.credentials, connectTimeoutMs: 5000 })
    this.#client = client
    if (this.#stop.signal.aborted) {
      await client.close()
      return
    }
    let heartbeat: NodeJS.Timeout | null = null
    try {
      const registered = await client.call<RegisterResult>('node.register', { addr: advertiseAddr, description })
      this.#heartbeatPeriodMs = registered.heartbeatPeriodMs
      this.#everRegistered = true
      this.#state = 'ready'
      this.#lastError = null
      this.#resolveRegistered()
      const subscription = await client.subscribe('node.session', {}, (event) => this.#onEvent(event as SessionEvent))
      this.#log.info({ manager: this.#manager, heartbeatPeriodMs: registered.heartbeatPeriodMs }, 'session with the manager started')
      this.#reportAll()
      heartbeat = setInterval(() => {
        client.call('node.heartbeat', {}, { timeoutMs: Math.max(2000, 2 * this.#heartbeatPeriodMs) }).catch((error: unknown) => {
          this.#log.warn({ err: error }, 'heartbeat failed')
          this.#lastError = (error as Error).message
          if ((error as { code?: string }).code === 'MANAGER_ERR_NODE_REMOVED') void this.#removed()
          void client.close()
        })
      }, registered.heartbeatPeriodMs)
      await Promise.race([client.closed, subscription.done])
      if (client.failure !== undefined && client.failure.message !== 'client closed') throw client.failure
    } finally {
      if (heartbeat !== null) clearInterval(heartbeat)
      await client.close()
    }
  }

  #onEvent (event: SessionEvent): void {
    if (event.type === 'removed') {
      void this.#removed()
      return
    }
    if (event.type === 'logs') {
      void this.#sendLogs(event.request, event.task, event.tail)
      return
    }
    this.#nextDocument = event.document
    this.#applying ??= this.#drain().finally(() => { this.#applying = null })
  }

  /** Applies the latest document received (those that arrive meanwhile replace each other). */
  async #drain (): Promise<void> {
    while (this.#nextDocument !== null) {
      const document = this.#nextDocument
      this.#nextDocument = null
      try {
        await this.#options.daemon.apply(document)
      } catch (error) {
        // A document the daemon refuses changes nothing; a reconcile that failed half-way is retried on
        // the daemon's interval. Either way the tasks follow the document netd holds now.
        this.#log.error({ err: error }, 'applying the manager\'s document failed')
      }
      this.#sync()
    }
  }

  /** Answers the manager's request for a task's output (`service logs`). */
  async #sendLogs (request: number, task: string, tail: number | undefined): Promise<void> {
    const client = this.#client
    if (client === null) return
    const out: Record<'stdout' | 'stderr', Buffer[]> = { stdout: [], stderr: [] }
    let error: string | null = null
    try {
      for await (const chunk of this.#options.runtime.logs(task, tail === undefined ? {} : { tail })) out[chunk.stream].push(chunk.data)
    } catch (failure) {
      error = (failure as Error).message
    }
    const text = (chunks: Buffer[]): string => {
      const all = Buffer.concat(chunks)
      return all.subarray(Math.max(0, all.length - MAX_LOG_BYTES)).toString('utf8')
    }
    await client.call('logs.result', { request, stdout: text(out.stdout), stderr: text(out.stderr), error })
      .catch((failure: unknown) => this.#log.debug({ task, err: failure }, 'could not send a task\'s logs'))
  }

  /** This node was removed from the swarm: it runs nothing any more, and waits to be told to leave. */
  async #removed (): Promise<void> {
    if (this.#state === 'removed' || this.#state === 'stopped') return
    this.#state = 'removed'
    this.#lastError = 'this node was removed from the swarm'
    this.#log.warn('this node was removed from the swarm: stopping its tasks')
    this.#stop.abort()
    await this.#client?.close()
    const doc = this.#options.daemon.document
    this.#nextDocument = { version: 1, revision: doc.revision + 1, networks: [], endpoints: [], remoteEndpoints: [], tasks: [] }
    this.#applying ??= this.#drain().finally(() => { this.#applying = null })
  }

  #sync (): void {
    const { daemon, runtime } = this.#options
    let document
    try {
      document = daemon.document
    } catch {
      return // netd has not started
    }
    const tasks = document.tasks ?? []
    const prefix = daemon.node.prefix
    const namespaces = new Set(tasks.filter((t) => existsSync(join('/run/netns', taskNamespaceName(prefix, t.id)))).map((t) => t.id))
    const plan = planTaskSync({
      tasks, statuses: runtime.statuses(), busy: this.#busy, rejected: new Set(this.#rejected.keys()), namespaces, keep: this.#options.keepEnded ?? 5
    })
    for (const task of plan.start) {
      this.#busy.add(task.id)
      runtime.start(processSpecOf(task, prefix))
        .catch((error: unknown) => {
          const message = (error as Error).message
          this.#log.warn({ task: task.id, err: error }, 'task rejected')
          this.#rejected.set(task.id, message)
          this.#report(task.id, 'rejected', 'rejected', message)
        })
        .finally(() => { this.#busy.delete(task.id) })
    }
    const byId = new Map(tasks.map((t) => [t.id, t]))
    for (const id of plan.stop) {
      this.#busy.add(id)
      this.#drainAndStop(id, byId.get(id))
        .catch((error: unknown) => this.#log.error({ task: id, err: error }, 'task could not be stopped'))
        .finally(() => { this.#busy.delete(id) })
    }
    for (const id of plan.neverStarted) {
      if (this.#endedUnstarted.has(id)) continue
      this.#endedUnstarted.add(id)
      this.#report(id, 'shutdown', 'shutdown before it started', null)
    }
    this.#syncHealth()
    for (const id of plan.forget) {
      runtime.remove(id).catch((error: unknown) => this.#log.warn({ task: id, err: error }, 'could not remove an ended task'))
    }
    // Forget what the document no longer mentions.
    const listed = new Set(tasks.map((t) => t.id))
    for (const id of this.#rejected.keys()) if (!listed.has(id)) this.#rejected.delete(id)
    for (const id of this.#endedUnstarted) if (!listed.has(id)) this.#endedUnstarted.delete(id)
  }

  /**
   * A task told to stop is out of DNS and load balancing everywhere already (the manager's documents
   * mark it unhealthy, this node's at once): it keeps serving what it has for its drain delay, then
   * gets SIGTERM and its grace period. A task the manager forgot has no one to drain it for.
   */
  async #drainAndStop (id: string, task: Task | undefined): Promise<void> {
    const { daemon, runtime } = this.#options
    await daemon.setLocallyDown(id, true)
    if (task !== undefined && task.drainDelay > 0) {
      this.#log.info({ task: id, drainDelayMs: task.drainDelay }, 'draining task before stopping it')
      await sleep(task.drainDelay, undefined, { ref: false })
    }
    await runtime.stop(id, task?.stopGracePeriod ?? this.#options.stopGraceMs)
  }

  /**
   * Health checks follow the document and the runtime: a task desired running, running, with a
   * check is watched (from its start time, so a netd restart does not restart its start period);
   * any other is not.
   */
  #syncHealth (): void {
    const { daemon, runtime, health } = this.#options
    let document
    try {
      document = daemon.document
    } catch {
      return
    }
    const statuses = runtime.statuses()
    const addresses = probeAddresses(document)
    const watched = new Set<string>()
    for (const task of document.tasks ?? []) {
      const status = statuses.get(task.id)
      if (task.healthcheck === undefined || task.desiredState !== 'running' || status?.state !== 'running') continue
      const ip = addresses.get(task.id) ?? null
      const netns = taskNamespaceName(daemon.node.prefix, task.id)
      const startedAt = status.startedAt === null ? Date.now() : Date.parse(status.startedAt)
      try {
        health.watch(task.id, task.healthcheck, probeTargetOf(runtime, { task: task.id, netns, ip }), startedAt)
        watched.add(task.id)
      } catch (error) {
        this.#log.warn({ task: task.id, err: error }, 'health check not started')
      }
    }
    for (const task of health.reports().keys()) if (!watched.has(task)) health.unwatch(task)
  }

  #reportHealth (task: string, report: HealthReport): void {
    const client = this.#client
    if (client === null || this.#state !== 'ready') return // re-reported when the next session starts
    client.call('task.health', { task, report }).catch((failure: unknown) => {
      this.#log.debug({ task, status: report.status, err: failure }, 'health report refused')
    })
  }

  /** At the start of a session: every task's status again, whatever was lost before. */
  #reportAll (): void {
    this.#endedUnstarted.clear()
    for (const status of this.#options.runtime.statuses().values()) this.#reportStatus(status)
    for (const [task, report] of this.#options.health.reports()) if (report.status !== 'starting') this.#reportHealth(task, report)
    for (const [id, message] of this.#rejected) this.#report(id, 'rejected', 'rejected', message)
    this.#sync()
  }

  #reportStatus (status: TaskStatus): void {
    this.#report(status.task, status.state, status.message, status.error)
  }

  #report (task: string, state: string, message: string, error: string | null): void {
    const client = this.#client
    if (client === null || this.#state !== 'ready') return // re-reported when the next session starts
    client.call('task.status', { task, state, message, error: error === null ? null : error.slice(0, 4096) }).catch((failure: unknown) => {
      this.#log.debug({ task, state, err: failure }, 'task report refused')
    })
  }
}

/** Where tcp and http checks reach each local task: its address on its first network other than ingress, else on ingress. */
function probeAddresses (document: DesiredState): Map<string, string> {
  const ingress = new Set(document.networks.filter((n) => n.ingress).map((n) => n.id))
  const out = new Map<string, string>()
  for (const e of document.endpoints) if (!ingress.has(e.network) && !out.has(e.task)) out.set(e.task, e.ip)
  for (const e of document.endpoints) if (!out.has(e.task)) out.set(e.task, e.ip)
  return out
}
