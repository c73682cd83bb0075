/**
 * netd's swarm module: this node's membership of a swarm, and everything that
 * follows from it. netd creates one at start; it
 *
 *  - always owns the task runtime (netd/runtime), which adopts the tasks a
 *    previous netd left running;
 *  - on a member node runs the agent (agent.ts), and on a manager node also
 *    hosts the manager module (manager/manager.ts);
 *  - carries out `swarm init`, `join` and `leave`, answers `info`, and passes
 *    the CLI's cluster commands to the local manager (`control`), refusing
 *    them on a worker with Swarm's words.
 */
import type { Logger } from 'pino'
import { bootstrapCluster } from '../../manager/ca/bootstrap.ts'
import { formatManagerAddress, parseManagerAddress } from '../../manager/ca/join-command.ts'
import { joinSwarm } from '../../manager/api/join.ts'
import { HealthMonitor } from '../health/monitor.ts'
import { Manager } from '../../manager/manager.ts'
import { writeManagerFiles } from '../../manager/manager-files.ts'
import { randomId } from '../../manager/store/ids.ts'
import type { RunOptions } from '../config.ts'
import type { NetdDaemon } from '../daemon.ts'
import { DEFAULT_GRACE_MS, TaskRuntime } from '../runtime/runtime.ts'
import { isFinal } from '../runtime/status.ts'
import { Agent, type AgentStatus } from './agent.ts'
import { describeNode } from './description.ts'
import { ALREADY_IN_SWARM, NOT_A_MANAGER, NOT_IN_SWARM, SwarmError } from './errors.ts'
import { loadMembership, managerDir, removeMembership, saveCredentials, saveIdentity, type Membership } from './identity.ts'
import type { InitRequest, JoinRequest } from './requests.ts'
import { underlayRoutes } from './underlay-routes.ts'

export interface SwarmNodeOptions {
  readonly daemon: NetdDaemon
  readonly options: Pick<RunOptions, 'nodeName' | 'advertiseAddr' | 'stateDir' | 'cleanup'>
  readonly log: Logger
  /** Grace period of a task being stopped (SIGTERM → SIGKILL). */
  readonly stopGraceMs?: number
}

export interface InitResult {
  readonly nodeId: string
  readonly clusterId: string
  readonly workerToken: string
  readonly managerAddr: string
}

export interface SwarmInfo {
  /** inactive: in no swarm; pending: joined, not yet in touch with the manager; error: removed from the swarm. */
  readonly state: 'inactive' | 'pending' | 'active' | 'error'
  readonly nodeId: string | null
  readonly nodeAddr: string
  readonly isManager: boolean
  readonly clusterId: string | null
  readonly managers: number | null
  readonly nodes: number | null
  readonly managerAddrs: readonly string[]
  readonly agent: AgentStatus | null
}

const JOIN_TIMEOUT_MS = 30_000

export class SwarmNode {
  readonly runtime: TaskRuntime
  readonly #daemon: NetdDaemon
  readonly #options: SwarmNodeOptions['options']
  readonly #log: Logger
  /** netd's logger, for the parts that name their own component (manager, agent). */
  readonly #base: Logger
  readonly #stopGraceMs: number
  #membership: Membership | null = null
  #manager: Manager | null = null
  #agent: Agent | null = null
  /** One for the node's life: its metrics are registered once, whatever agents come and go. */
  readonly #health: HealthMonitor
  /** One membership change (init, join, leave) at a time. */
  #busy: Promise<unknown> = Promise.resolve()

  private constructor (options: SwarmNodeOptions, runtime: TaskRuntime) {
    this.#daemon = options.daemon
    this.#options = options.options
    this.#base = options.log
    this.#log = options.log.child({ component: 'swarm' })
    this.#stopGraceMs = options.stopGraceMs ?? DEFAULT_GRACE_MS
    this.runtime = runtime
    this.#health = new HealthMonitor({ log: options.log.child({ component: 'health' }), registry: options.daemon.metricsRegistry })
  }

