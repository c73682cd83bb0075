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
 *    every VIP and published port of web) there, or it is not;
 *  - each scenario makes its fault, waits for DNS and lb to be right on every
 *    node that can be right, lets `web` converge again, and returns what it
 *    measured (ScenarioResult, plus what the scenario alone can say).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Lab } from './lab.ts'
import { NetdClient } from '../../netd/api-client.ts'
import { HTTP_BACKEND, analyse, inLabTask, onLabHost, startLoad, type LoadHandle, type LoadSummary } from './load.ts'
import { waitFor, weftCli, type TaskRow } from './swarm.ts'

export const WEB = 'web'
export const NETWORK = 'loadnet'
export const PUBLISHED = 8080
const TARGET = 80
const HEALTH_RETRIES = 2

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
  /** The failures after the deadline, as "+MS error" from the fault, for a failing test to show. */
  readonly late: readonly string[]
  /** The failures of requests sent once DNS and lb were right everywhere (and before the deadline). */
  readonly afterConverged: readonly string[]
}

export interface NodeLossResult extends ScenarioResult {
  /** From the fault to the node's tasks replaced, healthy and served on the other nodes. */
  readonly replacedMs: number
}

export interface ManagerDownResult extends ScenarioResult {
  /** A node's document revision before the manager stopped, and after that node's netd restarted without it. */
  readonly revisionBefore: number
  readonly revisionRestored: number
  /** Tasks served by the nodes still up, of those served before: all of them, from their local state. */
  readonly servedWhileAway: number
  readonly servedBefore: number
  /** What a task's resolver answered for web while the manager was away. */
  readonly answerWhileAway: string
}

