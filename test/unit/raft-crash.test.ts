/**
 * "Killing the manager with SIGKILL at any moment loses no acknowledged
 * change." A child process (this file, in child mode) proposes in a loop to a
 * group of one on a scratch directory and prints `ack N` once propose(N) has
 * resolved. The parent kills it with SIGKILL at a random moment, opens the
 * log itself, and checks that every acknowledged command was applied, each
 * exactly once; then starts the child again on the same directory, several
 * rounds, with one and with many concurrent proposers, and with compaction
 * every few entries so that kills also land in the middle of a snapshot.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ReplicatedLog, type StateMachine } from '../../manager/raft/replicated-log.ts'
import { prng } from '../helpers/raft-simulation.ts'

interface Command { readonly n: number }

/** Records every command applied, in order. */
class Journal implements StateMachine<Command, number> {
  applied: number[] = []
  apply (command: Command): number {
    this.applied.push(command.n)
    return this.applied.length
  }

  snapshot (): Uint8Array { return new TextEncoder().encode(JSON.stringify(this.applied)) }
  restore (data: Uint8Array): void { this.applied = JSON.parse(new TextDecoder().decode(data)) as number[] }
}

const SNAPSHOT_EVERY = 25

async function child (dir: string, first: number, concurrency: number): Promise<void> {
  const log = await ReplicatedLog.open({ dir, id: 'solo', peers: ['solo'], stateMachine: new Journal(), snapshotEvery: SNAPSHOT_EVERY })
  process.stdout.write('ready\n')
  let next = first
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (;;) {
      const n = next++
      await log.propose({ n })
      process.stdout.write(`ack ${n}\n`) // synchronous on a pipe (Linux): printed means resolved
    }
  }))
}

/** Runs the child until it has acknowledged at least `atLeast` commands, then SIGKILLs it; returns what it acknowledged. */
async function runAndKill (dir: string, first: number, concurrency: number, atLeast: number): Promise<number[]> {
  const proc = spawn(process.execPath, [import.meta.filename], {
    env: { ...process.env, RAFT_CRASH_CHILD: JSON.stringify({ dir, first, concurrency }) },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const acked: number[] = []
  let buffered = ''
  return await new Promise<number[]>((resolve, reject) => {
    proc.stdout.setEncoding('utf8')
    proc.stdout.on('data', (chunk: string) => {
      buffered += chunk
      const lines = buffered.split('\n')
      buffered = lines.pop()!
      for (const line of lines) if (line.startsWith('ack ')) acked.push(Number(line.slice(4)))
      if (acked.length >= atLeast && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    })
    proc.on('error', reject)
    proc.on('exit', (code, signal) => {
      // Lines already in the pipe when the child died were written after their proposals resolved: they count.
      for (const line of (buffered + '\n').split('\n')) if (line.startsWith('ack ')) acked.push(Number(line.slice(4)))
      if (signal === 'SIGKILL') resolve(acked)
      else reject(new Error(`the child exited by itself (code ${code}, signal ${signal})`))
    })
  })
}

if (process.env.RAFT_CRASH_CHILD !== undefined) {
  const { dir, first, concurrency } = JSON.parse(process.env.RAFT_CRASH_CHILD) as { dir: string, first: number, concurrency: number }
  await child(dir, first, concurrency)
} else {
  const { default: t } = await import('tap')
  t.test('SIGKILL at any moment loses no acknowledged command', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-raft-crash-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    const random = prng(0xc4a5)
    const everAcked: number[] = []
    const rounds = [1, 16, 1, 16, 4, 16]
    for (const [round, concurrency] of rounds.entries()) {
      const atLeast = 20 + Math.floor(random() * 200)
      const acked = await runAndKill(dir, (round + 1) * 1_000_000, concurrency, atLeast)
      everAcked.push(...acked)
      const journal = new Journal()
      const log = await ReplicatedLog.open({ dir, id: 'solo', peers: ['solo'], stateMachine: journal, snapshotEvery: SNAPSHOT_EVERY })
      const applied = new Set(journal.applied)
      const lost = everAcked.filter((n) => !applied.has(n))
      t.same(lost, [], `round ${round + 1} (${concurrency} proposers): ${acked.length} acknowledged before the kill, all present after recovery`)
      t.equal(applied.size, journal.applied.length, 'each command applied once')
      await log.close()
    }
  })
}
