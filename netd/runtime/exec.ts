/**
 * `netd exec TASK -- CMD…`: runs a command inside a running task's
 * namespaces (network, PID, UTS, IPC, mount), in its root, as its user, with
 * its environment, in its working directory — what `docker exec` is to a
 * container. stdin, stdout and stderr are passed through and the exit code
 * is returned (128+N when the command was killed by signal N).
 *
 * Two ways to find the target: TaskRuntime.execTarget() inside netd, or
 * findExecTarget() straight from the state directory, for a CLI on the same
 * node that has no daemon to ask. Either way the task's PID 1 is checked by
 * pid and start time just before entering it, so a recycled pid is never
 * entered.
 */
import { spawn } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { constants } from 'node:os'
import { TaskRuntimeError } from './errors.ts'
import { execArgv, type ExecIdentity, type Tools } from './launch.ts'
import { isAlive, type ProcessIdentity } from './proc.ts'
import { resolveTask } from './resolve-task.ts'
import { readRootFile } from './root-fs.ts'
import { listTaskIds, readExitStatus, readRecord, taskDir, type TaskRecord } from './task-dir.ts'
import { findTools } from './tools.ts'
import { parseGroup, parsePasswd, resolveUser } from './users.ts'
import { userSchema, workdirSchema, envSchema } from './spec.ts'

export interface ExecTarget {
  readonly task: string
  readonly name: string
  /** The task's PID 1, as the host sees it. */
  readonly init: ProcessIdentity
  readonly env: Readonly<Record<string, string>>
  readonly identity: ExecIdentity
}

export interface ExecTargetOptions {
  /** Run as this user instead of the task's (resolved in the task's root). */
  readonly user?: string
  /** Working directory inside the task instead of the task's own. */
  readonly workdir?: string
}

/** The exec target of a task record (NETD_ERR_TASK_STATE when the task never got a PID 1). */
export async function execTargetOf (record: TaskRecord, options: ExecTargetOptions = {}): Promise<ExecTarget> {
  const { spec, plan } = record
  if (record.init === null) throw new TaskRuntimeError('NETD_ERR_TASK_STATE', `task ${spec.name} is not running`)
  let identity: ExecIdentity = { uid: plan.uid, gid: plan.gid, groups: plan.groups, workdir: plan.workdir }
  if (options.user !== undefined) {
    const user = userSchema.safeParse(options.user)
    if (!user.success) throw new TaskRuntimeError('NETD_ERR_TASK_USER', `invalid user "${options.user}": must be NAME, UID, NAME:GROUP or UID:GID`)
    const root = plan.rootfs ?? '/'
    const resolved = resolveUser(user.data, parsePasswd(await readRootFile(root, '/etc/passwd')), parseGroup(await readRootFile(root, '/etc/group')))
    identity = { ...identity, uid: resolved.uid, gid: resolved.gid, groups: resolved.groups }
  }
  if (options.workdir !== undefined) {
    if (!workdirSchema.safeParse(options.workdir).success) throw new TaskRuntimeError('NETD_ERR_TASK_WORKDIR', `invalid workdir "${options.workdir}": must be an absolute path`)
    identity = { ...identity, workdir: options.workdir }
  }
  return { task: spec.task, name: spec.name, init: record.init, env: plan.env, identity }
}

/**
 * Resolves TASK (an id, a unique id prefix, or a name such as `web.2`) among the tasks in the
 * state directory and returns its exec target. A task counts as running when it has no exit
 * status and its PID 1 is alive.
 */
export async function findExecTarget (stateDir: string, query: string, options: ExecTargetOptions = {}): Promise<ExecTarget> {
  const candidates: Array<{ id: string, name: string, running: boolean, record: TaskRecord }> = []
  for (const id of await listTaskIds(stateDir)) {
    const dir = taskDir(stateDir, id)
    const record = await readRecord(dir).catch(() => null)
    if (record === null) continue
    const ended = (await readExitStatus(dir)) !== null
    const running = !ended && (await isAlive(record.init))
    candidates.push({ id, name: record.spec.name, running, record })
  }
  const found = resolveTask(query, candidates)
  if (!found.running) throw new TaskRuntimeError('NETD_ERR_TASK_STATE', `task ${found.name} is not running`)
  return execTargetOf(found.record, options)
}