  static async start (options: SwarmNodeOptions): Promise<SwarmNode> {
    const runtime = new TaskRuntime({ stateDir: options.options.stateDir, log: options.log })
    await runtime.adopt()
    const node = new SwarmNode(options, runtime)
    const membership = await loadMembership(options.options.stateDir)
    if (membership !== undefined) await node.#activate(membership)
    return node
  }

  /** The health checks of this node's tasks, as they stand. */
  get health (): HealthMonitor {
    return this.#health
  }

  get manager (): Manager | null {
    return this.#manager
  }

  async init (request: InitRequest): Promise<InitResult> {
    return await this.#exclusive(async () => {
      if (this.#membership !== null) throw new SwarmError('NETD_ERR_SWARM_ACTIVE', ALREADY_IN_SWARM)
      const { stateDir, nodeName, advertiseAddr } = this.#options
      const advertise = parseManagerAddress(request.advertiseAddr ?? advertiseAddr)
      const listen = parseManagerAddress(request.listenAddr ?? `0.0.0.0:${advertise.port}`)
      await removeMembership(stateDir) // leftovers of an interrupted init or join
      const boot = await bootstrapCluster({ now: new Date() })
      const nodeId = boot.manager.nodeId
      const managerAddr = formatManagerAddress(advertise)
      let manager: Manager | null = null
      try {
        await writeManagerFiles(managerDir(stateDir), {
          rootCa: boot.rootCa,
          tokens: boot.joinTokens,
          config: { advertiseAddr: managerAddr, listenAddr: formatManagerAddress(listen), heartbeatPeriodMs: request.dispatcherHeartbeatMs }
        })
        await saveCredentials(stateDir, boot.credentials)
        manager = await Manager.open({ dir: managerDir(stateDir), nodeId, credentials: boot.credentials, log: this.#base })
        await manager.propose({
          type: 'cluster.init',
          clusterId: boot.rootCa.clusterId,
          node: { id: nodeId, hostname: nodeName, addr: advertiseAddr },
          ingressNetworkId: randomId(),
          avoid: await underlayRoutes(),
          ...(request.defaultAddrPool === undefined ? {} : { defaultAddrPool: request.defaultAddrPool }),
          ...(request.subnetSize === undefined ? {} : { subnetSize: request.subnetSize })
        })
        const membership: Membership = {
          identity: { clusterId: boot.rootCa.clusterId, nodeId, role: 'manager', managers: [managerAddr] },
          credentials: boot.credentials
        }
        await saveIdentity(stateDir, membership.identity)
        this.#manager = manager
        this.#startAgent(membership)
        this.#log.info({ cluster: boot.rootCa.clusterId, node: nodeId, managerAddr }, 'swarm initialised')
        return { nodeId, clusterId: boot.rootCa.clusterId, workerToken: boot.joinTokens.worker, managerAddr }
      } catch (error) {
        await manager?.close()
        await removeMembership(stateDir)
        throw error
      }
    })
  }

  async join (request: JoinRequest): Promise<{ nodeId: string, role: string }> {
    return await this.#exclusive(async () => {
      if (this.#membership !== null) throw new SwarmError('NETD_ERR_SWARM_ACTIVE', ALREADY_IN_SWARM)
      const { stateDir } = this.#options
      const manager = parseManagerAddress(request.remoteAddr)
      await removeMembership(stateDir)
      const joined = await joinSwarm({ manager, token: request.token })
      const membership: Membership = {
        identity: { clusterId: joined.identity.clusterId, nodeId: joined.identity.nodeId, role: joined.identity.role, managers: [formatManagerAddress(manager)] },
        credentials: joined.credentials
      }
      try {
        await saveCredentials(stateDir, joined.credentials)
        await saveIdentity(stateDir, membership.identity)
        const agent = this.#startAgent(membership)
        await agent.registered(JOIN_TIMEOUT_MS)
      } catch (error) {
        await this.#agent?.stop()
        this.#agent = null
        this.#membership = null
        await removeMembership(stateDir)
        throw error
      }
      this.#log.info({ cluster: membership.identity.clusterId, node: membership.identity.nodeId, role: membership.identity.role }, 'joined the swarm')
      return { nodeId: membership.identity.nodeId, role: membership.identity.role }
    })
  }

