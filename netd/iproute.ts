/**
 * The narrow port between netd and the kernel: iproute2 run in batch mode
 * (one process per namespace per stage, never one per object) and its JSON
 * dumps, and `sysctl` for the few per-namespace settings iproute2 cannot
 * reach. The real implementation spawns `ip`/`bridge`/`sysctl`; tests of the
 * pure layers never need it, and a faulty wrapper can stand in to test failures.
 */
import { spawn } from 'node:child_process'
import { readSysctls, writeSysctls } from '../lb/sysctl.ts'

export interface BatchFailure {
  /** 0-based index of the failed line in the batch; -1 when iproute2 did not say which. */
  index: number
  /** iproute2's own message. */
  message: string
}

export interface BatchResult {
  failures: BatchFailure[]
}

/** `sysctl` lines are `name=value`; a name the kernel does not have (its module not loaded) is skipped. */
export type Tool = 'ip' | 'bridge' | 'sysctl'

export interface IprouteRunner {
  /** Runs lines through `ip -batch`, `bridge -batch` or `sysctl -w` in a namespace (null: netd's own). */
  batch (tool: Tool, netns: string | null, lines: readonly string[]): Promise<BatchResult>
  /** Runs one JSON-emitting command per line and returns each line's parsed output. */
  dump (tool: 'ip' | 'bridge', netns: string | null, lines: readonly string[]): Promise<unknown[]>
  /** The values of those of `names` the namespace's kernel has. */
  sysctls (netns: string, names: readonly string[]): Promise<Map<string, string>>
  /** Names of the network namespaces that exist. */
  namespaces (): Promise<string[]>
}

/**
 * iproute2 prints a failed line's message(s) followed by "Command failed -:N" (N counts from 1).
 * Messages with no such trailer (some commands exit the batch outright) are kept with index -1.
 */
export function parseBatchErrors (stderr: string): BatchFailure[] {
  const failures: BatchFailure[] = []
  let pending: string[] = []
  for (const line of stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '')) {
    const trailer = /^Command failed -:(\d+)$/.exec(line)
    if (trailer) {
      failures.push({ index: Number(trailer[1]) - 1, message: pending.join(' ') || 'failed' })
      pending = []
    } else {
      pending.push(line)
    }
  }
  if (pending.length > 0) failures.push({ index: -1, message: pending.join(' ') })
  if (failures.length === 0) failures.push({ index: -1, message: 'batch failed without a message' })
  return failures
}

interface Completed { code: number, stdout: string, stderr: string }

function run (command: string, args: readonly string[], input: string): Promise<Completed> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() }))
    child.stdin.on('error', () => { /* the exit code and stderr report the failure */ })
    child.stdin.end(input)
  })
}

function namespaceArgs (netns: string | null): string[] {
  return netns === null ? [] : ['-n', netns]
}

export const iproute: IprouteRunner = {
  async batch (tool, netns, lines) {
    if (lines.length === 0) return { failures: [] }
    if (tool === 'sysctl') {
      const values = Object.fromEntries(lines.map((line) => line.split('=', 2) as [string, string]))
      return await writeSysctls(netns, values, { skipMissing: true }).then(
        () => ({ failures: [] }),
        (error: unknown) => ({ failures: [{ index: -1, message: (error as Error).message }] }))
    }
    // -force: keep going after a failed line, so one bad object does not leave the rest of the batch undone.
    const result = await run(tool, [...namespaceArgs(netns), '-force', '-batch', '-'], lines.join('\n') + '\n')
    if (result.code === 0) return { failures: [] }
    return { failures: parseBatchErrors(result.stderr) }
  },

  async dump (tool, netns, lines) {
    const result = await run(tool, [...namespaceArgs(netns), '-json', '-details', '-batch', '-'], lines.join('\n') + '\n')
    if (result.code !== 0) throw new Error(`${tool} ${netns ?? ''}: ${result.stderr.trim()}`)
    // Each batch line prints one JSON array on its own line; a line with nothing to show prints [] or nothing.
    const outputs = result.stdout.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as unknown)
    while (outputs.length < lines.length) outputs.push([])
    return outputs
  },

  async sysctls (netns, names) {
    return new Map(Object.entries(await readSysctls(netns, names)))
  },

  async namespaces () {
    const result = await run('ip', ['-json', 'netns', 'list'], '')
    if (result.code !== 0) throw new Error(`ip netns list: ${result.stderr.trim()}`)
    if (result.stdout.trim() === '') return []
    return (JSON.parse(result.stdout) as Array<{ name: string }>).map((entry) => entry.name)
  }
}
