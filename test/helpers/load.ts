/**
 * Load for failure and convergence tests: http-backend.ts as the service, http-load.ts as its
 * clients, and what a test concludes from a load's summary.
 *
 * Pure part: `analyse(summary, { faultAt, deadlineMs })` splits the failures at the moment of a
 * fault and says when the service recovered (the start time of the last failed request after the
 * fault); `answeredBy` counts answers per backend over a span of time.
 *
 * Process part: `startLoad(where, url, options)` and `startBackend(where, id, port)` run the
 * fixtures as child processes. `where` is an argv prefix that runs a command in a place:
 * `inNetns(ns)`, `onLabHost(lab, host)`, `inLabTask(lab, host, task)`, or [] for here. The prefix
 * must exec the command rather than fork it (`ip netns exec` and `nsenter` without --fork do),
 * so that the child's pid is the fixture's own and signals reach it. Pass the test as `t` and the
 * process is killed by pid (SIGKILL) at teardown, whatever happened to the test.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { taskNamespaceName } from '../../netd/kernel-state.ts'
import { signalNumber } from '../../lab/run-command.ts'
import type { Lab } from './lab.ts'

export const HTTP_BACKEND = path.resolve(import.meta.dirname, '../fixtures/http-backend.ts')
export const HTTP_LOAD = path.resolve(import.meta.dirname, '../fixtures/http-load.ts')

/* ------------------------------------------------------------------ summary and analysis */

export interface LoadFailure { readonly at: number, readonly error: string, readonly ms: number }
export interface LoadBucket { readonly at: number, readonly ok: number, readonly failed: number, readonly byBackend: Readonly<Record<string, number>> }

/** What http-load.ts writes (see its header). Times are epoch ms; a request's `at` is when it was sent. */
export interface LoadSummary {
  readonly url: string
  readonly rate: number
  readonly timeoutMs: number
  /** false in a snapshot taken while the load runs. */
  readonly final: boolean
  readonly startedAt: number
  readonly endedAt: number
  readonly sent: number
  readonly ok: number
  readonly failed: number
  readonly inFlight: number
  readonly byBackend: Readonly<Record<string, number>>
  readonly errors: Readonly<Record<string, number>>
  /** Sorted by `at`: the first and the last 1000 failures; `failuresDropped` counts those between. */
  readonly failures: readonly LoadFailure[]
  readonly failuresDropped: number
  /** One bucket per second of request start time, in order; seconds with no completed request are absent. */
  readonly timeline: readonly LoadBucket[]
  /** ms, of the requests that succeeded; null before any did. */
  readonly latency: { readonly p50: number | null, readonly p99: number | null, readonly max: number | null }
}

export interface AnalyseOptions {
  /** When the fault was made (epoch ms, Date.now() in the test: the load runs on the same clock). */
  readonly faultAt: number
  /** How long after faultAt failures are tolerated; failures later than that are counted apart. */
  readonly deadlineMs?: number
}

export interface LoadAnalysis {
  readonly faultAt: number
  readonly deadline: number
  /** Failures of requests sent before the fault: the service was not steady when it happened. */
  readonly failedBefore: number
  /** Failures of requests sent at or after the fault, in order. */
  readonly failuresAfter: readonly LoadFailure[]
  readonly failedAfter: number
  /** Failures of requests sent later than faultAt + deadlineMs. */
  readonly failedAfterDeadline: number
  /** Count per error ("ECONNREFUSED", "timeout", "HTTP 503"...) of the failures after the fault. */
  readonly errorsAfter: Readonly<Record<string, number>>
  /** The first failure after the fault, null if there was none. */
  readonly firstFailureAt: number | null
  /** The last failure after the fault, or faultAt when there was none. */
  readonly recoveredAt: number
  /** recoveredAt - faultAt. */
  readonly recoveryMs: number
  /**
   * Successes among requests sent in whole seconds after recoveredAt (from the timeline, so a
   * lower bound): that the load went on succeeding, not just stopped failing. 0 means nothing
   * proves recovery yet: snapshot again later.
   */
  readonly okAfterRecovery: number
  /** Requests between the first and the last 1000 failures were dropped: counts are lower bounds. */
  readonly truncated: boolean
}

/** Splits a load's failures at the fault and measures the recovery. Pure. */
export function analyse (summary: LoadSummary, { faultAt, deadlineMs = Infinity }: AnalyseOptions): LoadAnalysis {
  const deadline = faultAt + deadlineMs
  const failuresAfter = summary.failures.filter((f) => f.at >= faultAt)
  const errorsAfter: Record<string, number> = {}
  for (const f of failuresAfter) errorsAfter[f.error] = (errorsAfter[f.error] ?? 0) + 1
  const recoveredAt = failuresAfter.length === 0 ? faultAt : Math.max(...failuresAfter.map((f) => f.at))
  return {
    faultAt,
    deadline,
    failedBefore: summary.failures.length - failuresAfter.length,
    failuresAfter,
    failedAfter: failuresAfter.length,
    failedAfterDeadline: failuresAfter.filter((f) => f.at > deadline).length,
    errorsAfter,
    firstFailureAt: failuresAfter[0]?.at ?? null,
    recoveredAt,
    recoveryMs: recoveredAt - faultAt,
    okAfterRecovery: summary.timeline.filter((b) => b.at > recoveredAt).reduce((sum, b) => sum + b.ok, 0),
    truncated: summary.failuresDropped > 0
  }
}

