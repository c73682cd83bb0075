/**
 * What a failed runtime test may leave behind, removed by what the test
 * itself recorded: the processes of every task under `stateDir` (by pid and
 * start time only, never by name) and the namespaces named with `prefix`.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { isAlive } from '../../netd/runtime/proc.ts'
import { listTaskIds, readRecord, taskDir } from '../../netd/runtime/task-dir.ts'

const run = promisify(execFile)

export async function removeTaskLeftovers (stateDir: string, prefix: string): Promise<void> {
  for (const task of await listTaskIds(stateDir).catch(() => [] as string[])) {
    const record = await readRecord(taskDir(stateDir, task)).catch(() => null)
    if (record?.init && (await isAlive(record.init))) process.kill(record.init.pid, 'SIGKILL')
    if (record?.supervisor && (await isAlive(record.supervisor))) process.kill(-record.supervisor.pid, 'SIGKILL')
  }
  const { stdout } = await run('ip', ['netns', 'list'])
  for (const ns of stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(prefix))) {
    await run('ip', ['netns', 'del', ns]).catch(() => undefined)
  }
}
