/**
 * The task runtime: starts each task as a process chain in the task's
 * network namespace (see launch.ts), watches it, stops it, and re-adopts
 * what a previous netd left running.
 *
 * The state directory, not this object, is the truth (see task-dir.ts):
 * the supervisor shell records how a task ended even when no netd runs, so a
 * new TaskRuntime over the same directory learns everything by reading it
 * and checking pids against /proc (pid + start time). Ends are noticed from
 * the supervisor's exit (for tasks this process started), from an inotify
 * watch on the task's directory, and from a slow poll as the fallback.
 *
 * Invariants:
 * - a task id is started at most once: its directory exists from before the spawn until remove();
 * - nothing is signalled unless its pid and start time match the record;
 * - once the chain has reported an end, nothing of the task may keep running: a PID 1 that
 *   outlived its waiter (someone killed the waiter) is killed.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { watch, type FSWatcher } from 'node:fs'
import { lstat, mkdir, open, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { z } from 'zod'
import { TaskRuntimeError } from './errors.ts'
import { execTargetOf, type ExecTarget, type ExecTargetOptions } from './exec.ts'
import { DEFAULT_IMAGES_DIR, imageRoot, resolveImage } from './image.ts'
import { NO_ROOT_MOUNTS, encodeArgs, execChain, planLaunch, supervisorArgv, taskSettings, type RootMounts, type Tools } from './launch.ts'
import { readLogs, rotateLog, logPath, stderrTail, type LogChunk, type LogReadOptions } from './logs.ts'
import { childrenOf, cmdline, identify, isAlive, namespacePids, readStat, sendSignal, type ProcessIdentity } from './proc.ts'
import { resolveTask } from './resolve-task.ts'
import { findExecutable, isDirectoryInRoot, readRootFile, resolveInRoot } from './root-fs.ts'
import { DEFAULT_PATH, parseTaskProcessSpec, type TaskProcessSpecInput } from './spec.ts'
import { endedStatus, isFinal, runningStatus, startingStatus, type TaskStatus } from './status.ts'
import {
  FILES, createTaskDir, isStopRequested, listTaskIds, markStopRequested, readExitStatus, readRecord,
  readSupervisorPid, taskDir, writeRecord, type TaskRecord
} from './task-dir.ts'
import { findTools, TOOL_PATH } from './tools.ts'
import { parseGroup, parsePasswd, resolveUser } from './users.ts'

const MiB = 1024 * 1024

const optionsSchema = z.strictObject({
  stateDir: z.string().min(1),
  imagesDir: z.string().min(1).default(DEFAULT_IMAGES_DIR),
  /** A log file larger than this is rotated to `.1` (checked every logCheckMs). */
  logMaxBytes: z.int().min(4096).default(10 * MiB),
  logCheckMs: z.int().min(50).default(10_000),
  /** The fallback check of running tasks, for ends no event reported. */
  pollMs: z.int().min(10).default(1000),
  /** How long start() waits for the task's PID 1 before it gives up and kills the chain. */
  startTimeoutMs: z.int().min(100).default(10_000)
})

export type TaskRuntimeOptions = z.input<typeof optionsSchema> & {
  readonly log: Logger
  /** Program paths; found in the system directories when absent. */
  readonly tools?: Tools
}

export type TaskStatusListener = (status: TaskStatus) => void

export interface CloseOptions {
  /** Stop every running task (netd --cleanup); otherwise they keep running for the next netd. */
  readonly stopTasks: boolean
  readonly graceMs?: number
}

export const DEFAULT_GRACE_MS = 10_000
/** After SIGKILL, how long the chain gets to report the end. */
const KILL_WAIT_MS = 5000

interface Entry {
  readonly task: string
  readonly dir: string
  record: TaskRecord
  status: TaskStatus
  child: ChildProcess | null
  watcher: FSWatcher | null
  readonly ended: Promise<TaskStatus>
  readonly resolveEnded: (status: TaskStatus) => void
  checking: Promise<void> | null
  checkAgain: boolean
  /** True while adopt() builds the entry: its first status is returned, not announced. */
  quiet: boolean
  /** True from start()'s creation of the entry until the supervisor is recorded: no conclusion can be drawn before. */
  spawning: boolean
  warnedUnsupervised: boolean
}

