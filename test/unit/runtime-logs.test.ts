/**
 * A task's output files: tail, rotation by copy and truncate, and following
 * across a rotation without losing or repeating what was written.
 */
import t, { type Test } from 'tap'
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { lastLines, logPath, readLogs, rotateLog, stderrTail, type LogChunk } from '../../netd/runtime/logs.ts'

async function taskDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-rt-logs-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function collect (chunks: AsyncIterable<LogChunk>): Promise<{ stdout: string, stderr: string, order: string[] }> {
  const out = { stdout: '', stderr: '', order: [] as string[] }
  for await (const chunk of chunks) {
    out[chunk.stream] += chunk.data.toString()
    out.order.push(chunk.stream)
  }
  return out
}

t.test('last lines: a final line without a newline counts', async (t) => {
  const b = (s: string) => Buffer.from(s)
  t.equal(lastLines(b('a\nb\nc\n'), 2).toString(), 'b\nc\n')
  t.equal(lastLines(b('a\nb\nc'), 2).toString(), 'b\nc')
  t.equal(lastLines(b('a\nb\n'), 5).toString(), 'a\nb\n')
  t.equal(lastLines(b('a\n'), 0).toString(), '')
  t.equal(lastLines(b(''), 3).toString(), '')
})

t.test('rotation copies to .1 and empties the file, only past the limit', async (t) => {
  const dir = await taskDir(t)
  const path = logPath(dir, 'stdout')
  await writeFile(path, 'x'.repeat(100))
  t.equal(await rotateLog(path, 100), false, 'at the limit: kept')
  await appendFile(path, 'y')
  t.equal(await rotateLog(path, 100), true)
  t.equal(await readFile(path, 'utf8'), '')
  t.equal(await readFile(`${path}.1`, 'utf8'), `${'x'.repeat(100)}y`)
  t.equal(await rotateLog(join(dir, 'missing.log'), 1), false, 'no file: nothing to do')
})

t.test('reading: the rotated generation first, then the current file; tail across both', async (t) => {
  const dir = await taskDir(t)
  await writeFile(`${logPath(dir, 'stdout')}.1`, 'o1\no2\n')
  await writeFile(logPath(dir, 'stdout'), 'o3\n')
  await writeFile(logPath(dir, 'stderr'), 'e1\ne2\n')
  const all = await collect(readLogs(dir, {}, () => true))
  t.same(all, { stdout: 'o1\no2\no3\n', stderr: 'e1\ne2\n', order: ['stdout', 'stderr'] })
  t.same(await collect(readLogs(dir, { tail: 2 }, () => true)), { stdout: 'o2\no3\n', stderr: 'e1\ne2\n', order: ['stdout', 'stderr'] })
  t.same(await collect(readLogs(dir, { tail: 1 }, () => true)), { stdout: 'o3\n', stderr: 'e2\n', order: ['stdout', 'stderr'] })
  t.equal(await stderrTail(dir), 'e2')
})

t.test('a task without output yet has no logs, not an error', async (t) => {
  const dir = await taskDir(t)
  t.same(await collect(readLogs(dir, { tail: 10 }, () => true)), { stdout: '', stderr: '', order: [] })
  t.equal(await stderrTail(dir), '')
})

t.test('following: new output as it comes, across a rotation, until the task has ended', async (t) => {
  const dir = await taskDir(t)
  const path = logPath(dir, 'stdout')
  await writeFile(path, 'before\n')
  let done = false
  const chunks: string[] = []
  const following = (async () => {
    for await (const chunk of readLogs(dir, { follow: true }, () => done, 10)) chunks.push(chunk.data.toString())
  })()
  const settle = () => new Promise((resolve) => setTimeout(resolve, 60))
  await settle()
  await appendFile(path, 'one\n')
  await settle()
  await appendFile(path, 'two\n')
  // Rotated before the reader saw "two": it is read from the end of .1, then the new file.
  t.equal(await rotateLog(path, 1), true)
  await appendFile(path, 'three\n')
  await appendFile(logPath(dir, 'stderr'), 'oops\n')
  done = true
  await following
  t.equal(chunks.join(''), 'before\none\ntwo\nthree\noops\n', 'nothing lost, nothing twice')
})

t.test('following stops when aborted', async (t) => {
  const dir = await taskDir(t)
  const controller = new AbortController()
  const following = collect(readLogs(dir, { follow: true, signal: controller.signal }, () => false, 10))
  setTimeout(() => controller.abort(), 50)
  t.same(await following, { stdout: '', stderr: '', order: [] })
})
