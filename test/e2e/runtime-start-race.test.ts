/**
 * Regression: a poll of the task runtime during start(), after the task's
 * entry existed but before its supervisor was spawned, found no supervisor,
 * declared the task lost ("the supervisor never recorded itself") and left the
 * process start() went on to spawn running and unwatched. The swarm then
 * replaced the task and removed its namespace under it (found by
 * bench/swarm.ts, now bench/control-plane.ts: leaked task processes after
 * `service rm`). With a poll every 10 ms, every start used to fall into that
 * window.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { pino } from 'pino'
import { TaskRuntime } from '../../netd/runtime/runtime.ts'

const run = promisify(execFile)

if (process.getuid?.() !== 0) {
  if (process.env.CI !== undefined) t.fail('the runtime e2e test needs root')
  else t.plan(0, 'needs root (network, PID and mount namespaces)')
  process.exit()
}

const NS = `weftlab-rtr-${process.pid.toString(36)}-a`
const scratch = await mkdtemp(join(tmpdir(), 'weft-rt-race-'))
const runtime = new TaskRuntime({ stateDir: join(scratch, 'state'), imagesDir: join(scratch, 'images'), log: pino({ level: 'silent' }), pollMs: 10 })
t.teardown(async () => {
  await runtime.close({ stopTasks: true, graceMs: 200 })
  await run('ip', ['netns', 'del', NS]).catch(() => undefined)
  await rm(scratch, { recursive: true, force: true })
})
await run('ip', ['netns', 'add', NS])

t.test('tasks started while the runtime polls every 10 ms all run, and all stop', async (t) => {
  const ids = Array.from({ length: 12 }, (_, i) => `race${i}${process.pid.toString(36)}`)
  const started = await Promise.all(ids.map(async (task, i) => await runtime.start({
    task, name: `race.${i + 1}.${task}`, netns: NS, image: 'debian', command: ['sh', '-c', 'trap "exit 0" TERM; sleep infinity & wait']
  })))
  t.same(started.map((s) => s.state), ids.map(() => 'running'), started.map((s) => s.error).filter((e) => e !== null).join('; '))
  const stopped = await Promise.all(ids.map(async (task) => await runtime.stop(task, 2000)))
  t.same(stopped.map((s) => s.state), ids.map(() => 'shutdown'))
})
