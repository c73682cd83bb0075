/**
 * Programmatic API of `weft lab`: bring a lab up, open an existing one, list and remove labs, and
 * act on hosts (run commands, start/stop/restart netd). The CLI, the tests and the demo all go
 * through this module; names and addresses come from topology.ts, kernel work from network.ts.
 */

import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startDaemon, waitForHttpOk, waitForListening, type ReadyResult } from './daemon.ts'
import { LabError, LabErrorCode } from './errors.ts'
import { createNetwork, namespacesWithPrefix } from './network.ts'
import { isSameProcess, signalProcess, waitForExit, type ProcessRecord } from './processes.ts'
import { runCommand, signalNumber, type CommandResult, type RunOptions } from './run-command.ts'
import { claimLabDir, hostDir, labsOnDisk, readState, writeState, type LabState } from './state.ts'
import { teardownLab } from './teardown.ts'
import {
  DEFAULT_LAB_NAME,
  DEFAULT_NODES,
  DNS_ADDRESS,
  DNS_ZONE,
  NETD_METRICS_ADDR,
  NAMESPACE_PREFIX,
  OUTSIDE_ADDRESS,
  buildTopology,
  findHost,
  labNameOfNetns,
  labPrefix,
  nodeHosts,
  validateLabName,
  type LabHost,
  type LabTopology,
} from './topology.ts'

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url))
export const DEFAULT_NETD_ENTRY = path.join(REPO_ROOT, 'netd', 'main.ts')
const DNS_SCRIPT = path.join(REPO_ROOT, 'lab', 'upstream-dns.ts')
const READY_TIMEOUT_MS = 15_000
const STOP_TIMEOUT_MS = 10_000

export interface LabUpOptions {
  readonly name?: string
  readonly nodes?: number
  /** Script netd runs; defaults to <repo>/netd/main.ts. */
  readonly netdEntry?: string
  /** Appended to every netd command line. */
  readonly netdArgs?: readonly string[]
  /** How long each daemon may take to become ready. */
  readonly readyTimeoutMs?: number
}

export type LabStateName = 'running' | 'degraded' | 'creating' | 'orphaned'

export interface LabSummary {
  readonly name: string
  readonly nodes: number | null
  readonly namespaces: number
  readonly state: LabStateName
}

function assertRoot(): void {
  if (process.getuid?.() !== 0) throw new LabError(LabErrorCode.notRoot, 'weft lab needs root (it creates network namespaces)')
}

const LOG_TAIL_LINES = 10

// The log's last lines go into the message because a failed `up` removes the log with the lab.
async function readyError(code: LabErrorCode, what: string, result: ReadyResult, timeoutMs: number, logFile: string): Promise<LabError> {
  const why = result === 'exited' ? 'exited during startup' : `was not ready within ${timeoutMs / 1000} s`
  const tail = await fs.readFile(logFile, 'utf8').then((text) => text.trimEnd().split('\n').slice(-LOG_TAIL_LINES).join('\n'), () => '')
  return new LabError(code, `${what} ${why}; see ${logFile}${tail === '' ? '' : `; its last lines:\n${tail}`}`)
}

export class Lab {
  readonly name: string
  readonly topology: LabTopology
  #state: LabState
  #saving: Promise<void> = Promise.resolve()

  constructor(state: LabState) {
    this.name = state.name
    this.topology = buildTopology(state.name, state.nodes)
    this.#state = state
  }

  host(host: string): LabHost {
    return findHost(this.topology, host)
  }

  netns(host: string): string {
    return this.host(host).netns
  }

  /** Underlay address of a host. */
  addr(host: string): string {
    const address = this.host(host).address
    if (address === null) throw new LabError(LabErrorCode.host, `host ${host} of lab ${this.name} has no address`)
    return address
  }