/** Swarm's figures for the same events (nothing of Docker runs here): its documented timers. */
export const SWARM_FIGURES: Readonly<Record<string, string>> = {
  'unhealthy': 'out of IPVS after retries × interval (defaults 3 × 30 s); cached DNS answers up to 600 s (TTL)',
  'task killed': 'out of IPVS after the task state reaches the manager and is gossiped; DNS TTL 600 s',
  'netd restarts': 'dockerd restart without live-restore stops every container; with it, IPVS and DNS come back with dockerd',
  'manager down': 'workers keep running tasks; no rescheduling until a quorum is back',
  'rolling update': 'stop-first without drain: requests dropped during updates (moby/moby#30321 and kin)',
  'node partitioned': 'Down after 3 missed heartbeats of 5 s (15-20 s), then rescheduled',
  'node killed': 'Down after 3 missed heartbeats of 5 s (15-20 s), then rescheduled',
  'scale down': 'task removed from IPVS as it stops: in-flight requests may fail',
  'node drain': 'tasks stopped and rescheduled; removed from IPVS as they stop',
  'create 10': 'tasks start, then join IPVS; DNS TTL 600 s for a client that asked earlier'
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
      '--health-http', `/healthz:${TARGET}`, '--health-interval', '250ms', '--health-timeout', '1s', '--health-retries', String(HEALTH_RETRIES),
      '--restart-delay', '1s', '--stop-grace-period', '5s',
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
    const doc = await this.netd(row.Node).call<{ networks: Array<{ id: string, name: string }>, endpoints: Array<{ task: string, network: string, ip: string }> }>('GET', '/state')
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

  /** What one node serves of a service: the addresses `tasks.<service>` answers, and its lb frontends. */
  async view (node: string, service = WEB): Promise<NodeView> {
    const netd = this.netd(node)
    const [records, lb] = await Promise.all([
      netd.call<DnsRecord[]>('GET', '/dns'),
      netd.call<FrontendView[]>('GET', `/lb?service=${service}`)
    ])
    const dns = new Set(records.filter((r) => r.name === `tasks.${service}` && r.type === 'A').map((r) => r.value))
    // Only tasks on the service's network resolve its names; a node with none of them has no DNS view to check.
    const resolves = records.some((r) => r.name === service)
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
      errors,
      late: analyses.flatMap((a, i) => a.failuresAfter.filter((f) => f.at > a.deadline).map((f) => `${i === 0 ? 'vip' : 'mesh'} +${f.at - faultAt} ms ${f.error}`)),
      afterConverged: analyses.flatMap((a, i) => a.failuresAfter.filter((f) => f.at > convergedAt).map((f) => `${i === 0 ? 'vip' : 'mesh'} +${f.at - faultAt} ms ${f.error}`))
    }
  }

  /** The host pid of a task's first process, from the runtime's record on its node. */
  async initPid (row: TaskRow): Promise<number> {
    const record = JSON.parse(await readFile(join(this.lab.hostDir(row.Node), 'tasks', row.ID, 'record.json'), 'utf8')) as { init: { pid: number } }
    return record.init.pid
  }

  /** A running, healthy task of web on `node`. */
  async taskOn (node: string): Promise<TaskRow> {
    const row = (await this.running(WEB)).find((r) => r.Node === node)
    if (row === undefined) throw new Error(`no task of ${WEB} on ${node}`)
    return row
  }

  /** The task on `node` starts failing its check (it still answers): out of DNS and lb, then replaced. */
  async unhealthy (node: string): Promise<ScenarioResult & { verdictMs: number, replacedBy: string | null }> {
    const victim = await this.taskOn(node)
    const target = await this.target(victim)
    const faultAt = Date.now()
    const sicken = await this.lab.exec(node, ['ip', 'netns', 'exec', this.taskNetns(node, victim.ID), 'curl', '-sf', `http://${target.ip}/sicken`])
    if (sicken.code !== 0) throw new Error(`sicken ${victim.Name}: ${sicken.stderr}`)
    const out = await when('the unhealthy task out of DNS and lb everywhere', async () => await this.unserved(target), 10_000)
    const verdictAt = await this.#verdictAt(node, victim.ID)
    await this.healthy(this.options.replicas, 30_000)
    const row = (await this.tasks(WEB)).find((r) => r.ID === victim.ID)
    return { ...await this.result('unhealthy', faultAt, out, 0), verdictMs: verdictAt - faultAt, replacedBy: row?.DesiredState === 'Shutdown' ? 'restart policy' : null }
  }

  /** With restart condition none: a task on `node` sickened until out everywhere, then healed until back everywhere. */
  async sickenAndHeal (node: string): Promise<{ out: ScenarioResult, backMs: number }> {
    const victim = await this.taskOn(node)
    const target = await this.target(victim)
    const toggle = async (path: string): Promise<void> => {
      const result = await this.lab.exec(node, ['ip', 'netns', 'exec', this.taskNetns(node, victim.ID), 'curl', '-sf', `http://${target.ip}/${path}`])
      if (result.code !== 0) throw new Error(`${path} ${victim.Name}: ${result.stderr}`)
    }
    const faultAt = Date.now()
    await toggle('sicken')
    const out = await when('the unhealthy task out of DNS and lb everywhere', async () => await this.unserved(target), 10_000)
    const healedAt = Date.now()
    await toggle('heal')
    const back = await when('the healed task back in DNS and lb everywhere', async () => await this.served(target), 10_000)
    return { out: await this.result('unhealthy and back', faultAt, out, 0), backMs: back - healedAt }
  }

  /** When the check that made a task unhealthy ended, from its node's health report (`netd health`). */
  async #verdictAt (node: string, task: string): Promise<number> {
    const reports = await this.netd(node).call<Array<{ task: string, status: string, failingStreak: number, log: Array<{ end: string }> }>>('GET', '/swarm/health')
    const report = reports.find((r) => r.task === task)
    if (report?.status !== 'unhealthy') throw new Error(`task ${task} is not reported unhealthy on ${node}: ${JSON.stringify(report)}`)
    // The streak went on after the verdict: the verdict is the result `streak - retries` from the end.
    const verdict = report.log.at(-1 - (report.failingStreak - HEALTH_RETRIES))
    if (verdict === undefined) throw new Error(`task ${task}: the verdict is out of the health log`)
    return Date.parse(verdict.end)
  }

  /** The task on `node` killed (SIGKILL of its first process). */
  async taskKilled (node: string): Promise<ScenarioResult> {
    const victim = await this.taskOn(node)
    const target = await this.target(victim)
    const pid = await this.initPid(victim)
    const faultAt = Date.now()
    process.kill(pid, 'SIGKILL')
    const out = await when('the dead task out of DNS and lb everywhere', async () => await this.unserved(target), 10_000)
    await this.healthy(this.options.replicas, 30_000)
    return await this.result('task killed', faultAt, out, 1000)
  }

  /** netd (SIGTERM, start) on every node in turn, each back in the swarm before the next. */
  async netdRestarts (): Promise<ScenarioResult> {
    const faultAt = Date.now()
    for (const node of this.nodes) {
      await this.lab.restartNetd(node)
      await waitFor(`${node} back in the swarm`, async () => (await this.netd(node).call<{ agent?: { state: string } }>('GET', '/swarm/info')).agent?.state === 'ready', 20_000)
    }
    await this.healthy(this.options.replicas, 20_000)
    return await this.result('netd restarts', faultAt, Date.now(), 0)
  }

  /**
   * The manager (h1's netd) killed for `awayMs`; meanwhile h2's netd restarts from its local copy
   * and a task on h2 resolves web. Back, a change (scale up, then down) must reach every node.
   */
  async managerDown (awayMs: number): Promise<ManagerDownResult> {
    const before = await this.netd('h2').call<{ revision: number }>('GET', '/state')
    const targets = await Promise.all((await this.running(WEB)).map(async (r) => await this.target(r)))
    const faultAt = Date.now()
    await this.lab.stopNetd('h1', 'SIGKILL')
    await sleep(awayMs / 2)
    await this.lab.restartNetd('h2')
    const restored = await this.netd('h2').call<{ revision: number }>('GET', '/state')
    const servedWhileAway = (await this.servedOf(targets, ['h2', 'h3'])).length
    const answer = await this.lab.exec('h2', ['ip', 'netns', 'exec', this.taskNetns('h2', this.client!.ID), 'dig', '+short', '+time=1', '+tries=1', '@127.0.0.11', WEB])
    await sleep(awayMs / 2)
    await this.lab.startNetd('h1')
    await waitFor('every node ready again', async () => {
      const nodes = await this.cli.rows<{ Hostname: string, Status: string }>('h1', 'node', 'ls')
      return nodes.length === 3 && nodes.every((n) => n.Status === 'Ready')
    }, 30_000)
    await this.cli.ok('h1', 'service', 'scale', `${WEB}=${this.options.replicas + 1}`)
    await this.healthy(this.options.replicas + 1, 30_000)
    await this.cli.ok('h1', 'service', 'scale', `${WEB}=${this.options.replicas}`)
    await this.healthy(this.options.replicas, 30_000)
    return {
      ...await this.result('manager down', faultAt, Date.now(), 0),
      revisionBefore: before.revision,
      revisionRestored: restored.revision,
      servedWhileAway,
      servedBefore: targets.length,
      answerWhileAway: answer.stdout.trim()
    }
  }

  /** A change of web's task spec, rolled out with the default update settings. */
  async rollingUpdate (): Promise<ScenarioResult> {
    const faultAt = Date.now()
    await this.cli.ok('h1', 'service', 'update', '--env-add', `VERSION=${faultAt}`, WEB)
    await waitFor('the update completed', async () => {
      const inspected = JSON.parse(await this.cli.ok('h1', 'service', 'inspect', WEB)) as Array<{ UpdateStatus?: { State: string, Message: string } }>
      const status = inspected[0]!.UpdateStatus
      if (status?.State === 'paused') throw new Error(`the update paused: ${status.Message}`)
      return status?.State === 'completed'
    }, 90_000)
    await this.healthy(this.options.replicas, 30_000)
    return await this.result('rolling update', faultAt, Date.now(), 0)
  }

  /**
   * A node lost with the tasks it runs (at least one is made to run there): `partition` cuts its
   * underlay, `kill` also kills its netd and tasks. Then it comes back, and must run none of its old
   * tasks. The deadline for failures is the grace period plus `slackMs`.
   */
  async nodeLost (node: string, how: 'partition' | 'kill', slackMs: number): Promise<NodeLossResult> {
    let replicas = this.options.replicas
    if (!(await this.running(WEB)).some((r) => r.Node === node)) {
      replicas += 2
      await this.cli.ok('h1', 'service', 'scale', `${WEB}=${replicas}`)
      await this.healthy(replicas, 30_000)
    }
    const victims = (await this.running(WEB)).filter((r) => r.Node === node)
    const targets = await Promise.all(victims.map(async (v) => await this.target(v)))
    const pids = await Promise.all(victims.map(async (v) => await this.initPid(v)))
    const others = this.nodes.filter((n) => n !== node)
    const faultAt = Date.now()
    await this.partition(node)
    if (how === 'kill') {
      await this.lab.stopNetd(node, 'SIGKILL')
      for (const pid of pids) process.kill(pid, 'SIGKILL')
    }
    const out = await when(`${node}'s tasks out of DNS and lb on the other nodes`, async () => (await Promise.all(targets.map(async (x) => await this.unserved(x, others)))).every(Boolean), 60_000)
    await this.healthy(replicas, 60_000, others)
    const replacedAt = Date.now()
    await this.heal(node)
    if (how === 'kill') await this.lab.startNetd(node)
    await waitFor(`${node} ready again, running none of its old tasks`, async () => {
      const nodes = await this.cli.rows<{ Hostname: string, Status: string }>('h1', 'node', 'ls')
      const tasks = await this.netd(node).call<Array<{ task: string, state: string }>>('GET', '/swarm/tasks')
      return nodes.every((n) => n.Status === 'Ready') && victims.every((v) => tasks.find((x) => x.task === v.ID)?.state !== 'running')
    }, 30_000)
    if (replicas !== this.options.replicas) await this.cli.ok('h1', 'service', 'scale', `${WEB}=${this.options.replicas}`)
    await this.healthy(this.options.replicas, 30_000)
    const result = await this.result(how === 'kill' ? 'node killed' : 'node partitioned', faultAt, out, 3 * this.options.heartbeatMs + slackMs)
    return { ...result, replacedMs: replacedAt - faultAt }
  }

  /** `node update --availability drain` of a node running tasks of web: they move, draining first; then active again. */
  async nodeDrain (node: string): Promise<ScenarioResult> {
    let replicas = this.options.replicas
    if (!(await this.running(WEB)).some((r) => r.Node === node)) {
      replicas += 2
      await this.cli.ok('h1', 'service', 'scale', `${WEB}=${replicas}`)
      await this.healthy(replicas, 30_000)
    }
    const faultAt = Date.now()
    await this.cli.ok('h1', 'node', 'update', '--availability', 'drain', node)
    await waitFor(`${node} drained`, async () => !(await this.tasks(WEB)).some((r) => r.Node === node && r.State === 'running'), 30_000)
    await this.healthy(replicas, 30_000)
    const result = await this.result('node drain', faultAt, Date.now(), 0)
    await this.cli.ok('h1', 'node', 'update', '--availability', 'active', node)
    if (replicas !== this.options.replicas) await this.cli.ok('h1', 'service', 'scale', `${WEB}=${this.options.replicas}`)
    await this.healthy(this.options.replicas, 30_000)
    return result
  }

  /** web scaled down to n (and back up to its replicas afterwards, outside the measurement). */
  async scaleDown (n: number): Promise<ScenarioResult> {
    const faultAt = Date.now()
    await this.cli.ok('h1', 'service', 'scale', `${WEB}=${n}`)
    await this.healthy(n, 30_000)
    await waitFor('the scaled-away tasks ended', async () => (await this.tasks(WEB)).filter((r) => r.DesiredState === 'Shutdown' && r.State === 'running').length === 0, 30_000)
    const result = await this.result('scale down', faultAt, Date.now(), 0)
    await this.cli.ok('h1', 'service', 'scale', `${WEB}=${this.options.replicas}`)
    await this.healthy(this.options.replicas, 30_000)
    return result
  }

  /** `service create --replicas n` of a second service on the network, to every task served (lb and DNS) on every node. */
  async create (name: string, replicas: number): Promise<{ readonly ms: number }> {
    const startedAt = Date.now()
    await this.cli.ok('h1', 'service', 'create', '--name', name, '--replicas', String(replicas), '--network', NETWORK,
      'debian', 'sh', '-c', `exec ${process.execPath} ${HTTP_BACKEND} "$(hostname)" ${TARGET}`)
    await waitFor(`${replicas} tasks of ${name} served everywhere`, async () => {
      const rows = (await this.running(name))
      if (rows.length !== replicas) return false
      const views = await Promise.all(this.nodes.map(async (node) => await this.view(node, name)))
      return views.every((view) => view.lb.length > 0 && view.lb.every((f) => rows.every((r) => f.backends.some((b) => b.healthy && b.task === r.ID))) &&
        (!view.resolves || view.dns.size === replicas))
    }, 30_000, 50)
    return { ms: Date.now() - startedAt }
  }

  /** The API of a node's netd. */
  netd (node: string): NetdClient {
    return new NetdClient(this.lab.netdSocket(node))
  }

  taskNetns (node: string, task: string): string {
    return `${this.lab.netns(node)}-t-${task}`
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

/** Polls `check` every 50 ms; resolves with the time it first held. */
export async function when (what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  await waitFor(what, check, timeoutMs, 50)
  return Date.now()
}