/**
 * Successful answers per backend from requests sent in [from, to), counting only the timeline's
 * whole seconds inside that span (the second that contains `from` is left out).
 */
export function answeredBy (summary: LoadSummary, from: number, to = Infinity): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const bucket of summary.timeline) {
    if (bucket.at < from || bucket.at + 1000 > to) continue
    for (const [id, n] of Object.entries(bucket.byBackend)) counts[id] = (counts[id] ?? 0) + n
  }
  return counts
}

/* ------------------------------------------------------------------ where a fixture runs */

/** Runs a command in a network namespace (host filesystem, host PID namespace). */
export function inNetns (netns: string): string[] {
  return ['ip', 'netns', 'exec', netns]
}

/** Runs a command on a lab host, e.g. `outside` to come in through a published port. */
export function onLabHost (lab: Lab, host: string): string[] {
  return inNetns(lab.netns(host))
}

/**
 * Runs a command in the network namespace of a task netd started on a lab node (a VIP is reached
 * from there). Only the network namespace: the fixture needs the host's node and repository,
 * which a task's own mount namespace may not have.
 */
export function inLabTask (lab: Lab, host: string, task: string): string[] {
  return inNetns(taskNamespaceName(`${lab.netns(host)}-`, task))
}

/* ------------------------------------------------------------------ processes */

interface Teardownable { teardown (fn: () => void | Promise<void>): void }

/** A fixture process and its stderr, line by line. */
class Fixture {
  readonly child: ChildProcess
  readonly exited: Promise<number>
  #stderr = ''
  #listeners = new Set<(line: string) => void>()

  constructor (where: readonly string[], argv: readonly string[]) {
    const full = [...where, process.execPath, ...argv]
    // A test runner's loaders (tap sets NODE_OPTIONS=--import=...) must not reach the fixture.
    const env = { ...process.env }
    delete env.NODE_OPTIONS
    this.child = spawn(full[0]!, full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env })
    this.exited = new Promise((resolve) => {
      this.child.on('error', (error) => { this.#stderr += `${error.message}\n`; resolve(-1) })
      this.child.on('close', (code, signal) => resolve(code ?? 128 + signalNumber(signal)))
    })
    let partial = ''
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.#stderr += chunk
      const lines = (partial + chunk).split('\n')
      partial = lines.pop()!
      for (const line of lines) for (const listener of this.#listeners) listener(line)
    })
  }

