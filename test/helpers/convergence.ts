/**
 * A swarm under constant load, and the faults issue 6 names, measured the
 * same way for the end-to-end test (test/e2e/convergence.test.ts, which
 * asserts) and the benchmark (bench/convergence.ts, which prints):
 *
 *  - a lab of three nodes (h1 the manager), an overlay network, a service
 *    `web` of HTTP backends (test/fixtures/http-backend.ts) with an HTTP
 *    health check and a published port, and a `client` task on h2;
 *  - two loads of short requests, each a new connection: from the client
 *    task to web's VIP, and from the lab's `outside` host to h2's published
 *    port (test/fixtures/http-load.ts);
 *  - "served" is read from every node's netd, as its dnsd and lb serve it:
 *    a task's address is in DNS (`tasks.web`) and lb (a healthy backend of
 *    every VIP and published port of web) there, or it is not.
 */
import { request } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Lab } from './lab.ts'
import { HTTP_BACKEND, analyse, inLabTask, onLabHost, startLoad, type LoadHandle, type LoadSummary } from './load.ts'
import { waitFor, weftCli, type TaskRow } from './swarm.ts'

export const WEB = 'web'
export const NETWORK = 'loadnet'
export const PUBLISHED = 8080
const TARGET = 80

export interface LoadedClusterOptions {
  /** Nodes heartbeat this often; three silent periods make a node Down. */
  readonly heartbeatMs: number
  readonly replicas: number
  /** Requests a second, for each of the two loads. */
  readonly rate: number
}

/** A task of web: its id (lb names backends by task) and its address (what DNS answers). */
export interface Target { readonly task: string, readonly ip: string }

export interface FrontendView { frontend: string, kind: string, backends: Array<{ address: string, healthy: boolean, task: string | null }> }
interface DnsRecord { task: string, name: string, type: string, value: string }

/** One scenario's figures: the fault, when DNS and lb were right on every node, and the requests that failed. */
export interface ScenarioResult {
  readonly scenario: string
  readonly faultAt: number
  /** From the fault to DNS and lb right on every (reachable) node. */
  readonly convergedMs: number
  /** Failed requests of both loads since the fault. */
  readonly failed: number
  /** Of those, sent later than the deadline after the fault. */
  readonly failedAfterDeadline: number
  /** From the fault to the last failed request (0 when none failed). */
  readonly recoveryMs: number
  readonly errors: Readonly<Record<string, number>>
}

export class LoadedCluster {
  readonly lab: Lab
  readonly options: LoadedClusterOptions
  readonly cli: ReturnType<typeof weftCli>
  vip = ''
  /** The task the VIP load runs from (on h2). */
  client: TaskRow | null = null
  #loads: LoadHandle[] = []

  constructor (lab: Lab, options: LoadedClusterOptions) {
    this.lab = lab
    this.options = options
    this.cli = weftCli(lab)
  }

  get nodes (): string[] {
    return ['h1', 'h2', 'h3']
  }

