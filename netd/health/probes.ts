/**
 * One health probe of one task, run for real: the I/O edge of the health
 * monitor. A probe never throws; whatever happens becomes a HealthResult
 * (exit code 0 healthy, 1 unhealthy, -1 could not run or timed out).
 *
 *   cmd   `/bin/sh -c COMMAND` in all of the task's namespaces, in its root, as its user, with
 *         its environment — the chain of `netd exec` (execArgv). Docker's CMD-SHELL.
 *   tcp   a connect() to the task's address from the task's network namespace only (bash's
 *         /dev/tcp under `nsenter --net`): the check sees what a peer on the overlay sees,
 *         through the task's own firewall, and nothing of the host.
 *   http  a GET with curl from the same place; 2xx and 3xx are healthy (kubelet's rule),
 *         redirects are not followed.
 *
 * The argv builders are pure and exported; only runProbe spawns. User data reaches a shell only
 * in the cmd check, whose command is a shell command by definition: addresses, ports and paths
 * are passed as arguments, never spliced into a script.
 */
import type { ExecTarget } from '../runtime/exec.ts'
import { isAlive } from '../runtime/proc.ts'
import { execArgv, type Tools } from '../runtime/launch.ts'
import { findTools, TOOL_PATH, which } from '../runtime/tools.ts'
import { capture, type CaptureOutcome } from './capture.ts'
import { EXIT_HEALTHY, EXIT_PROBE_ERROR, EXIT_UNHEALTHY } from './health-machine.ts'
import type { Healthcheck, HealthResult } from './health-spec.ts'
import { BoundedOutput } from './output.ts'
import { netnsPath, type ProbeTarget } from './probe-target.ts'

/** What runProbe needs of a check. */
export type ProbeCheck = Pick<Healthcheck, 'test' | 'timeout'>

export interface ProbeTools {
  /** The runtime's tools (setpriv, nsenter…), for cmd checks. */
  readonly runtime: Tools
  readonly bash: string
  readonly curl: string
}

/**
 * tcp and http probes run with this environment and nothing of netd's: no proxy variables, no
 * locale that changes curl's messages.
 */
export const PROBE_ENV: Readonly<Record<string, string>> = Object.freeze({ PATH: TOOL_PATH.join(':'), LC_ALL: 'C' })

/** The shell a cmd check runs in, inside the task's root (Docker's CMD-SHELL). */
export const CHECK_SHELL = '/bin/sh'

/**
 * Opens fd 3 on /dev/tcp/$1/$2, which makes bash connect(); the connection is closed as bash
 * exits. The address and port are arguments, not part of the script.
 */
export const TCP_CONNECT_SCRIPT = 'exec 3<>"/dev/tcp/$1/$2"'

/** curl's exit status when --max-time ran out. */
const CURL_TIMED_OUT = 28

async function probeTool (name: string, dirs: readonly string[]): Promise<string> {
  const path = await which(name, dirs)
  if (path === null) throw new Error(`health probes need ${name} in ${dirs.join(':')}`)
  return path
}

/** Finds the tools by absolute path, as the runtime does: netd's PATH never decides what runs as root. */
export async function findProbeTools (dirs: readonly string[] = TOOL_PATH): Promise<ProbeTools> {
  const [runtime, bash, curl] = await Promise.all([findTools(dirs), probeTool('bash', dirs), probeTool('curl', dirs)])
  return Object.freeze({ runtime, bash, curl })
}

/** `/bin/sh -c COMMAND` as the task's user in the task's namespaces and root. */
export function cmdProbeArgv (target: ExecTarget, command: string, tools: ProbeTools): string[] {
  return execArgv(target.init.pid, target.identity, [CHECK_SHELL, '-c', command], tools.runtime)
}

export function tcpProbeArgv (netns: string, ip: string, port: number, tools: ProbeTools): string[] {
  return [tools.runtime.nsenter, `--net=${netnsPath(netns)}`, '--', tools.bash, '-c', TCP_CONNECT_SCRIPT, 'weft-health-tcp', ip, String(port)]
}

