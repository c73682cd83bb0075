/**
 * The narrow port between netd and the kernel: iproute2 run in batch mode
 * (one process per namespace per stage, never one per object) and its JSON
 * dumps. The real implementation spawns `ip`/`bridge`; tests of the pure
 * layers never need it, and a faulty wrapper can stand in to test failures.
 */
import { spawn } from 'node:child_process'

export interface BatchResult {
  ok: boolean
  /** iproute2's own messages, one per failed line. */
  errors: string[]
}

export interface IprouteRunner {
  /** Runs lines through `ip -batch` or `bridge -batch` in a namespace (null: netd's own). */
  batch (tool: 'ip' | 'bridge', netns: string | null, lines: readonly string[]): Promise<BatchResult>
  /** Runs one JSON-emitting command per line and returns each line's parsed output. */
  dump (tool: 'ip' | 'bridge', netns: string | null, lines: readonly string[]): Promise<unknown[]>
  /** Names of the network namespaces that exist. */
  namespaces (): Promise<string[]>
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
    if (lines.length === 0) return { ok: true, errors: [] }
    // -force: keep going after a failed line, so one bad object does not leave the rest of the batch undone.
    const result = await run(tool, [...namespaceArgs(netns), '-force', '-batch', '-'], lines.join('\n') + '\n')
    const errors = result.stderr.split('\n').map((line) => line.trim()).filter((line) => line !== '')
    return { ok: result.code === 0, errors: result.code === 0 ? [] : errors }
  },

  async dump (tool, netns, lines) {
    const result = await run(tool, [...namespaceArgs(netns), '-json', '-details', '-batch', '-'], lines.join('\n') + '\n')
    if (result.code !== 0) throw new Error(`${tool} ${netns ?? ''}: ${result.stderr.trim()}`)
    // Each batch line prints one JSON array on its own line; a line with nothing to show prints [] or nothing.
    const outputs = result.stdout.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as unknown)
    while (outputs.length < lines.length) outputs.push([])
    return outputs
  },

  async namespaces () {
    const result = await run('ip', ['-json', 'netns', 'list'], '')
    if (result.code !== 0) throw new Error(`ip netns list: ${result.stderr.trim()}`)
    if (result.stdout.trim() === '') return []
    return (JSON.parse(result.stdout) as Array<{ name: string }>).map((entry) => entry.name)
  }
}
