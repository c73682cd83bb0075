/**
 * The dispatcher: the manager's side of every node's session (swarmkit's
 * dispatcher, in weft's terms). Methods on the mutual-TLS server, for nodes
 * holding a certificate of this swarm:
 *
 *   node.register   at the start of every session: the node's description and
 *                   underlay address. A node admitted by `node.join` (its
 *                   certificate issued) is recorded in the store here, with
 *                   the hostname and address it reports; a node the store no
 *                   longer knows and that was not just admitted was removed,
 *                   and is told so (MANAGER_ERR_NODE_REMOVED).
 *   node.heartbeat  liveness, kept in memory only (the orchestrator logs the
 *                   ready ↔ down transitions).
 *   node.session    a stream of the node's desired-state document, pushed
 *                   whenever it changes (the revision alone does not count).
 *   task.status     a node's report on one of its tasks.
 *   task.health     a node's report of a change of one of its tasks' health.
 *   node.leave      a node leaving the swarm: marked down at once.
 *   logs.result     a node's answer to a `logs` event of its session: the
 *                   output of one of its tasks, for `service logs`.
 */
import type { Logger } from 'pino'
import { z } from 'zod'
import { healthReportSchema } from '../netd/health/health-spec.ts'
import type { MtlsServer } from './api/mtls.ts'
import type { NodePeer, Peer } from './api/rpc-server.ts'
import { canonicalJson } from './store/spec.ts'
import type { CommandInput } from './store/commands.ts'
import { clusterView, nodeDocumentFor } from './store/node-documents.ts'
import { TASK_STATES } from './store/state.ts'
import { nodeDescriptionSchema, type NodeDescription } from './control.ts'
import { ManagerError } from './errors.ts'
import type { PendingJoins } from './manager-files.ts'
import type { StoreStateMachine } from './state-machine.ts'

export type Propose = (command: CommandInput) => Promise<unknown>

export interface DispatcherOptions {
  readonly machine: StoreStateMachine
  /** Proposes a command unless it would change nothing; throws the store's refusal. */
  readonly propose: Propose
  readonly pending: PendingJoins
  readonly heartbeatPeriodMs: number
  readonly log: Logger
}

export const registerParamsSchema = z.strictObject({
  /** The node's underlay address: where other nodes send its VXLAN traffic. */
  addr: z.string().regex(/^\d+\.\d+\.\d+\.\d+$/, 'must be an IPv4 address'),
  description: nodeDescriptionSchema
})

export interface RegisterResult {
  readonly nodeId: string
  readonly heartbeatPeriodMs: number
}

const taskStatusParamsSchema = z.strictObject({
  task: z.string().min(1).max(64),
  state: z.enum(TASK_STATES),
  message: z.string().max(1024).default(''),
  error: z.string().max(4096).nullable().default(null)
})

const taskHealthParamsSchema = z.strictObject({
  task: z.string().min(1).max(64),
  report: healthReportSchema
})

/** Events of the node.session stream. */
export type SessionEvent =
  | { readonly type: 'document', readonly document: unknown }
  /** The node is no longer a member (node rm): the stream ends after this. */
  | { readonly type: 'removed' }
  /** Send the output of a task (the last `tail` lines of each stream; all of it when absent) with logs.result. */
  | { readonly type: 'logs', readonly request: number, readonly task: string, readonly tail?: number }

/** What a task's output request answers; `error` when the node could not read it. */
export interface TaskLogs {
  readonly stdout: string
  readonly stderr: string
  readonly error: string | null
}

/** Output beyond this per stream is cut (its start dropped): answers must fit in a frame. */
export const MAX_LOG_BYTES = 1 << 20
const LOGS_TIMEOUT_MS = 10_000

const logsResultSchema = z.strictObject({
  request: z.int().min(1),
  stdout: z.string().max(MAX_LOG_BYTES * 2),
  stderr: z.string().max(MAX_LOG_BYTES * 2),
  error: z.string().max(4096).nullable()
})

interface Subscriber {
  readonly nodeId: string
  readonly push: (event: SessionEvent) => void
  readonly end: () => void
  lastKey: string | null
}

export class Dispatcher {
  /** Last heartbeat per node, on this manager's clock. */
  readonly lastSeen = new Map<string, number>()
  readonly descriptions = new Map<string, NodeDescription>()
  readonly #options: DispatcherOptions
  readonly #log: Logger
  readonly #subscribers = new Set<Subscriber>()
  #broadcastQueued = false
  readonly #unsubscribe: () => void
  #nextLogRequest = 1
  readonly #logRequests = new Map<number, { readonly nodeId: string, readonly resolve: (logs: TaskLogs) => void }>()

  constructor (options: DispatcherOptions) {
    this.#options = options
    this.#log = options.log.child({ component: 'dispatcher' })
    this.#unsubscribe = options.machine.onChange(() => this.#queueBroadcast())
  }

