/**
 * How fast the replicated log acknowledges, fsync included: the write-ahead
 * log alone (one entry and a hard state per fsync, the floor every
 * acknowledgement pays), then a group of one from propose() to applied, with
 * 1, 16 and 64 concurrent proposers (concurrent proposals share an fsync).
 * Each figure is the median of `--runs` runs; the disk under `--dir` decides
 * most of it, so compare figures from one run of this script.
 *
 *   node manager/raft/bench.ts [--dir DIR] [--count N] [--runs R]
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ReplicatedLog, type StateMachine } from './replicated-log.ts'
import { Wal } from './wal.ts'

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: tmpdir() },
    count: { type: 'string', default: '3000' },
    runs: { type: 'string', default: '3' }
  }
})
const COUNT = Number(values.count)
const RUNS = Number(values.runs)
const command = { op: 'task-state', task: 'web.1.x7k2', state: 'running', node: 'node-3' }

class Counter implements StateMachine<typeof command, number> {
  applied = 0
  apply (): number { return ++this.applied }
  snapshot (): Uint8Array { return new TextEncoder().encode(String(this.applied)) }
  restore (data: Uint8Array): void { this.applied = Number(new TextDecoder().decode(data)) }
}

async function scratch<T> (fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(values.dir, 'weft-raft-bench-'))
  try { return await fn(dir) } finally { await rm(dir, { recursive: true, force: true }) }
}

async function walAppends (): Promise<number> {
  return await scratch(async (dir) => {
    const { wal } = await Wal.open(dir)
    const data = new TextEncoder().encode(JSON.stringify(command))
    const start = performance.now()
    for (let index = 1; index <= COUNT; index++) {
      await wal.save({ entries: [{ index, term: 1, kind: 'normal', data }], hardState: { term: 1, vote: 'm1', commit: index } })
    }
    const perSecond = COUNT / (performance.now() - start) * 1000
    await wal.close()
    return perSecond
  })
}

async function proposals (concurrency: number): Promise<number> {
  return await scratch(async (dir) => {
    const log = await ReplicatedLog.open({ dir, id: 'm1', peers: ['m1'], stateMachine: new Counter() })
    let issued = 0
    const start = performance.now()
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (issued < COUNT) {
        issued++
        await log.propose(command)
      }
    }))
    const perSecond = COUNT / (performance.now() - start) * 1000
    await log.close()
    return perSecond
  })
}

async function median (fn: () => Promise<number>): Promise<number> {
  const samples: number[] = []
  for (let run = 0; run < RUNS; run++) samples.push(await fn())
  samples.sort((a, b) => a - b)
  return Math.round(samples[Math.floor(samples.length / 2)]!)
}

console.log(`dir ${values.dir}, ${COUNT} operations, median of ${RUNS} runs`)
console.log(`wal: 1 entry + hard state per fsync      ${await median(walAppends)} appends/s`)
for (const concurrency of [1, 16, 64]) {
  console.log(`group of one, ${String(concurrency).padStart(2)} proposer(s): propose → applied ${await median(() => proposals(concurrency))} commands/s`)
}