  async leave (force: boolean): Promise<void> {
    await this.#exclusive(async () => {
      const membership = this.#membership
      if (membership === null) throw new SwarmError('NETD_ERR_SWARM_INACTIVE', 'This node is not part of a swarm')
      if (membership.identity.role === 'manager' && !force) {
        throw new SwarmError('NETD_ERR_SWARM_LEAVE_MANAGER', 'You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.')
      }
      if (membership.identity.role !== 'manager') await this.#agent?.announceLeave()
      await this.#agent?.stop()
      this.#agent = null
      await this.#manager?.close()
      this.#manager = null
      await this.#stopAllTasks()
      await this.#daemon.leave()
      await removeMembership(this.#options.stateDir)
      this.#membership = null
      this.#log.info({ node: membership.identity.nodeId }, 'left the swarm')
    })
  }

  info (): SwarmInfo {
    const membership = this.#membership
    const agent = this.#agent?.status() ?? null
    if (membership === null) {
      return { state: 'inactive', nodeId: null, nodeAddr: this.#options.advertiseAddr, isManager: false, clusterId: null, managers: null, nodes: null, managerAddrs: [], agent }
    }
    const state = this.#manager?.state
    const nodes = state === undefined ? [] : Object.values(state.nodes)
    return {
      state: agent?.state === 'removed' ? 'error' : agent?.state === 'ready' ? 'active' : this.#manager !== null ? 'active' : 'pending',
      nodeId: membership.identity.nodeId,
      nodeAddr: this.#options.advertiseAddr,
      isManager: this.#manager !== null,
      clusterId: state?.cluster?.id ?? (this.#manager === null ? null : membership.identity.clusterId),
      managers: state === undefined ? null : nodes.filter((n) => n.role === 'manager').length,
      nodes: state === undefined ? null : nodes.length,
      managerAddrs: membership.identity.managers,
      agent
    }
  }

  /** A cluster command from the CLI (manager/control.ts), for the local manager. */
  async control (request: unknown): Promise<unknown> {
    if (this.#membership === null) throw new SwarmError('NETD_ERR_SWARM_INACTIVE', NOT_IN_SWARM)
    if (this.#manager === null) throw new SwarmError('NETD_ERR_SWARM_NOT_MANAGER', NOT_A_MANAGER)
    return await this.#manager.control(request)
  }

  /** At netd shutdown: tasks keep running (unless netd runs with --cleanup) for the next netd to adopt. */
  async stop (): Promise<void> {
    await this.#agent?.stop()
    await this.#health.close()
    await this.#manager?.close()
    await this.runtime.close({ stopTasks: this.#options.cleanup, graceMs: this.#stopGraceMs })
  }

  async #activate (membership: Membership): Promise<void> {
    if (membership.identity.role === 'manager') {
      this.#manager = await Manager.open({
        dir: managerDir(this.#options.stateDir), nodeId: membership.identity.nodeId, credentials: membership.credentials, log: this.#base
      })
    }
    this.#startAgent(membership)
  }

  #startAgent (membership: Membership): Agent {
    this.#membership = membership
    const agent = new Agent({
      membership,
      daemon: this.#daemon,
      runtime: this.runtime,
      description: describeNode(this.#options.nodeName),
      advertiseAddr: this.#options.advertiseAddr,
      log: this.#base,
      health: this.#health,
      stopGraceMs: this.#stopGraceMs
    })
    this.#agent = agent
    agent.start()
    return agent
  }

  async #stopAllTasks (): Promise<void> {
    const running = [...this.runtime.statuses().values()].filter((s) => !isFinal(s.state))
    const results = await Promise.allSettled(running.map(async (s) => await this.runtime.stop(s.task, this.#stopGraceMs)))
    for (const [i, result] of results.entries()) {
      if (result.status === 'rejected') this.#log.error({ task: running[i]!.task, err: result.reason }, 'task could not be stopped')
    }
    for (const status of this.runtime.statuses().values()) {
      if (isFinal(status.state)) await this.runtime.remove(status.task).catch(() => undefined)
    }
  }

  async #exclusive<T> (work: () => Promise<T>): Promise<T> {
    const run = this.#busy.then(work, work)
    this.#busy = run.catch(() => undefined)
    return await run
  }
}