  hostDir(host: string): string {
    return hostDir(this.name, this.#node(host).name)
  }

  netdSocket(host: string): string {
    return path.join(this.hostDir(host), 'netd.sock')
  }

  netdLog(host: string): string {
    return path.join(this.hostDir(host), 'netd.log')
  }

  /** Environment for commands on a host: `netd`/`weft` on PATH and, on nodes, the node's netd socket. */
  hostEnv(host: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...base, PATH: `${path.join(REPO_ROOT, 'bin')}:${base.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` }
    // A test runner's loaders (tap sets NODE_OPTIONS=--import=...) must not leak into lab hosts.
    delete env.NODE_OPTIONS
    if (this.host(host).role === 'node') env.NETD_SOCKET = this.netdSocket(host)
    return env
  }

  exec(host: string, argv: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    return runCommand(['ip', 'netns', 'exec', this.netns(host), ...argv], { ...opts, env: this.hostEnv(host, opts.env) })
  }

  /** Runs in any namespace of this lab, e.g. a task namespace netd created under `weftlab-NAME-hI-`. */
  execIn(netns: string, argv: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    this.#assertOwnNetns(netns)
    return runCommand(['ip', 'netns', 'exec', netns, ...argv], opts)
  }

  /** Runs with the caller's stdio (interactive use); resolves to the exit code, 128 + signal if killed. */
  execInherit(host: string, argv: readonly string[]): Promise<number> {
    const child = spawn('ip', ['netns', 'exec', this.netns(host), ...argv], { stdio: 'inherit', env: this.hostEnv(host) })
    return new Promise((resolve, reject) => {
      child.on('error', reject)
      child.on('close', (code, signal) => resolve(code ?? 128 + signalNumber(signal)))
    })
  }