  /** The swarm, its services, and both loads running against a converged, healthy `web`. */
  async start (t: { teardown (fn: () => void | Promise<void>): void }): Promise<void> {
    const { ok } = this.cli
    const out = await ok('h1', 'swarm', 'init', '--advertise-addr', this.lab.addr('h1'), '--dispatcher-heartbeat', `${this.options.heartbeatMs}ms`)
    const join = out.split('run the following command:\n\n')[1]!.split('\n\n')[0]!
    for (const host of ['h2', 'h3']) {
      const joined = await this.lab.exec(host, ['sh', '-c', join])
      if (joined.code !== 0) throw new Error(`join on ${host}: ${joined.stderr}`)
    }
    await ok('h1', 'network', 'create', '--driver', 'overlay', NETWORK)
    await ok('h1', 'service', 'create', '--name', WEB, '--replicas', String(this.options.replicas), '--network', NETWORK,
      '--publish', `published=${PUBLISHED},target=${TARGET}`,
      '--health-http', `/healthz:${TARGET}`, '--health-interval', '250ms', '--health-timeout', '1s', '--health-retries', '2',
      '--restart-delay', '1s', '--stop-grace-period', '5s', '--update-monitor', '2s',
      'debian', 'sh', '-c', `exec ${process.execPath} ${HTTP_BACKEND} "$(hostname)" ${TARGET}`)
    await ok('h1', 'service', 'create', '--name', 'client', '--network', NETWORK, '--constraint', 'node.hostname==h2',
      'debian', 'sh', '-c', 'trap "exit 0" TERM; sleep infinity & wait')
    await this.healthy(this.options.replicas, 60_000)
    await waitFor('the client task', async () => (await this.running('client')).length === 1)
    const inspected = JSON.parse(await ok('h1', 'service', 'inspect', WEB)) as Array<{ Endpoint: { VirtualIPs: Array<{ NetworkID: string, Addr: string }> } }>
    const networkId = (JSON.parse(await ok('h1', 'network', 'inspect', NETWORK)) as Array<{ Id?: string, ID?: string }>)[0]!
    const id = networkId.Id ?? networkId.ID
    this.vip = inspected[0]!.Endpoint.VirtualIPs.find((v) => v.NetworkID === id)!.Addr.split('/')[0]!
    const client = this.client = (await this.running('client'))[0]!
    this.#loads = [
      await startLoad(inLabTask(this.lab, 'h2', client.ID), `http://${this.vip}/`, { rate: this.options.rate, t }),
      await startLoad(onLabHost(this.lab, 'outside'), `http://${this.lab.addr('h2')}:${PUBLISHED}/`, { rate: this.options.rate, t })
    ]
  }

  async tasks (service: string): Promise<TaskRow[]> {
    return await this.cli.rows<TaskRow>('h1', 'service', 'ps', '--no-trunc', service)
  }

  /** Tasks desired running and running. */
  async running (service: string): Promise<TaskRow[]> {
    return (await this.tasks(service)).filter((r) => r.DesiredState === 'Running' && r.State === 'running')
  }

  /** Resolves when web has n tasks desired running, all running and healthy, and each is served on every node. */
  async healthy (n: number, timeoutMs: number, nodes: readonly string[] = this.nodes): Promise<TaskRow[]> {
    // Each unmet condition throws, so that a timeout says which one was last unmet.
    return await waitFor(`${n} healthy tasks of ${WEB}, served everywhere`, async () => {
      const rows = (await this.tasks(WEB)).filter((r) => r.DesiredState === 'Running')
      if (rows.length !== n || !rows.every((r) => r.State === 'running' && r.CurrentState.endsWith('(healthy)'))) {
        throw new Error(`tasks: ${rows.map((r) => `${r.Name} ${r.CurrentState}`).join(', ')}`)
      }
      const targets = await Promise.all(rows.map(async (r) => await this.target(r)))
      const served = await this.servedOf(targets, nodes)
      if (served.length !== n) throw new Error(`served everywhere: ${served.map((x) => x.ip).join(' ')} of ${targets.map((x) => x.ip).join(' ')}`)
      for (const node of nodes) {
        const view = await this.view(node)
        const extra = view.lb.flatMap((f) => f.backends.filter((b) => b.healthy && !targets.some((x) => x.task === b.task)))
        if (extra.length > 0) throw new Error(`${node} still balances over ${extra.map((b) => b.address).join(' ')}`)
      }
      return rows
    }, timeoutMs)
  }

  /** A task and its address on the load network (what `tasks.web` answers), from its node's document. */
  async target (row: TaskRow): Promise<Target> {
    const doc = await netdGet(this.lab.netdSocket(row.Node), '/state') as { networks: Array<{ id: string, name: string }>, endpoints: Array<{ task: string, network: string, ip: string }> }
    const network = doc.networks.find((n) => n.name === NETWORK)?.id
    const endpoint = doc.endpoints.find((e) => e.task === row.ID && e.network === network)
    if (endpoint === undefined) throw new Error(`task ${row.ID} has no endpoint on ${NETWORK} in ${row.Node}'s document`)
    return { task: row.ID, ip: endpoint.ip }
  }

  /** Whether the task is in `tasks.web` and a healthy backend of every frontend of web, on each of the nodes. */
  async served (target: Target, nodes: readonly string[] = this.nodes): Promise<boolean> {
    for (const node of nodes) {
      if (!servesTask(await this.view(node), target)) return false
    }
    return true
  }

  /** Whether the task is in no answer and no healthy backend set on any of the nodes. */
  async unserved (target: Target, nodes: readonly string[] = this.nodes): Promise<boolean> {
    for (const node of nodes) {
      const view = await this.view(node)
      if (view.dns.has(target.ip) || view.lb.some((f) => f.backends.some((b) => b.healthy && b.task === target.task))) return false
    }
    return true
  }

  /** The tasks served on all of the nodes, of those given. */
  async servedOf (targets: readonly Target[], nodes: readonly string[] = this.nodes): Promise<Target[]> {
    const views = await Promise.all(nodes.map(async (node) => await this.view(node)))
    return targets.filter((target) => views.every((view) => servesTask(view, target)))
  }

  /** What one node serves of web: the addresses `tasks.web` answers, and web's lb frontends. */
  async view (node: string): Promise<NodeView> {
    const socket = this.lab.netdSocket(node)
    const [records, lb] = await Promise.all([
      netdGet(socket, '/dns') as Promise<DnsRecord[]>,
      netdGet(socket, `/lb?service=${WEB}`) as Promise<FrontendView[]>
    ])
    const dns = new Set(records.filter((r) => r.name === `tasks.${WEB}` && r.type === 'A').map((r) => r.value))
    // Only tasks on web's network resolve its names; a node with none of them has no DNS view to check.
    const resolves = records.some((r) => r.name === WEB)
    return { dns, resolves, lb }
  }

  /** Both loads' summaries so far. */
  async snapshots (): Promise<LoadSummary[]> {
    return await Promise.all(this.#loads.map(async (l) => await l.snapshot()))
  }

  /** Figures of the scenario that began at faultAt, converged at convergedAt; deadlineMs after the fault no request may fail. */
  async result (scenario: string, faultAt: number, convergedAt: number, deadlineMs: number): Promise<ScenarioResult> {
    // Requests sent before the convergence are answered (or time out) within the load's timeout.
    await new Promise((resolve) => setTimeout(resolve, 1200))
    const analyses = (await this.snapshots()).map((s) => analyse(s, { faultAt, deadlineMs }))
    const errors: Record<string, number> = {}
    for (const a of analyses) for (const [error, n] of Object.entries(a.errorsAfter)) errors[error] = (errors[error] ?? 0) + n
    return {
      scenario,
      faultAt,
      convergedMs: convergedAt - faultAt,
      failed: analyses.reduce((n, a) => n + a.failedAfter, 0),
      failedAfterDeadline: analyses.reduce((n, a) => n + a.failedAfterDeadline, 0),
      recoveryMs: Math.max(...analyses.map((a) => a.recoveryMs)),
      errors
    }
  }

  /** The host pid of a task's first process, from the runtime's record on its node. */
  async initPid (row: TaskRow): Promise<number> {
    const record = JSON.parse(await readFile(join(this.lab.hostDir(row.Node), 'tasks', row.ID, 'record.json'), 'utf8')) as { init: { pid: number } }
    return record.init.pid
  }

  /** Cuts a node off the underlay (both ways), as a partition does; undone by heal(). */
  async partition (node: string): Promise<void> {
    const rules = 'table inet weftpartition { chain input { type filter hook input priority -300; iifname != "lo" drop; }; chain output { type filter hook output priority -300; oifname != "lo" drop; }; }'
    const result = await this.lab.exec(node, ['nft', rules])
    if (result.code !== 0) throw new Error(`partition ${node}: ${result.stderr}`)
  }

  async heal (node: string): Promise<void> {
    await this.lab.exec(node, ['nft', 'delete', 'table', 'inet', 'weftpartition'])
  }
}

interface NodeView { dns: Set<string>, resolves: boolean, lb: FrontendView[] }

function servesTask (view: NodeView, target: Target): boolean {
  return (!view.resolves || view.dns.has(target.ip)) && view.lb.length > 0 && view.lb.every((f) => f.backends.some((b) => b.healthy && b.task === target.task))
}

/** GET on a netd's API socket, JSON in and out. */
export async function netdGet (socketPath: string, path: string): Promise<unknown> {
  return await new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk }).on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`netd ${path}: ${res.statusCode} ${body}`))
        else {
          try { resolve(JSON.parse(body)) } catch (error) { reject(error) }
        }
      })
    })
    req.on('timeout', () => req.destroy(new Error(`netd ${path}: timed out`)))
    req.on('error', reject)
    req.end()
  })
}

/** Polls `check` every 50 ms; resolves with the time it first held. */
export async function when (what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  await waitForFast(what, check, timeoutMs)
  return Date.now()
}

async function waitForFast (what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      if (await check()) return
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `: ${(last as Error).message}`}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
