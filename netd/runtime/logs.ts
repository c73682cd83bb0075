/**
 * A task's output: the task writes stdout.log and stderr.log itself (files
 * opened O_APPEND and handed to it), so it never blocks on netd and keeps
 * logging while netd is down. The price: size is capped by netd, by copy
 * and truncate (logrotate's copytruncate) into one `.1` generation, and only
 * while netd runs; a few bytes written between the copy and the truncate are
 * lost. Reading (`service logs`) joins the `.1` file and the current one.
 *
 * The two streams are files of their own, so their relative order is kept
 * only while following: a tail shows stdout's lines, then stderr's.
 */
import { copyFile, open, readFile, stat, truncate } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { FILES } from './task-dir.ts'

export type LogStream = 'stdout' | 'stderr'

export interface LogChunk {
  readonly stream: LogStream
  readonly data: Buffer
}

export interface LogReadOptions {
  /** Only the last N lines of each stream; all of it when absent. */
  readonly tail?: number
  /** Keep going with new output until the task ends (or signal aborts). */
  readonly follow?: boolean
  readonly signal?: AbortSignal
}

const STREAMS: readonly LogStream[] = ['stdout', 'stderr']

export function logPath (dir: string, stream: LogStream): string {
  return join(dir, stream === 'stdout' ? FILES.stdout : FILES.stderr)
}

/** Copies the file to `.1` and empties it when it holds more than maxBytes. True when it rotated. */
export async function rotateLog (path: string, maxBytes: number): Promise<boolean> {
  const info = await stat(path).catch(() => null)
  if (info === null || info.size <= maxBytes) return false
  await copyFile(path, `${path}.1`)
  await truncate(path, 0)
  return true
}

/** The last n lines of data (a final line without a newline counts). */
export function lastLines (data: Buffer, n: number): Buffer {
  if (n <= 0) return Buffer.alloc(0)
  let end = data.length
  if (end > 0 && data[end - 1] === 0x0a) end--
  let seen = 0
  for (let i = end - 1; i >= 0; i--) {
    if (data[i] === 0x0a && ++seen === n) return data.subarray(i + 1)
  }
  return data
}

async function readRange (path: string, from: number, to: number): Promise<Buffer> {
  if (to <= from) return Buffer.alloc(0)
  const handle = await open(path, 'r').catch(() => null)
  if (handle === null) return Buffer.alloc(0)
  try {
    const buffer = Buffer.alloc(to - from)
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, from)
    return buffer.subarray(0, bytesRead)
  } finally {
    await handle.close()
  }
}

/** The last line of stderr, for a failure message. */
export async function stderrTail (dir: string): Promise<string> {
  const data = await readFile(logPath(dir, 'stderr')).catch(() => Buffer.alloc(0))
  return lastLines(data, 1).toString('utf8').trim().slice(0, 512)
}

/**
 * The task's logs: what is kept (or its tail), then, when following, new output as it is written,
 * until `isDone()` says the task ended and the files have been drained.
 */
export async function * readLogs (dir: string, options: LogReadOptions, isDone: () => boolean, pollMs = 200): AsyncGenerator<LogChunk> {
  const offsets = new Map<LogStream, number>()
  for (const stream of STREAMS) {
    const path = logPath(dir, stream)
    const current = await readFile(path).catch(() => Buffer.alloc(0))
    offsets.set(stream, current.length)
    const wanted = options.tail
    let data: Buffer
    if (wanted !== undefined && lastLines(current, wanted).length < current.length) {
      data = lastLines(current, wanted)
    } else {
      const older = await readFile(`${path}.1`).catch(() => Buffer.alloc(0))
      const all = older.length > 0 ? Buffer.concat([older, current]) : current
      data = wanted === undefined ? all : lastLines(all, wanted)
    }
    if (data.length > 0) yield { stream, data }
  }
  if (options.follow !== true) return

  for (;;) {
    if (options.signal?.aborted === true) return
    // Read isDone() before draining: output written before the task ended is on disk by then.
    const done = isDone()
    for (const stream of STREAMS) {
      const path = logPath(dir, stream)
      let offset = offsets.get(stream) ?? 0
      const size = (await stat(path).catch(() => null))?.size ?? 0
      if (size < offset) {
        // Rotated since the last read: the rest of what we had not read is at the end of `.1`.
        const older = `${path}.1`
        const olderSize = (await stat(older).catch(() => null))?.size ?? 0
        const missed = await readRange(older, offset, olderSize)
        if (missed.length > 0) yield { stream, data: missed }
        offset = 0
      }
      const fresh = await readRange(path, offset, size)
      offset += fresh.length
      offsets.set(stream, offset)
      if (fresh.length > 0) yield { stream, data: fresh }
    }
    if (done) return
    try {
      await sleep(pollMs, undefined, options.signal === undefined ? {} : { signal: options.signal })
    } catch {
      return
    }
  }
}