/** ADDRESS:PORT, an IPv6 address bracketed. */
export function hostPort (ip: string, port: number): string {
  return `${ip.includes(':') ? `[${ip}]` : ip}:${port}`
}

export function httpProbeUrl (ip: string, port: number, path: string): string {
  return `http://${hostPort(ip, port)}${path}`
}

export function httpProbeArgv (netns: string, ip: string, port: number, path: string, timeoutMs: number, tools: ProbeTools): string[] {
  return [
    tools.runtime.nsenter, `--net=${netnsPath(netns)}`, '--', tools.curl,
    // -q first: no ~/.curlrc. --globoff: [] and {} in the path are the path's, not curl's ranges.
    '-q', '--silent', '--show-error', '--globoff', '--noproxy', '*',
    '--output', '/dev/null', '--write-out', '%{http_code}',
    '--max-time', seconds(timeoutMs), '--user-agent', 'weft-health/1',
    httpProbeUrl(ip, port, path)
  ]
}

/** 1500 → "1.5". */
function seconds (ms: number): string {
  return String(ms / 1000)
}

export function timedOutMessage (timeoutMs: number): string {
  return `timed out after ${seconds(timeoutMs)}s`
}

/** True for a status code kubelet counts healthy. */
export function isHealthyHttpStatus (status: number): boolean {
  return status >= 200 && status < 400
}

function describeExit (outcome: Extract<CaptureOutcome, { kind: 'exited' }>): string {
  return outcome.signal !== null ? `killed by ${outcome.signal}` : `exit status ${outcome.code ?? 'unknown'}`
}

/** How a probe ended, before its times are added. */
interface Verdict {
  readonly exitCode: number
  readonly output: string
}

function notRun (outcome: Exclude<CaptureOutcome, { kind: 'exited' }>, timeoutMs: number): Verdict {
  switch (outcome.kind) {
    case 'timeout': return { exitCode: EXIT_PROBE_ERROR, output: timedOutMessage(timeoutMs) }
    case 'aborted': return { exitCode: EXIT_PROBE_ERROR, output: 'probe cancelled' }
    case 'error': return { exitCode: EXIT_PROBE_ERROR, output: `probe could not start: ${outcome.message}` }
  }
}

export interface RunProbeOptions {
  readonly tools: ProbeTools
  /** Ends the probe early (its processes killed); the result is then -1 "probe cancelled". */
  readonly signal?: AbortSignal | undefined
  /** Wall clock for the result's start and end (ms since the epoch). */
  readonly now?: () => number
}

async function runCmd (command: string, check: ProbeCheck, target: ProbeTarget, options: RunProbeOptions): Promise<Verdict> {
  let exec: ExecTarget
  try {
    exec = await target.execTarget()
  } catch (error) {
    return { exitCode: EXIT_PROBE_ERROR, output: `cannot enter task: ${(error as Error).message}` }
  }
  // Checked just before entering, as netd exec does: a recycled pid is never entered.
  if (!(await isAlive(exec.init))) return { exitCode: EXIT_PROBE_ERROR, output: `task ${exec.name} is not running` }
  const output = new BoundedOutput()
  const outcome = await capture(cmdProbeArgv(exec, command, options.tools), {
    env: exec.env, timeoutMs: check.timeout, stdout: output, stderr: output, signal: options.signal
  })
  if (outcome.kind !== 'exited') return notRun(outcome, check.timeout)
  if (outcome.code === 0) return { exitCode: EXIT_HEALTHY, output: output.text() }
  // Docker records only the output; the status is added when it says more than "failed".
  const text = output.text()
  return { exitCode: EXIT_UNHEALTHY, output: outcome.code === 1 ? text : `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}[${describeExit(outcome)}]` }
}