  /** A background process on a host; `down` kills it with everything else in the lab's namespaces. */
  spawn(host: string, argv: readonly string[]): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.netns(host), ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: this.hostEnv(host) })
  }

  /**
   * Starts netd on a node and waits until GET /status answers 200. `args` replaces the lab's
   * extra netd arguments for this start (restart with a flag, then restart again without it).
   */
  async startNetd(host: string, args: readonly string[] = this.#state.netd.args, readyTimeoutMs = READY_TIMEOUT_MS): Promise<void> {
    const node = this.#node(host)
    const running = this.#state.processes[node.name]
    if (running !== undefined && (await isSameProcess(running))) {
      throw new LabError(LabErrorCode.netdStart, `netd on ${node.name} is already running (pid ${running.pid})`)
    }
    const record = await this.#spawnNetd(node, args)
    await this.#setProcess(node.name, record)
    const result = await waitForHttpOk(record, this.netdSocket(node.name), '/status', readyTimeoutMs)
    if (result !== 'ready') throw await readyError(LabErrorCode.netdStart, `netd on ${node.name}`, result, readyTimeoutMs, this.netdLog(node.name))
  }

  /** Signals netd on a node and waits for it to exit (SIGKILL simulates a crash). */
  async stopNetd(host: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const node = this.#node(host)
    const record = this.#state.processes[node.name]
    if (record === undefined || !(await isSameProcess(record))) return
    signalProcess(record.pid, signal)
    if ((await waitForExit([record.pid], STOP_TIMEOUT_MS)).length > 0) {
      throw new LabError(LabErrorCode.netdStop, `netd on ${node.name} (pid ${record.pid}) did not exit within ${STOP_TIMEOUT_MS / 1000} s of ${signal}`)
    }
    await this.#setProcess(node.name, undefined)
  }

  async restartNetd(host: string, args?: readonly string[]): Promise<void> {
    await this.stopNetd(host)
    await this.startNetd(host, args)
  }

  down(): Promise<void> {
    return labDown(this.name)
  }

  /** Used by labUp only: starts every daemon, then waits for all of them together. */
  async startAll(readyTimeoutMs: number): Promise<void> {
    const dnsLog = path.join(hostDir(this.name, 'dns'), 'upstream-dns.log')
    await fs.mkdir(path.dirname(dnsLog), { recursive: true })
    const dns = await startDaemon({ netns: this.netns('dns'), script: DNS_SCRIPT, argv: this.#dnsArgv(), logFile: dnsLog })
    await this.#setProcess('dns', dns)
    const netds: { node: LabHost; record: ProcessRecord }[] = []
    for (const node of nodeHosts(this.topology)) {
      const record = await this.#spawnNetd(node, this.#state.netd.args)
      await this.#setProcess(node.name, record)
      netds.push({ node, record })
    }

    const waits: Promise<void>[] = [
      waitForListening(dns, DNS_ADDRESS, 53, readyTimeoutMs).then(async (r) => {
        if (r !== 'ready') throw await readyError(LabErrorCode.dnsStart, 'the lab DNS resolver', r, readyTimeoutMs, dnsLog)
      }),
    ]
    for (const { node, record } of netds) {
      waits.push(
        waitForHttpOk(record, this.netdSocket(node.name), '/status', readyTimeoutMs).then(async (r) => {
          if (r !== 'ready') throw await readyError(LabErrorCode.netdStart, `netd on ${node.name}`, r, readyTimeoutMs, this.netdLog(node.name))
        }),
      )
    }
    const results = await Promise.allSettled(waits)
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []))
    if (failures.length === 1 && failures[0]) throw failures[0]
    if (failures.length > 1) {
      const first = failures[0] as LabError
      throw new LabError(first.code ?? LabErrorCode.netdStart, failures.map((f) => f.message).join('; '), { cause: new AggregateError(failures) })
    }
    await this.#update({ ...this.#state, phase: 'ready' })
  }

  #dnsArgv(): string[] {
    const hosts = this.topology.hosts.map((h) => `${h.name}=${h.address ?? ''}`).join(',')
    return [process.execPath, DNS_SCRIPT, '--listen', DNS_ADDRESS, '--zone', DNS_ZONE, '--hosts', hosts, '--www', OUTSIDE_ADDRESS]
  }

  async #spawnNetd(node: LabHost, args: readonly string[]): Promise<ProcessRecord> {
    const dir = hostDir(this.name, node.name)
    await fs.mkdir(dir, { recursive: true })
    const entry = this.#state.netd.entry
    const argv = [
      process.execPath,
      entry,
      'run',
      '--node-name', node.name,
      '--advertise-addr', node.address ?? '',
      '--netns-prefix', `${node.netns}-`,
      '--state-dir', dir,
      '--socket', this.netdSocket(node.name),
      '--metrics-addr', NETD_METRICS_ADDR,
      // netd runs in the host's network namespace but the machine's mount namespace: point dnsd at the
      // lab's resolver explicitly, never at the machine's own.
      '--resolv-conf', path.join('/etc/netns', node.netns, 'resolv.conf'),
      ...args,
    ]
    return startDaemon({ netns: node.netns, script: entry, argv, logFile: this.netdLog(node.name) })
  }

  #node(host: string): LabHost {
    const found = this.host(host)
    if (found.role !== 'node') throw new LabError(LabErrorCode.host, `host ${host} of lab ${this.name} is not a node (it runs no netd)`)
    return found
  }

  #assertOwnNetns(netns: string): void {
    if (!netns.startsWith(this.topology.prefix)) {
      throw new LabError(LabErrorCode.host, `namespace ${netns} does not belong to lab ${this.name} (prefix ${this.topology.prefix})`)
    }
  }

  async #setProcess(host: string, record: ProcessRecord | undefined): Promise<void> {
    const processes = { ...this.#state.processes }
    if (record === undefined) delete processes[host]
    else processes[host] = record
    await this.#update({ ...this.#state, processes })
  }

  // Writes are chained so concurrent updates land in order and never race on the temp file.
  #update(state: LabState): Promise<void> {
    this.#state = state
    this.#saving = this.#saving.then(() => writeState(this.#state))
    return this.#saving
  }
}

