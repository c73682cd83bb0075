/**
 * The only part of netd that changes the kernel: observe, diff against the
 * desired state, execute. Reconciles never overlap (a new request waits for
 * the running one), so two plans are never computed from the same stale view.
 */
import type { Logger } from 'pino'
import type { DesiredState } from './desired-state.ts'
import { desiredKernel, type NodeIdentity } from './desired-kernel.ts'
import { emptyKernelState } from './kernel-state.ts'
import { observeKernel } from './observe.ts'
import { plan, type Command } from './plan.ts'
import { execute } from './executor.ts'
import type { IprouteRunner } from './iproute.ts'

export interface ReconcileResult {
  commands: Command[]
  batches: number
  durationMs: number
}

export class Reconciler {
  readonly #runner: IprouteRunner
  readonly #node: NodeIdentity
  readonly #log: Logger
  #queue: Promise<unknown> = Promise.resolve()

  constructor (runner: IprouteRunner, node: NodeIdentity, log: Logger) {
    this.#runner = runner
    this.#node = node
    this.#log = log
  }

  /** What would change to make the kernel match `doc`: the drift `netd check` reports. */
  async drift (doc: DesiredState): Promise<Command[]> {
    return await this.#serialised(async () => plan(desiredKernel(doc, this.#node), await observeKernel(this.#runner, this.#node.prefix)))
  }

  async reconcile (doc: DesiredState): Promise<ReconcileResult> {
    return await this.#serialised(async () => {
      const started = performance.now()
      const commands = plan(desiredKernel(doc, this.#node), await observeKernel(this.#runner, this.#node.prefix))
      if (commands.length > 0) this.#log.info({ revision: doc.revision, reasons: [...new Set(commands.map((c) => c.reason))] }, 'repairing drift')
      const report = await execute(this.#runner, commands)
      return { commands, batches: report.batches, durationMs: performance.now() - started }
    })
  }

  /** Removes every kernel object this netd created. */
  async cleanup (): Promise<ReconcileResult> {
    return await this.#serialised(async () => {
      const started = performance.now()
      const commands = plan(emptyKernelState(), await observeKernel(this.#runner, this.#node.prefix))
      const report = await execute(this.#runner, commands)
      return { commands, batches: report.batches, durationMs: performance.now() - started }
    })
  }

  #serialised<T> (work: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(work, work)
    this.#queue = next.catch(() => undefined)
    return next
  }
}
