/**
 * dnsd as netd embeds it: one DnsServer for all of the node's tasks, its
 * upstreams read from the node's resolv.conf, and the tasks' own resolv.conf
 * files. netd calls `update` as soon as a document is accepted (answers
 * change before any kernel work) and `sync` after every reconcile (sockets
 * for new task namespaces, none for removed ones; failures retried next time).
 */
import type { Logger } from 'pino'
import type { DesiredState } from '../netd/desired-state.ts'
import { taskNamespaceName } from '../netd/kernel-state.ts'
import type { DnsServer } from './server.ts'
import { createDnsServer, type CreateDnsServerOptions } from './create-server.ts'
import { taskResolvConf } from './resolv-conf.ts'
import { syncTaskResolvFiles } from './task-resolv-files.ts'

export interface NodeDnsOptions extends CreateDnsServerOptions {
  /** netd's namespace prefix; task namespaces are `<prefix>t-<task>`. */
  prefix: string
}

export class NodeDns {
  readonly server: DnsServer
  readonly #prefix: string
  readonly #taskResolvConf: string
  readonly #log: Logger

  private constructor (server: DnsServer, prefix: string, taskResolv: string, log: Logger) {
    this.server = server
    this.#prefix = prefix
    this.#taskResolvConf = taskResolv
    this.#log = log
  }

  static async create (options: NodeDnsOptions, doc: DesiredState): Promise<NodeDns> {
    const { server, resolvConf } = await createDnsServer(options, doc)
    options.log.info({ upstreams: server.forwarder.upstreams.map((u) => u.address) }, 'dnsd ready')
    return new NodeDns(server, options.prefix, taskResolvConf(resolvConf), options.log)
  }

  update (doc: DesiredState): void {
    this.server.update(doc)
  }

  async sync (doc: DesiredState): Promise<string[]> {
    const tasks = new Map(doc.endpoints.map((e) => [e.task, taskNamespaceName(this.#prefix, e.task)]))
    await syncTaskResolvFiles(new Set(tasks.values()), taskNamespaceName(this.#prefix, ''), this.#taskResolvConf)
    const errors = await this.server.sync(tasks)
    if (errors.length > 0) this.#log.warn({ errors }, 'some task namespaces have no DNS socket yet')
    return errors
  }

  async close (): Promise<void> {
    await this.server.close()
  }
}