async function runTcp (port: number, ip: string, check: ProbeCheck, target: ProbeTarget, options: RunProbeOptions): Promise<Verdict> {
  const output = new BoundedOutput()
  const outcome = await capture(tcpProbeArgv(target.netns, ip, port, options.tools), {
    env: PROBE_ENV, timeoutMs: check.timeout, stdout: output, stderr: output, signal: options.signal
  })
  if (outcome.kind !== 'exited') return notRun(outcome, check.timeout)
  if (outcome.code === 0) return { exitCode: EXIT_HEALTHY, output: `connected to ${hostPort(ip, port)}` }
  return { exitCode: EXIT_UNHEALTHY, output: output.text().trim() || describeExit(outcome) }
}

async function runHttp (port: number, path: string, ip: string, check: ProbeCheck, target: ProbeTarget, options: RunProbeOptions): Promise<Verdict> {
  const status = new BoundedOutput(16)
  const errors = new BoundedOutput()
  const outcome = await capture(httpProbeArgv(target.netns, ip, port, path, check.timeout, options.tools), {
    env: PROBE_ENV, timeoutMs: check.timeout, stdout: status, stderr: errors, signal: options.signal
  })
  if (outcome.kind !== 'exited') return notRun(outcome, check.timeout)
  // curl's own --max-time and our timer are the same limit: whichever fires first, one verdict.
  if (outcome.code === CURL_TIMED_OUT) return notRun({ kind: 'timeout' }, check.timeout)
  if (outcome.code !== 0) return { exitCode: EXIT_UNHEALTHY, output: errors.text().trim() || `curl ${describeExit(outcome)}` }
  const code = Number(status.text().trim())
  return { exitCode: isHealthyHttpStatus(code) ? EXIT_HEALTHY : EXIT_UNHEALTHY, output: `HTTP ${code} from ${httpProbeUrl(ip, port, path)}` }
}

function runTest (check: ProbeCheck, target: ProbeTarget, options: RunProbeOptions): Promise<Verdict> {
  const { test } = check
  if (test.kind === 'cmd') return runCmd(test.command, check, target, options)
  if (target.ip === null) return Promise.resolve({ exitCode: EXIT_PROBE_ERROR, output: `task ${target.task} has no address to ${test.kind === 'tcp' ? 'connect to' : 'request'}` })
  if (test.kind === 'tcp') return runTcp(test.port, target.ip, check, target, options)
  return runHttp(test.port, test.path, target.ip, check, target, options)
}

/** Runs one probe of `check` against `target`. Never throws. */
export async function runProbe (check: ProbeCheck, target: ProbeTarget, options: RunProbeOptions): Promise<HealthResult> {
  const now = options.now ?? Date.now
  const start = now()
  let verdict: Verdict
  try {
    verdict = await runTest(check, target, options)
  } catch (error) {
    // An invalid namespace name, or a spawn that threw synchronously: the probe could not run.
    verdict = { exitCode: EXIT_PROBE_ERROR, output: `probe could not run: ${(error as Error).message}` }
  }
  return { start: new Date(start).toISOString(), end: new Date(now()).toISOString(), exitCode: verdict.exitCode, output: verdict.output }
}

/** runProbe with its tools found once, on first use (and looked for again if that failed). */
export type ProbeRunner = (check: ProbeCheck, target: ProbeTarget, signal?: AbortSignal) => Promise<HealthResult>

export function createProbeRunner (options: { tools?: ProbeTools, now?: () => number } = {}): ProbeRunner {
  let tools: Promise<ProbeTools> | null = options.tools === undefined ? null : Promise.resolve(options.tools)
  const now = options.now ?? Date.now
  return async (check, target, signal) => {
    let found: ProbeTools
    try {
      tools ??= findProbeTools().catch((error: unknown) => { tools = null; throw error })
      found = await tools
    } catch (error) {
      const at = new Date(now()).toISOString()
      return { start: at, end: at, exitCode: EXIT_PROBE_ERROR, output: `probe could not run: ${(error as Error).message}` }
    }
    return runProbe(check, target, { tools: found, signal, now })
  }
}
