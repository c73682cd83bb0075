/**
 * An overlay cluster on a lab for end-to-end tests: a cluster-wide endpoint
 * table projected onto each node's document (as the manager will), applied
 * through each node's netd, and tools to act inside task namespaces.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { NetdClient } from '../../netd/api-client.ts'
import type { ReconcileSummary } from '../../netd/daemon.ts'
import { taskNamespaceName } from '../../netd/kernel-state.ts'
import { macForIp, nodeDocument, type ClusterEndpoint, type ClusterView } from '../../manager/node-view.ts'
import type { NetworkInput as Network, ServiceInput } from '../../netd/desired-state.ts'
import { execIn, type Lab } from './lab.ts'

export const PROBE = path.resolve(import.meta.dirname, '../fixtures/net-probe.ts')

interface Teardownable { teardown (fn: () => void | Promise<void>): void }

export interface TaskSpec { task: string, network: string, ip: string, host: string, service?: string, name?: string, healthy?: boolean }

export class OverlayCluster {
  readonly lab: Lab
  readonly #hosts: string[]
  #revision = 0
  networks: Network[] = []
  tasks: TaskSpec[] = []
  services: ServiceInput[] = []
  /** The routing mesh: the ingress network and each host's ingress endpoint address on it. */
  ingress: { network: string, ips: Record<string, string> } | null = null

  constructor (lab: Lab, hosts: string[]) {
    this.lab = lab
    this.#hosts = hosts
  }

  /** The netd prefix the lab gives each node: its host namespace name and a dash. */
  taskNetns (task: string): string {
    const spec = this.tasks.find((t) => t.task === task)
    if (!spec) throw new Error(`no task ${task}`)
    return taskNamespaceName(`${this.lab.netns(spec.host)}-`, task)
  }

  view (): ClusterView {
    const ingress = this.ingress
    return {
      revision: this.#revision,
      networks: this.networks,
      endpoints: this.tasks.map(({ host, ...t }): ClusterEndpoint => ({ ...t, mac: macForIp(t.ip), node: this.lab.addr(host) })),
      services: this.services,
      ...(ingress === null
        ? {}
        : { ingress: { network: ingress.network, endpoints: Object.entries(ingress.ips).map(([host, ip]) => ({ node: this.lab.addr(host), ip, mac: macForIp(ip) })) } })
    }
  }

  client (host: string): NetdClient {
    return new NetdClient(this.lab.netdSocket(host))
  }

  /** Projects the cluster onto every node and applies each node's document. */
  async apply (): Promise<Map<string, ReconcileSummary>> {
    this.#revision++
    const view = this.view()
    const results = await Promise.all(this.#hosts.map(async (host) =>
      [host, await this.client(host).call<ReconcileSummary>('PUT', '/state', nodeDocument(view, this.lab.addr(host)))] as const))
    return new Map(results)
  }

  async inTask (task: string, argv: readonly string[]) {
    return await execIn(this.taskNetns(task), argv)
  }

  async probe (task: string, ...args: string[]) {
    return await this.inTask(task, [process.execPath, PROBE, ...args])
  }
}

/** Starts `net-probe serve` in a task namespace; killed by pid at teardown. */
export async function serve (t: Teardownable, cluster: OverlayCluster, task: string, id: string, port: number): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', cluster.taskNetns(task), process.execPath, PROBE, 'serve', id, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const [chunk] = await once(child.stdout!, 'data') as [Buffer]
  if (!chunk.toString().includes('listening')) throw new Error(`probe server in ${task} did not start: ${chunk.toString()}`)
  return child
}
