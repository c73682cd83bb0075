/**
 * Runs a plan: stages in order; within a stage, one batch per namespace and
 * tool, the batches of different namespaces in parallel. A failed line does
 * not stop the others (the next reconcile retries what is still missing);
 * every failure is reported together in one error.
 */
import type { Command } from './plan.ts'
import type { IprouteRunner, Tool } from './iproute.ts'
import { NetdError } from './errors.ts'

export interface ExecutionReport {
  commands: number
  batches: number
}

/**
 * A removal that finds nothing to remove has done its job: the object may have gone with its veth
 * peer or its namespace (whose teardown the kernel finishes asynchronously), or by hand.
 */
const ALREADY_GONE = /Cannot find device|No such file or directory|No such device|Cannot remove namespace/
const isRemoval = (line: string): boolean => /^(link del|netns del|fdb del|neigh flush) /.test(line)

interface Batch { tool: Tool, netns: string | null, lines: string[] }

export function groupIntoBatches (commands: readonly Command[]): Batch[][] {
  const stages = new Map<number, Map<string, Batch>>()
  for (const command of commands) {
    let batches = stages.get(command.stage)
    if (!batches) stages.set(command.stage, batches = new Map())
    const key = `${command.tool} ${command.netns ?? ''}`
    let batch = batches.get(key)
    if (!batch) batches.set(key, batch = { tool: command.tool, netns: command.netns, lines: [] })
    batch.lines.push(command.line)
  }
  return [...stages.keys()].sort((a, b) => a - b).map((stage) => [...stages.get(stage)!.values()])
}

export async function execute (runner: IprouteRunner, commands: readonly Command[]): Promise<ExecutionReport> {
  const failures: string[] = []
  let batches = 0
  for (const stage of groupIntoBatches(commands)) {
    batches += stage.length
    const results = await Promise.all(stage.map(async (batch) => ({ batch, result: await runner.batch(batch.tool, batch.netns, batch.lines) })))
    for (const { batch, result } of results) {
      for (const failure of result.failures) {
        const line = batch.lines[failure.index]
        if (line !== undefined && isRemoval(line) && ALREADY_GONE.test(failure.message)) continue
        failures.push(`${batch.tool} in ${batch.netns ?? 'host namespace'}: ${failure.message}${line === undefined ? '' : ` (${line})`}`)
      }
    }
  }
  if (failures.length > 0) {
    throw new NetdError('NETD_ERR_KERNEL', `reconcile left ${failures.length} kernel error(s): ${failures.join('; ')}`, failures)
  }
  return { commands: commands.length, batches }
}