  get pid (): number { return this.child.pid ?? -1 }
  get running (): boolean { return this.child.exitCode === null && this.child.signalCode === null }
  get stderr (): string { return this.#stderr }

  /** Resolves with the first stderr line (or stdout line, when `stream` says so) matching, rejects if the process ends first or after timeoutMs. */
  async line (match: RegExp, what: string, timeoutMs: number, stream: 'stderr' | 'stdout' = 'stderr'): Promise<string> {
    return await new Promise((resolve, reject) => {
      let outPartial = ''
      const onOut = (chunk: Buffer): void => {
        const lines = (outPartial + chunk.toString()).split('\n')
        outPartial = lines.pop()!
        for (const l of lines) listener(l)
      }
      const done = (): void => {
        clearTimeout(timer)
        this.#listeners.delete(listener)
        this.child.stdout!.off('data', onOut)
      }
      const listener = (l: string): void => { if (match.test(l)) { done(); resolve(l) } }
      const timer = setTimeout(() => { done(); reject(new Error(`${what}: nothing after ${timeoutMs} ms; stderr: ${this.#stderr.trim()}`)) }, timeoutMs)
      void this.exited.then((code) => { done(); reject(new Error(`${what}: the process ended (${code}); stderr: ${this.#stderr.trim()}`)) })
      if (stream === 'stderr') this.#listeners.add(listener)
      else this.child.stdout!.on('data', onOut)
    })
  }

  /** SIGKILL by pid if still running, then wait for the end. */
  async kill (): Promise<void> {
    if (this.running) this.child.kill('SIGKILL')
    if (this.child.pid !== undefined) await this.exited
  }
}

export interface LoadOptions {
  /** Requests a second. */
  readonly rate: number
  /** Per request, default 1000. */
  readonly timeoutMs?: number
  /** Stop by itself after this long (then `stop()` only waits and reads). */
  readonly durationS?: number
  /** Registers the kill on t's teardown. */
  readonly t?: Teardownable
}

export interface LoadHandle {
  readonly pid: number
  /** Where the summary is written. */
  readonly file: string
  /** The summary so far (SIGUSR1, then the file once rewritten); the load goes on. */
  snapshot (): Promise<LoadSummary>
  /**
   * The final summary: SIGTERM, then the in-flight requests end (within the timeout) and the
   * process exits. A load started with a duration is not signalled: this waits for its end.
   */
  stop (): Promise<LoadSummary>
  /** SIGKILL by pid if running, removes the summary file: for teardown, idempotent. */
  close (): Promise<void>
}

/** Starts http-load.ts against url from `where`; resolves once it sends (signals are handled from then on). */
export async function startLoad (where: readonly string[], url: string, options: LoadOptions): Promise<LoadHandle> {
  const timeoutMs = options.timeoutMs ?? 1000
  const dir = await mkdtemp(path.join(tmpdir(), 'weft-load-'))
  const file = path.join(dir, 'summary.json')
  const argv = [HTTP_LOAD, url, '--rate', String(options.rate), '--timeout-ms', String(timeoutMs), '--out', file]
  if (options.durationS !== undefined) argv.push('--duration-s', String(options.durationS))
  const load = new Fixture(where, argv)
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await load.kill()
    await rm(dir, { recursive: true, force: true })
  }
  options.t?.teardown(close)
  const startedAt = Date.now()
  try {
    await load.line(/^http-load: started$/, `http-load ${url}`, 10_000)
  } catch (error) {
    await close()
    throw error
  }
  const read = async (): Promise<LoadSummary> => JSON.parse(await readFile(file, 'utf8')) as LoadSummary
  // Snapshots one at a time: each waits for the write its own signal asked for.
  let queue: Promise<unknown> = Promise.resolve()
  let writes = 0
  const snapshot = async (): Promise<LoadSummary> => {
    const next = queue.then(async () => {
      if (!load.running) throw new Error(`http-load ${url} is not running; stderr: ${load.stderr.trim()}`)
      const wrote = load.line(/^http-load: wrote \d+$/, `snapshot of http-load ${url}`, 5000)
      load.child.kill('SIGUSR1')
      writes = Number((await wrote).split(' ').pop())
      return await read()
    })
    queue = next.catch(() => undefined)
    return await next
  }
  const stop = async (): Promise<LoadSummary> => {
    await queue
    // A load with a duration ends by itself: wait for it (and SIGKILL one that overstays).
    const ownEnd = options.durationS === undefined ? 0 : Math.max(0, startedAt + options.durationS * 1000 - Date.now())
    if (load.running && options.durationS === undefined) load.child.kill('SIGTERM')
    const timer = setTimeout(() => load.child.kill('SIGKILL'), ownEnd + timeoutMs + 5000)
    const code = await load.exited
    clearTimeout(timer)
    if (code !== 0) throw new Error(`http-load ${url} exited ${code}; stderr: ${load.stderr.trim()}`)
    const summary = await read()
    if (!summary.final) throw new Error(`http-load ${url} ended without its final summary (last write #${writes})`)
    await close()
    return summary
  }
  return { pid: load.pid, file, snapshot, stop, close }
}

export interface BackendOptions {
  /** After SIGTERM, keep accepting this long before closing (healthz answers 503 meanwhile). */
  readonly drainMs?: number
  /** Every GET / answer waits this long. */
  readonly delayMs?: number
  readonly t?: Teardownable
}

export interface BackendHandle {
  readonly pid: number
  /** SIGTERM: the graceful stop; resolves with the exit status (0 when graceful). */
  stop (): Promise<number>
  /** Resolves with the exit status whenever the process ends. */
  readonly exited: Promise<number>
  /** SIGKILL by pid if running: for teardown, idempotent. */
  close (): Promise<void>
}

/** Starts http-backend.ts ID PORT in `where`; resolves once it listens. */
export async function startBackend (where: readonly string[], id: string, port: number, options: BackendOptions = {}): Promise<BackendHandle> {
  const argv = [HTTP_BACKEND, id, String(port)]
  if (options.drainMs !== undefined) argv.push('--drain-ms', String(options.drainMs))
  if (options.delayMs !== undefined) argv.push('--delay-ms', String(options.delayMs))
  const backend = new Fixture(where, argv)
  const close = async (): Promise<void> => await backend.kill()
  options.t?.teardown(close)
  try {
    await backend.line(/^listening$/, `http-backend ${id}`, 10_000, 'stdout')
  } catch (error) {
    await close()
    throw error
  }
  const stop = async (): Promise<number> => {
    if (backend.running) backend.child.kill('SIGTERM')
    return await backend.exited
  }
  return { pid: backend.pid, stop, exited: backend.exited, close }
}
