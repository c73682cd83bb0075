/**
 * The manager module, as netd hosts it on a manager node: the replicated
 * store (a Raft group of one for now, on disk under the manager's directory),
 * the mutual-TLS server nodes talk to (join, dispatcher, control), and the
 * orchestrator loop. It owns no kernel object and no task: those are the
 * node's (netd/cluster), which talks to this module over TLS like any other
 * node's.
 *
 * Every change goes through `propose`, which answers only once the command is
 * committed (fsynced) and applied: an acknowledged change survives SIGKILL.
 * A command that would change nothing, or that the store would refuse, is
 * answered from the current state without touching the log.
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import { rotateJoinToken, type JoinTokens } from './ca/join-token.ts'
import { parseManagerAddress } from './ca/join-command.ts'
import type { NodeCredentials } from './ca/root-ca.ts'
import { registerJoin } from './api/join.ts'
import { MtlsServer } from './api/mtls.ts'
import { ReplicatedLog } from './raft/replicated-log.ts'
import { apply, type CommandResult } from './store/apply.ts'
import { parseCommand, type CommandInput } from './store/commands.ts'
import { StoreError } from './store/errors.ts'
import type { ClusterState } from './store/state.ts'
import { checkUserCommand, controlRequestSchema, parseControlRequest, type ClusterSnapshot } from './control.ts'
import { Dispatcher } from './dispatcher.ts'
import { ManagerError } from './errors.ts'
import { PendingJoins, RAFT_DIR, readManagerFiles, saveJoinTokens, type ManagerConfig } from './manager-files.ts'
import { OrchestratorLoop } from './orchestrator-loop.ts'
import { StoreStateMachine, type EntryOutcome, type LogEntry } from './state-machine.ts'

export interface ManagerOpenOptions {
  /** The manager's directory (manager-files.ts), written by `swarm init`. */
  readonly dir: string
  /** This node's id: the Raft member id, and the node the manager runs on. */
  readonly nodeId: string
  /** This node's credentials: a manager certificate, served to every node. */
  readonly credentials: NodeCredentials
  readonly log: Logger
  /** Where to listen instead of the config's listenAddr (tests: port 0). */
  readonly listen?: { readonly host: string, readonly port: number }
  /** See orchestrator-loop.ts RECONNECT_ALLOWANCE_MS (tests shorten it). */
  readonly reconnectAllowanceMs?: number
}

/** Heartbeats a node may miss before it is down (swarmkit's grace multiplier). */
export const HEARTBEAT_GRACE_PERIODS = 3

export class Manager {
  readonly nodeId: string
  readonly config: ManagerConfig
  readonly #dir: string
  readonly #machine: StoreStateMachine
  readonly #raft: ReplicatedLog<LogEntry, EntryOutcome>
  readonly #server: MtlsServer
  readonly #dispatcher: Dispatcher
  readonly #loop: OrchestratorLoop
  readonly #log: Logger
  #tokens: JoinTokens
  #closed = false