export type StdinOption = 'inherit' | 'ignore' | Readable
export type OutputOption = 'inherit' | 'ignore' | Writable

export interface ExecOptions {
  readonly stdin?: StdinOption
  readonly stdout?: OutputOption
  readonly stderr?: OutputOption
  /** Variables over the task's environment. */
  readonly env?: Readonly<Record<string, string>>
  readonly tools?: Tools
}

export interface ExecResult {
  /** The command's exit code; 128+N when signal N killed it. */
  readonly exitCode: number
  readonly signal: NodeJS.Signals | null
}

let defaultTools: Promise<Tools> | null = null

function toolsFor (options: ExecOptions): Promise<Tools> {
  if (options.tools !== undefined) return Promise.resolve(options.tools)
  defaultTools ??= findTools().catch((error: unknown) => { defaultTools = null; throw error })
  return defaultTools
}

function stdioOf (option: StdinOption | OutputOption | undefined): 'inherit' | 'ignore' | 'pipe' {
  if (option === undefined || option === 'ignore') return 'ignore'
  if (option === 'inherit') return 'inherit'
  return 'pipe'
}

export async function execInTask (target: ExecTarget, argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  if (argv.length === 0 || argv[0] === '') throw new TaskRuntimeError('NETD_ERR_TASK_SPEC', 'exec needs a command')
  if (argv.some((a) => a.includes('\0'))) throw new TaskRuntimeError('NETD_ERR_TASK_SPEC', 'exec arguments must not contain NUL bytes')
  const extraEnv = envSchema.safeParse(options.env ?? {})
  if (!extraEnv.success) throw new TaskRuntimeError('NETD_ERR_TASK_SPEC', `invalid exec environment: ${extraEnv.error.issues.map((i) => i.message).join('; ')}`)
  const tools = await toolsFor(options)
  if (!(await isAlive(target.init))) throw new TaskRuntimeError('NETD_ERR_TASK_STATE', `task ${target.name} is not running`)

  const command = execArgv(target.init.pid, target.identity, argv, tools)
  const child = spawn(command[0] as string, command.slice(1), {
    stdio: [stdioOf(options.stdin), stdioOf(options.stdout), stdioOf(options.stderr)],
    env: { ...target.env, ...extraEnv.data },
    cwd: '/'
  })
  const { stdin, stdout, stderr } = options
  if (stdin !== undefined && typeof stdin !== 'string' && child.stdin !== null) {
    // The command may exit without reading all of its input: EPIPE is its business, not ours.
    child.stdin.on('error', () => undefined)
    stdin.pipe(child.stdin)
  }
  if (stdout !== undefined && typeof stdout !== 'string' && child.stdout !== null) child.stdout.pipe(stdout, { end: false })
  if (stderr !== undefined && typeof stderr !== 'string' && child.stderr !== null) child.stderr.pipe(stderr, { end: false })

  return new Promise((resolve, reject) => {
    child.once('error', (error) => reject(new TaskRuntimeError('NETD_ERR_TASK_START', `exec in task ${target.name}: ${error.message}`)))
    child.once('close', (code, signal) => {
      if (stdin !== undefined && typeof stdin !== 'string' && child.stdin !== null) stdin.unpipe(child.stdin)
      if (signal !== null) resolve({ exitCode: 128 + (constants.signals[signal] ?? 0), signal })
      else resolve({ exitCode: code ?? 1, signal: null })
    })
  })
}

/**
 * The whole of `netd exec` for a CLI on the node: find the task in the state directory, run the
 * command with this process's stdio, return the exit code to exit with.
 */
export async function netdExec (stateDir: string, query: string, argv: readonly string[], options: ExecTargetOptions & { env?: Readonly<Record<string, string>> } = {}): Promise<number> {
  const target = await findExecTarget(stateDir, query, options)
  const result = await execInTask(target, argv, { stdin: 'inherit', stdout: 'inherit', stderr: 'inherit', ...(options.env === undefined ? {} : { env: options.env }) })
  return result.exitCode
}