  register (server: MtlsServer): void {
    server.handle('node.register', async (params: z.infer<typeof registerParamsSchema>, peer) => await this.#register(params, node(peer)), { params: registerParamsSchema })
    server.handle('node.heartbeat', (_params, peer) => this.#heartbeat(node(peer)))
    server.handle('task.status', async (params: z.infer<typeof taskStatusParamsSchema>, peer) => {
      await this.#options.propose({ type: 'task.status', task: params.task, state: params.state, message: params.message, error: params.error, node: node(peer).nodeId })
      return {}
    }, { params: taskStatusParamsSchema })
    server.handle('task.health', async (params: z.infer<typeof taskHealthParamsSchema>, peer) => {
      await this.#options.propose({ type: 'task.health', task: params.task, report: params.report, node: node(peer).nodeId })
      return {}
    }, { params: taskHealthParamsSchema })
    server.handle('node.leave', async (_params, peer) => {
      const { nodeId } = node(peer)
      this.lastSeen.delete(nodeId)
      if (this.#options.machine.state.nodes[nodeId] !== undefined) {
        await this.#options.propose({ type: 'node.status', node: nodeId, status: 'down', message: 'node left the swarm' })
      }
      return {}
    })
    server.stream('node.session', (_params, peer, push, signal) => this.#session(node(peer), push, signal))
    server.handle('logs.result', (params: z.infer<typeof logsResultSchema>, peer) => {
      const pending = this.#logRequests.get(params.request)
      if (pending === undefined || pending.nodeId !== node(peer).nodeId) return {}
      this.#logRequests.delete(params.request)
      pending.resolve({ stdout: params.stdout, stderr: params.stderr, error: params.error })
      return {}
    }, { params: logsResultSchema })
  }

  /** The output of a task, from the node that runs (or ran) it, over that node's session. */
  async taskLogs (nodeId: string, task: string, tail: number | undefined): Promise<TaskLogs> {
    const subscriber = [...this.#subscribers].find((s) => s.nodeId === nodeId)
    if (subscriber === undefined) return { stdout: '', stderr: '', error: `node ${nodeId} is not connected` }
    const request = this.#nextLogRequest++
    return await new Promise<TaskLogs>((resolve) => {
      const timer = setTimeout(() => {
        this.#logRequests.delete(request)
        resolve({ stdout: '', stderr: '', error: `node ${nodeId} did not send the logs of task ${task} within ${LOGS_TIMEOUT_MS / 1000} s` })
      }, LOGS_TIMEOUT_MS)
      this.#logRequests.set(request, { nodeId, resolve: (logs) => { clearTimeout(timer); resolve(logs) } })
      subscriber.push({ type: 'logs', request, task, ...(tail === undefined ? {} : { tail }) })
    })
  }

  close (): void {
    this.#unsubscribe()
    for (const pending of this.#logRequests.values()) pending.resolve({ stdout: '', stderr: '', error: 'the manager is closing' })
    this.#logRequests.clear()
    for (const subscriber of this.#subscribers) subscriber.end()
    this.#subscribers.clear()
  }

  async #register (params: z.infer<typeof registerParamsSchema>, peer: NodePeer): Promise<RegisterResult> {
    const { machine, pending, propose } = this.#options
    const id = peer.nodeId
    const state = machine.state
    if (state.nodes[id] === undefined) {
      if (!pending.has(id)) throw new ManagerError('MANAGER_ERR_NODE_REMOVED', `node ${id} is not a member of this swarm (it was removed): leave the swarm on that node and join again`)
      // A down worker at the same underlay address is this machine's previous membership (it left, or
      // lost its state): two live nodes can never share an underlay address.
      const stale = Object.values(state.nodes).find((n) => n.addr === params.addr && n.status === 'down' && n.role === 'worker')
      if (stale !== undefined) {
        this.#log.info({ node: stale.id, addr: stale.addr }, 'removing the down node that had this address before')
        await propose({ type: 'node.remove', node: stale.id, force: true })
      }
      await propose({ type: 'node.join', node: { id, hostname: params.description.hostname, addr: params.addr, role: peer.role } })
      await pending.remove(id)
      this.#log.info({ node: id, hostname: params.description.hostname, addr: params.addr, role: peer.role }, 'node joined')
    }
    this.descriptions.set(id, params.description)
    this.lastSeen.set(id, Date.now())
    return { nodeId: id, heartbeatPeriodMs: this.#options.heartbeatPeriodMs }
  }

  #heartbeat (peer: NodePeer): { heartbeatPeriodMs: number } {
    if (this.#options.machine.state.nodes[peer.nodeId] === undefined) {
      throw new ManagerError('MANAGER_ERR_NODE_REMOVED', `node ${peer.nodeId} is not a member of this swarm`)
    }
    this.lastSeen.set(peer.nodeId, Date.now())
    return { heartbeatPeriodMs: this.#options.heartbeatPeriodMs }
  }

  #session (peer: NodePeer, push: (event: unknown) => void, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const subscriber: Subscriber = {
        nodeId: peer.nodeId,
        push,
        end: () => { this.#subscribers.delete(subscriber); resolve() },
        lastKey: null
      }
      this.#subscribers.add(subscriber)
      signal.addEventListener('abort', subscriber.end, { once: true })
      this.#send(subscriber, this.#options.machine.state, undefined)
    })
  }

  /** Many commands apply in one burst: documents go out once, after the burst. */
  #queueBroadcast (): void {
    if (this.#broadcastQueued || this.#subscribers.size === 0) return
    this.#broadcastQueued = true
    setImmediate(() => {
      this.#broadcastQueued = false
      const state = this.#options.machine.state
      const view = clusterView(state)
      for (const subscriber of [...this.#subscribers]) this.#send(subscriber, state, view)
    })
  }

  #send (subscriber: Subscriber, state: StoreStateMachine['state'], view: ReturnType<typeof clusterView> | undefined): void {
    if (state.cluster === null) return
    const document = nodeDocumentFor(state, subscriber.nodeId, view)
    if (document === undefined) {
      // Not a member (yet, while its registration is being applied; or any more).
      if (subscriber.lastKey !== null) {
        subscriber.push({ type: 'removed' })
        subscriber.end()
      }
      return
    }
    const key = canonicalJson({ ...document, revision: 0 })
    if (key === subscriber.lastKey) return
    subscriber.lastKey = key
    subscriber.push({ type: 'document', document })
  }
}

function node (peer: Peer): NodePeer {
  if (peer.kind !== 'node') throw new ManagerError('MANAGER_ERR_INVALID_REQUEST', 'a node certificate is needed')
  return peer
}
