/**
 * A task's state directory, `<stateDir>/tasks/<task>/`: everything a netd
 * needs to re-adopt the task after a restart, and everything the task leaves
 * behind when it ends, even while no netd is running.
 *
 *   record.json      written by netd: the spec, the launch plan, the supervisor's and PID 1's
 *                    identities (pid + start time). Replaced atomically (write, fsync, rename).
 *   launch.args      written by netd before the spawn, read by the task's PID 1: the exec chain
 *                    with the task's environment (root-only, never on a command line).
 *   supervisor.pid   written by the supervisor itself before the task starts: finds it if netd
 *                    died between spawning it and recording it.
 *   exit-status      written by the supervisor when the task ends: `<code>\n`, renamed into place.
 *   stop-requested   written by netd before it signals a stop: the end is then `shutdown`,
 *                    not `failed`, also for a netd that restarts in between.
 *   stdout.log, stderr.log (+ .1 after rotation)   the task's output, appended.
 */
import { mkdir, open, readFile, readdir, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { taskProcessSpecSchema, TASK_ID_PATTERN } from './spec.ts'

export const FILES = Object.freeze({
  record: 'record.json',
  launchArgs: 'launch.args',
  supervisorPid: 'supervisor.pid',
  exitStatus: 'exit-status',
  stopRequested: 'stop-requested',
  stdout: 'stdout.log',
  stderr: 'stderr.log'
})

export function tasksDir (stateDir: string): string {
  return join(stateDir, 'tasks')
}

export function taskDir (stateDir: string, task: string): string {
  return join(tasksDir(stateDir), task)
}

const identitySchema = z.strictObject({ pid: z.int().positive(), startTime: z.string().regex(/^\d+$/) })
const idList = z.array(z.int().min(0)).readonly()

export const launchPlanSchema = z.strictObject({
  netns: z.string(),
  rootfs: z.string().nullable(),
  mounts: z.strictObject({ proc: z.string(), dev: z.string(), sys: z.string(), resolvConf: z.string() }),
  hostname: z.string(),
  uid: z.int().min(0),
  gid: z.int().min(0),
  groups: idList,
  env: z.record(z.string(), z.string()),
  workdir: z.string(),
  argv: z.array(z.string()).min(1).readonly()
})

export const taskRecordSchema = z.strictObject({
  version: z.literal(1),
  spec: taskProcessSpecSchema,
  plan: launchPlanSchema,
  /** The supervisor shell: its pid is also the task's process group. */
  supervisor: identitySchema.nullable(),
  /** The task's PID 1, as the host sees it: the target of exec and of SIGKILL. */
  init: identitySchema.nullable(),
  createdAt: z.string(),
  startedAt: z.string().nullable()
})

export type TaskRecord = z.output<typeof taskRecordSchema>

async function syncDirectory (dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try { await handle.sync() } finally { await handle.close() }
}

export async function writeRecord (dir: string, record: TaskRecord): Promise<void> {
  const target = join(dir, FILES.record)
  const temporary = `${target}.tmp`
  const handle = await open(temporary, 'w', 0o600)
  try {
    await handle.writeFile(JSON.stringify(record, null, 2) + '\n')
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(temporary, target)
  await syncDirectory(dir)
}

/** null when there is no record (a directory being created); throws when it does not parse. */
export async function readRecord (dir: string): Promise<TaskRecord | null> {
  let text: string
  try {
    text = await readFile(join(dir, FILES.record), 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw error
  }
  return taskRecordSchema.parse(JSON.parse(text))
}

export interface ExitStatus {
  /** 0-255; 128+N when a signal N ended the task (as a shell reports it). */
  readonly code: number
  readonly at: Date
}

/** Parses the supervisor's `<code>\n`; anything else (a torn write) is "not there yet". */
export function parseExitStatus (text: string): number | null {
  const match = /^(\d{1,3})\n$/.exec(text)
  if (match === null) return null
  const code = Number(match[1])
  return code <= 255 ? code : null
}

export async function readExitStatus (dir: string): Promise<ExitStatus | null> {
  const path = join(dir, FILES.exitStatus)
  const text = await readFile(path, 'utf8').catch(() => null)
  if (text === null) return null
  const code = parseExitStatus(text)
  if (code === null) return null
  const info = await stat(path).catch(() => null)
  return { code, at: info?.mtime ?? new Date() }
}

export async function readSupervisorPid (dir: string): Promise<number | null> {
  const text = await readFile(join(dir, FILES.supervisorPid), 'utf8').catch(() => '')
  const match = /^(\d+)\n$/.exec(text)
  return match === null ? null : Number(match[1])
}

export async function markStopRequested (dir: string): Promise<void> {
  await writeFile(join(dir, FILES.stopRequested), new Date().toISOString() + '\n')
}

export async function isStopRequested (dir: string): Promise<boolean> {
  return (await stat(join(dir, FILES.stopRequested)).catch(() => null)) !== null
}

/** Creates the task's directory; false when it already exists (task ids are never reused). */
export async function createTaskDir (stateDir: string, task: string): Promise<boolean> {
  await mkdir(tasksDir(stateDir), { recursive: true, mode: 0o700 })
  try {
    await mkdir(taskDir(stateDir, task), { mode: 0o700 })
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  }
}

/** Task ids that have a directory (entries that cannot be task ids are not ours and are left alone). */
export async function listTaskIds (stateDir: string): Promise<string[]> {
  const entries = await readdir(tasksDir(stateDir), { withFileTypes: true }).catch(() => [])
  return entries.filter((e) => e.isDirectory() && TASK_ID_PATTERN.test(e.name)).map((e) => e.name).sort()
}