  private constructor (parts: {
    nodeId: string, config: ManagerConfig, dir: string, machine: StoreStateMachine, raft: ReplicatedLog<LogEntry, EntryOutcome>,
    server: MtlsServer, pending: PendingJoins, tokens: JoinTokens, base: Logger, log: Logger, reconnectAllowanceMs: number | undefined
  }) {
    this.nodeId = parts.nodeId
    this.config = parts.config
    this.#dir = parts.dir
    this.#machine = parts.machine
    this.#raft = parts.raft
    this.#server = parts.server
    this.#tokens = parts.tokens
    this.#log = parts.log
    const propose = async (command: CommandInput): Promise<CommandResult> => await this.propose(command)
    this.#dispatcher = new Dispatcher({ machine: parts.machine, propose, pending: parts.pending, heartbeatPeriodMs: parts.config.heartbeatPeriodMs, log: parts.base })
    this.#loop = new OrchestratorLoop({
      machine: parts.machine,
      nodeId: parts.nodeId,
      isLeader: () => this.#raft.isLeader,
      propose,
      lastSeen: this.#dispatcher.lastSeen,
      gracePeriodMs: HEARTBEAT_GRACE_PERIODS * parts.config.heartbeatPeriodMs,
      tickMs: Math.min(1000, parts.config.heartbeatPeriodMs),
      ...(parts.reconnectAllowanceMs === undefined ? {} : { reconnectAllowanceMs: parts.reconnectAllowanceMs }),
      log: parts.base
    })
  }

  /** Opens the manager in `dir`: recovers the log, then listens. */
  static async open (options: ManagerOpenOptions): Promise<Manager> {
    // Each part names its own component on the logger it is given.
    const base = options.log
    const log = base.child({ component: 'manager' })
    const files = await readManagerFiles(options.dir)
    const pending = await PendingJoins.open(options.dir)
    const machine = new StoreStateMachine()
    const raft = await ReplicatedLog.open<LogEntry, EntryOutcome>({
      dir: join(options.dir, RAFT_DIR), id: options.nodeId, peers: [options.nodeId], stateMachine: machine, log: base
    })
    let server: MtlsServer | undefined
    try {
      server = new MtlsServer({ credentials: options.credentials, logger: base })
      const manager = new Manager({ nodeId: options.nodeId, config: files.config, dir: options.dir, machine, raft, server, pending, tokens: files.tokens, base, log, reconnectAllowanceMs: options.reconnectAllowanceMs })
      registerJoin(server, {
        rootCa: () => files.rootCa,
        joinTokens: () => manager.#tokens,
        onJoined: async (identity) => {
          if (identity.role === 'manager') {
            throw new ManagerError('MANAGER_ERR_UNSUPPORTED', 'joining as a manager is not supported yet (weft runs a single manager): join with the worker token')
          }
          await pending.add(identity.nodeId, identity.role, Date.now())
        }
      })
      manager.#dispatcher.register(server)
      server.handle('control', async (params) => await manager.control(params), { allow: ['manager'], params: controlRequestSchema })
      const listen = options.listen ?? parseManagerAddress(files.config.listenAddr)
      await server.listen(listen.port, listen.host)
      log.info({ listen: files.config.listenAddr, advertise: files.config.advertiseAddr, index: machine.state.index }, 'manager ready')
      manager.#loop.kick()
      return manager
    } catch (error) {
      await server?.close()
      await raft.close()
      throw error
    }
  }

  /** Where the manager listens (the port chosen, when it was 0). */
  get address (): { host: string, port: number } {
    const address = this.#server.address
    return { host: address?.address ?? '', port: address?.port ?? 0 }
  }

  get state (): ClusterState {
    return this.#machine.state
  }

  get isLeader (): boolean {
    return this.#raft.isLeader
  }

  /**
   * Commits and applies a command (any command: the caller is trusted); resolves with its result
   * once applied, rejects with the store's refusal (StoreError). A command that changes nothing is
   * not logged.
   */
  async propose (input: CommandInput): Promise<CommandResult & { changed: boolean }> {
    if (this.#closed) throw new ManagerError('MANAGER_ERR_CLOSED', 'the manager is closed')
    const command = parseCommand(input)
    const now = Date.now()
    const dry = apply(this.#machine.state, command, now)
    if (dry.error !== undefined) throw new StoreError(dry.error.code, dry.error.message)
    if (!dry.result.changed) return dry.result
    const outcome = await this.#raft.propose({ command, now })
    if (!outcome.ok) throw new StoreError(outcome.error.code, outcome.error.message)
    return outcome.result
  }

  /** The control API (control.ts): from the local CLI through netd, or from another manager over TLS. */
  async control (input: unknown): Promise<unknown> {
    const request = parseControlRequest(input)
    switch (request.op) {
      case 'propose': {
        const command = checkUserCommand(this.#machine.state, request.command, Date.now())
        return await this.propose(command)
      }
      case 'state':
        return this.snapshot()
      case 'join-token': {
        if (request.rotate) {
          const tokens = rotateJoinToken(this.#tokens, request.role)
          await saveJoinTokens(this.#dir, tokens)
          this.#tokens = tokens
          this.#log.info({ role: request.role }, 'join token rotated')
        }
        return { token: this.#tokens[request.role], managerAddr: this.config.advertiseAddr }
      }
      case 'logs': {
        const state = this.#machine.state
        return await Promise.all(request.tasks.map(async (id) => {
          const node = state.tasks[id]?.node ?? null
          if (node === null) return { task: id, stdout: '', stderr: '', error: `task ${id} ${state.tasks[id] === undefined ? 'not found' : 'was never assigned to a node'}` }
          return { task: id, ...(await this.#dispatcher.taskLogs(node, id, request.tail)) }
        }))
      }
    }
  }

  snapshot (): ClusterSnapshot {
    return {
      state: this.#machine.state,
      descriptions: Object.fromEntries(this.#dispatcher.descriptions),
      managerAddr: this.config.advertiseAddr,
      manager: this.nodeId
    }
  }

  joinToken (role: 'worker' | 'manager'): string {
    return this.#tokens[role]
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#loop.close()
    this.#dispatcher.close()
    await this.#server.close()
    await this.#raft.close()
    this.#log.info('manager closed')
  }
}