function deferred (): { promise: Promise<TaskStatus>, resolve: (s: TaskStatus) => void } {
  let resolve!: (s: TaskStatus) => void
  const promise = new Promise<TaskStatus>((r) => { resolve = r })
  return { promise, resolve }
}

export class TaskRuntime {
  readonly #options: Readonly<z.output<typeof optionsSchema>>
  readonly #log: Logger
  readonly #entries = new Map<string, Entry>()
  readonly #listeners = new Set<TaskStatusListener>()
  #tools: Promise<Tools> | null
  readonly #timers: NodeJS.Timeout[] = []
  #closing = false
  #closed = false

  constructor (options: TaskRuntimeOptions) {
    const { log, tools, ...rest } = options
    const parsed = optionsSchema.safeParse(rest)
    if (!parsed.success) {
      throw new TaskRuntimeError('NETD_ERR_TASK_SPEC', `invalid task runtime options: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
    }
    this.#options = Object.freeze(parsed.data)
    this.#log = log.child({ component: 'runtime' })
    this.#tools = tools === undefined ? null : Promise.resolve(tools)
    const poll = setInterval(() => { for (const entry of this.#entries.values()) this.#refresh(entry) }, this.#options.pollMs)
    const rotate = setInterval(() => { this.rotateLogs().catch((error: unknown) => this.#log.warn({ err: error }, 'log rotation failed')) }, this.#options.logCheckMs)
    poll.unref()
    rotate.unref()
    this.#timers.push(poll, rotate)
  }

  get stateDir (): string {
    return this.#options.stateDir
  }

  /** Listens to state transitions (starting, running, and the end). Returns the unsubscribe. */
  onChange (listener: TaskStatusListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  status (task: string): TaskStatus | undefined {
    return this.#entries.get(task)?.status
  }

  statuses (): Map<string, TaskStatus> {
    return new Map([...this.#entries].map(([task, entry]) => [task, entry.status]))
  }

  /**
   * Takes over the tasks in the state directory: running ones are watched again, ended ones (also
   * those that ended while no netd ran) get their final status. Returns every task's status;
   * adopting announces nothing to onChange, later transitions are announced.
   */
  async adopt (): Promise<Map<string, TaskStatus>> {
    this.#assertOpen()
    const adopted = new Map<string, TaskStatus>()
    for (const task of await listTaskIds(this.#options.stateDir)) {
      if (this.#entries.has(task)) continue
      const dir = taskDir(this.#options.stateDir, task)
      let record: TaskRecord | null
      try {
        record = await readRecord(dir)
      } catch (error) {
        this.#log.warn({ task, err: error }, 'task record unreadable: task left alone')
        continue
      }
      if (record === null) {
        this.#log.warn({ task }, 'task directory without a record (a start interrupted before its spawn): left alone')
        continue
      }
      const id = { task, name: record.spec.name }
      const status = record.init === null ? startingStatus(id) : runningStatus(id, record.init.pid, record.startedAt ?? record.createdAt)
      const entry = this.#newEntry(task, dir, record, status)
      entry.quiet = true
      await this.#refresh(entry)
      entry.quiet = false
      if (!isFinal(entry.status.state)) this.#watch(entry)
      adopted.set(task, entry.status)
      this.#log.info({ task, state: entry.status.state, pid: entry.status.pid }, 'task adopted')
    }
    return adopted
  }

  /**
   * Starts a task. Checks first (spec, image, network namespace, user, workdir, command) and throws
   * a TaskRuntimeError without starting anything when one fails: the task is `rejected`. Otherwise
   * resolves once the task runs (or has already ended: a command that fails at once is `failed`).
   */
  async start (input: TaskProcessSpecInput): Promise<TaskStatus> {
    this.#assertOpen()
    const spec = parseTaskProcessSpec(input)
    const log = this.#log.child({ task: spec.task })
    if (this.#entries.has(spec.task)) throw new TaskRuntimeError('NETD_ERR_TASK_EXISTS', `task ${spec.task} exists already`)
    const tools = await this.#getTools()

    const image = await resolveImage(this.#options.imagesDir, spec.image)
    const settings = taskSettings(spec, image)
    const root = imageRoot(image)
    if ((await stat(join('/run/netns', spec.netns)).catch(() => null)) === null) {
      throw new TaskRuntimeError('NETD_ERR_TASK_NETNS', `task ${spec.task}: network namespace ${spec.netns} does not exist`)
    }
    const user = resolveUser(settings.user, parsePasswd(await readRootFile(root, '/etc/passwd')), parseGroup(await readRootFile(root, '/etc/group')))
    if (!(await isDirectoryInRoot(root, settings.workdir))) {
      throw new TaskRuntimeError('NETD_ERR_TASK_WORKDIR', `task ${spec.task}: working directory ${settings.workdir} is not a directory in image "${spec.image}"`)
    }
    const mounts = image.kind === 'rootfs' ? await prepareRootMounts(image.rootfs, log) : NO_ROOT_MOUNTS
    const plan = planLaunch(spec, image, settings, user, mounts)
    const program = plan.argv[0] as string
    if ((await findExecutable(root, program, plan.env.PATH ?? DEFAULT_PATH, plan.workdir)) === null) {
      throw new TaskRuntimeError('NETD_ERR_TASK_COMMAND_NOT_FOUND', `task ${spec.task}: "${program}" is not an executable file in image "${spec.image}" (PATH=${plan.env.PATH ?? DEFAULT_PATH})`)
    }

    if (!(await createTaskDir(this.#options.stateDir, spec.task))) {
      throw new TaskRuntimeError('NETD_ERR_TASK_EXISTS', `task ${spec.task} has a state directory already: remove it first`)
    }
    const dir = taskDir(this.#options.stateDir, spec.task)
    const record: TaskRecord = { version: 1, spec, plan, supervisor: null, init: null, createdAt: new Date().toISOString(), startedAt: null }
    await writeRecord(dir, record)
    const entry = this.#newEntry(spec.task, dir, record, startingStatus({ task: spec.task, name: spec.name }))
    // From the entry's creation, not just the spawn: a poll between the two would find no supervisor
    // yet, conclude the task lost, and leave the process it is about to start unwatched.
    entry.spawning = true
    this.#emit(entry.status)

    const argsFile = join(dir, FILES.launchArgs)
    try {
      await writeFile(argsFile, encodeArgs(execChain(plan, tools)), { mode: 0o600 })
    } catch (error) {
      entry.spawning = false
      throw error
    }
    const argv = supervisorArgv(plan, dir, argsFile, tools)
    let child: ChildProcess
    try {
      child = await spawnDetached(argv, dir)
    } catch (error) {
      entry.spawning = false
      log.error({ err: error }, 'task supervisor could not be spawned')
      this.#end(entry, endedStatus(idOf(entry), { exitCode: null, finishedAt: new Date().toISOString(), stopRequested: false, startedAt: null, lost: `the supervisor could not be spawned: ${(error as Error).message}` }))
      return entry.status
    }
    entry.child = child
    child.once('exit', () => { entry.child = null; void this.#refresh(entry) })
    const supervisor = await identify(child.pid as number)
    if (supervisor !== null) await this.#updateRecord(entry, { supervisor })
    entry.spawning = false
    this.#watch(entry)

    const deadline = Date.now() + this.#options.startTimeoutMs
    while (entry.status.state === 'starting' && Date.now() < deadline) {
      await this.#refresh(entry)
      if (entry.status.state === 'starting') await sleep(10)
    }
    if (entry.status.state === 'starting') {
      log.error({ timeoutMs: this.#options.startTimeoutMs }, 'task did not come up: its process chain is killed')
      if (supervisor !== null && (await isAlive(supervisor))) sendSignal(-supervisor.pid, 'SIGKILL')
      const status = await this.#waitEnded(entry, KILL_WAIT_MS)
      if (status === null) {
        this.#end(entry, endedStatus(idOf(entry), { exitCode: null, finishedAt: new Date().toISOString(), stopRequested: false, startedAt: null, lost: 'the task did not start in time' }))
      }
    }
    log.info({ state: entry.status.state, pid: entry.status.pid, image: spec.image, rootfs: plan.rootfs }, 'task started')
    return entry.status
  }

  /**
   * Stops a task: SIGTERM to its process group (and to its PID 1, should it have left the group),
   * SIGKILL to its PID 1 after graceMs, which ends its whole PID namespace. The end is `shutdown`.
   */
  async stop (task: string, graceMs: number = DEFAULT_GRACE_MS): Promise<TaskStatus> {
    this.#assertNotClosed()
    const entry = this.#entry(task)
    await this.#refresh(entry)
    if (isFinal(entry.status.state)) return entry.status
    const log = this.#log.child({ task })
    await markStopRequested(entry.dir)
    const { supervisor, init } = entry.record
    const group = await this.#groupOf(entry)
    if (group !== null) sendSignal(-group, 'SIGTERM')
    if (await isAlive(init)) sendSignal((init as ProcessIdentity).pid, 'SIGTERM')

    let status = await this.#waitEnded(entry, graceMs)
    if (status !== null) return status
    log.info({ graceMs }, 'task did not stop in time: SIGKILL')
    if (await isAlive(init)) sendSignal((init as ProcessIdentity).pid, 'SIGKILL')
    else if (group !== null) sendSignal(-group, 'SIGKILL')
    status = await this.#waitEnded(entry, KILL_WAIT_MS)
    if (status !== null) return status
    // The chain itself does not report: kill all of it, and take the end as it is.
    const lastGroup = await this.#groupOf(entry)
    if (lastGroup !== null) sendSignal(-lastGroup, 'SIGKILL')
    status = await this.#waitEnded(entry, KILL_WAIT_MS)
    if (status !== null) return status
    throw new TaskRuntimeError('NETD_ERR_TASK_STATE', `task ${task} did not stop (supervisor ${supervisor?.pid ?? '?'}, PID 1 ${init?.pid ?? '?'})`)
  }

  /** The task's output; see logs.ts. Following ends when the task has ended and its output is read. */
  logs (task: string, options: LogReadOptions = {}): AsyncGenerator<LogChunk> {
    this.#assertNotClosed()
    const entry = this.#entry(task)
    return readLogs(entry.dir, options, () => isFinal(entry.status.state))
  }

  /** The target for execInTask: TASK is an id, a unique id prefix, or a name such as `web.2`. */
  async execTarget (query: string, options: ExecTargetOptions = {}): Promise<ExecTarget> {
    this.#assertNotClosed()
    const candidates = [...this.#entries.values()].map((e) => ({ id: e.task, name: e.record.spec.name, running: e.status.state === 'running', entry: e }))
    const { entry } = resolveTask(query, candidates)
    await this.#refresh(entry)
    if (entry.status.state !== 'running') throw new TaskRuntimeError('NETD_ERR_TASK_STATE', `task ${entry.record.spec.name} is ${entry.status.state}, not running`)
    return execTargetOf(entry.record, options)
  }

  /** Rotates the log files of running tasks that outgrew logMaxBytes (done every logCheckMs anyway). */
  async rotateLogs (): Promise<void> {
    for (const entry of this.#entries.values()) {
      if (isFinal(entry.status.state)) continue
      for (const stream of ['stdout', 'stderr'] as const) {
        if (await rotateLog(logPath(entry.dir, stream), this.#options.logMaxBytes)) this.#log.debug({ task: entry.task, stream }, 'task log rotated')
      }
    }
  }

  /** Removes an ended task's directory (its logs and record). */
  async remove (task: string): Promise<void> {
    this.#assertNotClosed()
    const entry = this.#entry(task)
    await this.#refresh(entry)
    if (!isFinal(entry.status.state)) throw new TaskRuntimeError('NETD_ERR_TASK_STATE', `task ${task} is ${entry.status.state}: stop it before removing it`)
    entry.watcher?.close()
    this.#entries.delete(task)
    await rm(entry.dir, { recursive: true, force: true })
  }

  /**
   * Stops watching. With stopTasks, stops every task first (in parallel, graceMs each); without,
   * tasks keep running and the next TaskRuntime over this state directory adopts them.
   */
  async close (options: CloseOptions): Promise<void> {
    if (this.#closed) return
    this.#closing = true
    if (options.stopTasks) {
      const running = [...this.#entries.values()].filter((e) => !isFinal(e.status.state))
      const results = await Promise.allSettled(running.map((e) => this.stop(e.task, options.graceMs ?? DEFAULT_GRACE_MS)))
      for (const [i, result] of results.entries()) {
        if (result.status === 'rejected') this.#log.error({ task: running[i]?.task, err: result.reason }, 'task could not be stopped')
      }
    }
    this.#closed = true
    for (const timer of this.#timers) clearInterval(timer)
    for (const entry of this.#entries.values()) {
      entry.watcher?.close()
      entry.watcher = null
      entry.child?.removeAllListeners('exit')
    }
    this.#listeners.clear()
  }

  #assertOpen (): void {
    if (this.#closing || this.#closed) throw new TaskRuntimeError('NETD_ERR_TASK_CLOSED', 'the task runtime is closed')
  }

  /** Stopping stays possible while close() stops every task. */
  #assertNotClosed (): void {
    if (this.#closed) throw new TaskRuntimeError('NETD_ERR_TASK_CLOSED', 'the task runtime is closed')
  }

  #entry (task: string): Entry {
    const entry = this.#entries.get(task)
    if (entry === undefined) throw new TaskRuntimeError('NETD_ERR_TASK_NOT_FOUND', `no task ${task} on this node`)
    return entry
  }

  #getTools (): Promise<Tools> {
    this.#tools ??= findTools().catch((error: unknown) => { this.#tools = null; throw error })
    return this.#tools
  }

  #newEntry (task: string, dir: string, record: TaskRecord, status: TaskStatus): Entry {
    const { promise, resolve } = deferred()
    const entry: Entry = { task, dir, record, status, child: null, watcher: null, ended: promise, resolveEnded: resolve, checking: null, checkAgain: false, quiet: false, spawning: false, warnedUnsupervised: false }
    this.#entries.set(task, entry)
    return entry
  }

  #emit (status: TaskStatus): void {
    for (const listener of this.#listeners) {
      try {
        listener(status)
      } catch (error) {
        this.#log.error({ task: status.task, err: error }, 'task status listener threw')
      }
    }
  }

  #setStatus (entry: Entry, status: TaskStatus): void {
    const changed = status.state !== entry.status.state
    entry.status = status
    if (changed && !entry.quiet && !this.#closed) this.#emit(status)
  }

  #end (entry: Entry, status: TaskStatus): void {
    this.#setStatus(entry, status)
    entry.watcher?.close()
    entry.watcher = null
    entry.resolveEnded(status)
    this.#log.info({ task: entry.task, state: status.state, exitCode: status.exitCode, error: status.error }, 'task ended')
  }

  async #updateRecord (entry: Entry, change: Partial<TaskRecord>): Promise<void> {
    entry.record = { ...entry.record, ...change }
    await writeRecord(entry.dir, entry.record)
  }

  #watch (entry: Entry): void {
    if (entry.watcher !== null || this.#closed) return
    try {
      entry.watcher = watch(entry.dir, (_event, file) => {
        if (file === FILES.exitStatus || file === FILES.supervisorPid) void this.#refresh(entry)
      })
      entry.watcher.on('error', () => { entry.watcher?.close(); entry.watcher = null })
      entry.watcher.unref()
    } catch (error) {
      // The poll still notices the end, only later.
      this.#log.warn({ task: entry.task, err: error }, 'cannot watch the task directory')
    }
  }

  /** Runs #check, one at a time per task; a request during a check runs one more check after it. */
  #refresh (entry: Entry): Promise<void> {
    if (isFinal(entry.status.state) || this.#closed) return Promise.resolve()
    if (entry.checking !== null) {
      entry.checkAgain = true
      return entry.checking
    }
    const run = async (): Promise<void> => {
      do {
        entry.checkAgain = false
        try {
          await this.#check(entry)
        } catch (error) {
          this.#log.warn({ task: entry.task, err: error }, 'task check failed')
        }
      } while (entry.checkAgain && !isFinal(entry.status.state))
      entry.checking = null
    }
    entry.checking = run()
    return entry.checking
  }

  /** Looks at the task directory and /proc, and moves the status on. */
  async #check (entry: Entry): Promise<void> {
    if (entry.spawning) return
    const exit = await readExitStatus(entry.dir)
    if (exit !== null) return this.#finish(entry, exit.code, exit.at.toISOString())

    let supervisor = entry.record.supervisor
    if (supervisor === null) {
      // netd stopped between the spawn and the record: the supervisor wrote its own pid.
      const pid = await readSupervisorPid(entry.dir)
      const found = pid === null ? null : await identify(pid)
      if (found !== null && (await cmdline(pid as number)).includes(entry.dir)) {
        supervisor = found
        await this.#updateRecord(entry, { supervisor })
      }
    }
    const supervised = await isAlive(supervisor)
    if (supervised && entry.record.init === null && supervisor !== null) {
      const init = await findTaskInit(supervisor.pid)
      if (init !== null) await this.#updateRecord(entry, { init, startedAt: new Date().toISOString() })
    }
    const init = entry.record.init
    if (await isAlive(init)) {
      if (!supervised && !entry.warnedUnsupervised) {
        entry.warnedUnsupervised = true
        this.#log.warn({ task: entry.task, pid: init?.pid }, 'task runs without its supervisor: its exit status will be lost')
      }
      if (entry.status.state !== 'running') {
        this.#setStatus(entry, runningStatus(idOf(entry), (init as ProcessIdentity).pid, entry.record.startedAt ?? new Date().toISOString()))
      }
      return
    }
    if (supervised) return // still starting, or between PID 1's end and the status file
    const late = await readExitStatus(entry.dir)
    if (late !== null) return this.#finish(entry, late.code, late.at.toISOString())
    return this.#finish(entry, null, null, supervisor === null ? 'the supervisor never recorded itself' : 'the supervisor ended without recording it')
  }

  async #finish (entry: Entry, exitCode: number | null, finishedAt: string | null, lost?: string): Promise<void> {
    if (isFinal(entry.status.state)) return
    const init = entry.record.init
    if (await isAlive(init)) {
      this.#log.warn({ task: entry.task, pid: init?.pid }, 'task PID 1 outlived its supervisor chain: killed')
      sendSignal((init as ProcessIdentity).pid, 'SIGKILL')
    }
    // The status file is written just before the supervisor exits: let it go, so that an ended
    // task has no process left (close({ stopTasks: true }) promises exactly that).
    const supervisor = entry.record.supervisor
    for (let i = 0; i < 100 && (await isAlive(supervisor)); i++) await sleep(10)
    const tail = exitCode !== null && exitCode >= 125 && exitCode <= 127 ? await stderrTail(entry.dir) : undefined
    this.#end(entry, endedStatus(idOf(entry), {
      exitCode,
      finishedAt,
      stopRequested: await isStopRequested(entry.dir),
      startedAt: entry.record.startedAt,
      ...(lost === undefined ? {} : { lost }),
      ...(tail === undefined ? {} : { stderrTail: tail })
    }))
  }

  /** The chain's process group (the supervisor's pid), while a member we know is alive. */
  async #groupOf (entry: Entry): Promise<number | null> {
    const { supervisor, init } = entry.record
    if (await isAlive(supervisor)) return (supervisor as ProcessIdentity).pid
    if (init !== null && (await isAlive(init))) {
      const stat = await readStat(init.pid)
      if (stat !== null && supervisor !== null && stat.pgrp === supervisor.pid) return stat.pgrp
    }
    return null
  }

  async #waitEnded (entry: Entry, ms: number): Promise<TaskStatus | null> {
    const deadline = Date.now() + ms
    for (;;) {
      await this.#refresh(entry)
      if (isFinal(entry.status.state)) return entry.status
      const left = deadline - Date.now()
      if (left <= 0) return null
      await Promise.race([entry.ended, sleep(Math.min(50, left))])
    }
  }

}

function idOf (entry: Entry): { task: string, name: string } {
  return { task: entry.task, name: entry.record.spec.name }
}

/**
 * Spawns the supervisor in a session of its own (setsid), stdout and stderr appended to the
 * task's log files, stdin /dev/null, a fixed environment, and does not wait for it.
 */
async function spawnDetached (argv: readonly string[], dir: string): Promise<ChildProcess> {
  const out = await open(logPath(dir, 'stdout'), 'a', 0o640)
  const err = await open(logPath(dir, 'stderr'), 'a', 0o640)
  try {
    const child = spawn(argv[0] as string, argv.slice(1), {
      detached: true,
      stdio: ['ignore', out.fd, err.fd],
      env: { PATH: TOOL_PATH.join(':'), LC_ALL: 'C' },
      cwd: '/'
    })
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve)
      child.once('error', reject)
    })
    child.unref()
    return child
  } finally {
    await out.close()
    await err.close()
  }
}

/**
 * The task's PID 1 as the host sees it: the supervisor's child is the waiter (`ip netns exec`
 * having exec'd unshare and then sh), and the waiter's child is PID 1 of the new namespace.
 */
async function findTaskInit (supervisorPid: number): Promise<ProcessIdentity | null> {
  for (const waiter of await childrenOf(supervisorPid)) {
    for (const pid of await childrenOf(waiter)) {
      const pids = await namespacePids(pid)
      if (pids !== null && pids.length >= 2 && pids[pids.length - 1] === 1) return identify(pid)
    }
  }
  return null
}

/**
 * The mount points a rootfs image needs, resolved inside it (a symlinked /etc/resolv.conf is
 * followed within the image, never onto the host). /proc and an empty /etc/resolv.conf are
 * created when missing; /dev and /sys are mounted only where the image has the directory.
 */
async function prepareRootMounts (rootfs: string, log: Logger): Promise<RootMounts> {
  const dirIn = async (path: string): Promise<string> => {
    const host = await resolveInRoot(rootfs, path)
    return host !== null && (await stat(host).catch(() => null))?.isDirectory() === true ? host : ''
  }
  let proc = await dirIn('/proc')
  if (proc === '') {
    if ((await lstat(join(rootfs, 'proc')).catch(() => null)) !== null) {
      throw new TaskRuntimeError('NETD_ERR_TASK_IMAGE', `image rootfs ${rootfs}: /proc exists and is not a directory`)
    }
    await mkdir(join(rootfs, 'proc'), { mode: 0o555 })
    proc = join(rootfs, 'proc')
  }
  let resolvConf = ''
  const etc = await dirIn('/etc')
  if (etc !== '') {
    const file = await resolveInRoot(rootfs, '/etc/resolv.conf')
    if (file !== null && (await stat(file).catch(() => null))?.isFile() === true) {
      resolvConf = file
    } else if ((await lstat(join(etc, 'resolv.conf')).catch(() => null)) === null) {
      await writeFile(join(etc, 'resolv.conf'), '', { flag: 'wx', mode: 0o644 })
      resolvConf = join(etc, 'resolv.conf')
    } else {
      log.warn({ rootfs }, 'the image\'s /etc/resolv.conf is a dangling link: the task gets no resolver configuration')
    }
  }
  return { proc, dev: await dirIn('/dev'), sys: await dirIn('/sys'), resolvConf }
}