export async function labUp(opts: LabUpOptions = {}): Promise<Lab> {
  assertRoot()
  const name = validateLabName(opts.name ?? DEFAULT_LAB_NAME)
  const topology = buildTopology(name, opts.nodes ?? DEFAULT_NODES)
  const netdEntry = opts.netdEntry ?? DEFAULT_NETD_ENTRY
  await fs.access(netdEntry).catch(() => {
    throw new LabError(LabErrorCode.netdStart, `netd entry script ${netdEntry} does not exist`)
  })
  const leftovers = await namespacesWithPrefix(topology.prefix)
  if (leftovers.length > 0 || !(await claimLabDir(name))) {
    throw new LabError(LabErrorCode.exists, `lab ${name} already exists; remove it with: weft lab down --name ${name}`)
  }
  const state: LabState = {
    version: 1,
    name,
    nodes: topology.nodes,
    createdAt: new Date().toISOString(),
    phase: 'creating',
    hosts: [topology.underlay, ...topology.hosts].map((h) => ({ ...h })),
    netd: { entry: netdEntry, args: [...(opts.netdArgs ?? [])] },
    processes: {},
  }
  const lab = new Lab(state)
  try {
    await writeState(state)
    await createNetwork(topology)
    await lab.startAll(opts.readyTimeoutMs ?? READY_TIMEOUT_MS)
    return lab
  } catch (err) {
    try {
      await teardownLab(name)
    } catch (cleanup) {
      const e = err as LabError
      throw new LabError(e.code ?? LabErrorCode.command, `${e.message} (cleanup failed too: ${(cleanup as Error).message})`, { cause: err })
    }
    throw err
  }
}

export async function openLab(name: string = DEFAULT_LAB_NAME): Promise<Lab> {
  validateLabName(name)
  const state = await readState(name)
  if (state === null) throw new LabError(LabErrorCode.notFound, `lab ${name} does not exist (no ${path.join('/run/weft/labs', name)})`)
  return new Lab(state)
}

export async function labDown(name: string = DEFAULT_LAB_NAME): Promise<void> {
  assertRoot()
  await teardownLab(validateLabName(name))
}

export async function labList(): Promise<LabSummary[]> {
  const byName = new Map<string, string[]>()
  for (const ns of await namespacesWithPrefix(NAMESPACE_PREFIX)) {
    const name = labNameOfNetns(ns)
    if (name !== null) byName.set(name, [...(byName.get(name) ?? []), ns])
  }
  for (const name of await labsOnDisk()) if (!byName.has(name)) byName.set(name, [])
  const summaries: LabSummary[] = []
  for (const [name, namespaces] of [...byName].sort(([a], [b]) => a.localeCompare(b))) {
    const state = await readState(name).catch(() => null)
    summaries.push({ name, nodes: state?.nodes ?? countNodes(name, namespaces), namespaces: namespaces.length, state: await labStateName(state, namespaces) })
  }
  return summaries
}

export async function labDownAll(): Promise<string[]> {
  const names = (await labList()).map((l) => l.name)
  for (const name of names) await labDown(name)
  return names
}

function countNodes(name: string, namespaces: readonly string[]): number | null {
  const prefix = labPrefix(name)
  const n = namespaces.filter((ns) => /^h\d+$/.test(ns.slice(prefix.length))).length
  return n === 0 ? null : n
}

async function labStateName(state: LabState | null, namespaces: readonly string[]): Promise<LabStateName> {
  if (state === null) return 'orphaned'
  if (state.phase === 'creating') return 'creating'
  const present = new Set(namespaces)
  const alive = await Promise.all(Object.values(state.processes).map(isSameProcess))
  return state.hosts.every((h) => present.has(h.netns)) && alive.every(Boolean) ? 'running' : 'degraded'
}
