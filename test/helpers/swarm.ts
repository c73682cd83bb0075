/**
 * Running the weft CLI on lab hosts, as the swarm end-to-end tests do: a
 * command's output, its --format json rows, and waiting for the cluster to
 * converge.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { CommandResult } from '../../lab/run-command.ts'
import type { Lab } from './lab.ts'

/** Tasks that stop at once on SIGTERM (a PID 1 without a handler waits for the 10 s grace period). */
export const IDLE = ['sh', '-c', 'trap "exit 0" TERM; sleep infinity & wait']

export interface TaskRow { ID: string, Name: string, Node: string, DesiredState: string, CurrentState: string, Error: string, Slot: number | null, State: string, StatusAt: string }

export function weftCli (lab: Lab) {
  const weft = async (host: string, ...args: string[]): Promise<CommandResult> => await lab.exec(host, ['weft', ...args])
  /** stdout of a command that must succeed; its stderr in the error otherwise. */
  const ok = async (host: string, ...args: string[]): Promise<string> => {
    const result = await weft(host, ...args)
    if (result.code !== 0) throw new Error(`weft ${args.join(' ')} on ${host}: exit ${result.code}: ${result.stderr.trim()}`)
    return result.stdout
  }
  const rows = async <T = Record<string, string>>(host: string, ...args: string[]): Promise<T[]> =>
    (await ok(host, ...args, '--format', 'json')).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as T)
  return { weft, ok, rows }
}

/** Polls `probe` every `intervalMs` until it returns something (not undefined, null or false). */
export async function waitFor<T> (what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 20_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await probe()
      if (value !== undefined && value !== null && value !== false) return value
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${(last as Error).message}`}`)
    await sleep(intervalMs)
  }
}
