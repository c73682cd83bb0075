/**
 * Runs a plan: stages in order; within a stage, one batch per namespace and
 * tool, the batches of different namespaces in parallel. A failed line does
 * not stop the others (the next reconcile retries what is still missing);
 * every failure is reported together in one error.
 */
import type { Command } from './plan.ts'
import type { IprouteRunner } from './iproute.ts'
import { NetdError } from './errors.ts'

export interface ExecutionReport {
  commands: number
  batches: number
}

interface Batch { tool: 'ip' | 'bridge', netns: string | null, lines: string[] }

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
      if (!result.ok) failures.push(...result.errors.map((error) => `${batch.tool} in ${batch.netns ?? 'host namespace'}: ${error}`))
    }
  }
  if (failures.length > 0) {
    throw new NetdError('NETD_ERR_KERNEL', `reconcile left ${failures.length} kernel error(s): ${failures.join('; ')}`, failures)
  }
  return { commands: commands.length, batches }
}
