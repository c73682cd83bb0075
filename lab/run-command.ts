/**
 * Runs a short-lived command to completion and collects its output. The single place the lab
 * spawns helpers such as `ip`, so failures always name the command and carry its stderr.
 */

import { spawn } from 'node:child_process'
import os from 'node:os'
import { LabError, LabErrorCode } from './errors.ts'

export interface CommandResult {
  readonly stdout: string
  readonly stderr: string
  /** Exit status, or 128 + signal number when the command was killed by a signal (shell convention). */
  readonly code: number
}

export interface RunOptions {
  readonly input?: string
  readonly env?: NodeJS.ProcessEnv
  readonly timeoutMs?: number
}

export function runCommand(argv: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  const [file, ...args] = argv
  if (file === undefined) return Promise.reject(new LabError(LabErrorCode.command, 'empty command'))
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: opts.timeoutMs,
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.on('error', (e) => reject(new LabError(LabErrorCode.command, `cannot run ${argv.join(' ')}: ${e.message}`, { cause: e })))
    child.on('close', (code, signal) => {
      resolve({
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        code: code ?? 128 + signalNumber(signal),
      })
    })
    // A command that exits without reading stdin must not turn into an unhandled EPIPE.
    child.stdin.on('error', () => {})
    child.stdin.end(opts.input ?? '')
  })
}

/** Like runCommand, but a non-zero exit is an error naming the command and its stderr. */
export async function runChecked(argv: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  const result = await runCommand(argv, opts)
  if (result.code !== 0) {
    throw new LabError(LabErrorCode.command, `${argv.join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`)
  }
  return result
}

export function signalNumber(signal: NodeJS.Signals | null): number {
  if (signal === null) return 0
  return os.constants.signals[signal] ?? 0
}
