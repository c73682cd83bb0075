/**
 * Starts long-running lab processes (netd, the lab resolver) detached inside a host namespace,
 * output appended to a log file, and waits until they are ready. Readiness is checked from
 * outside the process (HTTP status over netd's unix socket, listening sockets in /proc) so the
 * daemons need no lab-specific handshake.
 */

import { spawn } from 'node:child_process'
import fs from 'node:fs/promises'
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { isSameProcess, recordProcess, type ProcessRecord } from './processes.ts'

export interface DaemonSpec {
  readonly netns: string
  /** Path that identifies the process in /proc/PID/cmdline (the script it runs). */
  readonly script: string
  readonly argv: readonly string[]
  readonly logFile: string
}

// A fixed, small environment: daemons must not inherit a test runner's NODE_OPTIONS loaders.
function daemonEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' }
}

export async function startDaemon(spec: DaemonSpec): Promise<ProcessRecord> {
  const log = await fs.open(spec.logFile, 'a')
  try {
    // nsenter joins only the network namespace: `ip netns exec` would also give the daemon a private
    // mount namespace, and the namespaces netd creates (bind mounts under /run/netns) would then be
    // invisible outside it. nsenter execs the command, so the pid we get is the daemon itself.
    const child = spawn('nsenter', [`--net=/run/netns/${spec.netns}`, '--', ...spec.argv], {
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
      env: daemonEnv(),
    })
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid ?? 0))
      child.once('error', reject)
    })
    child.unref()
    return await recordProcess(pid, spec.script)
  } finally {
    await log.close()
  }
}

function httpStatus(socketPath: string, urlPath: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: urlPath, host: 'localhost', timeout: 1000 }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(0))
  })
}

export type ReadyResult = 'ready' | 'exited' | 'timeout'

async function pollUntil(record: ProcessRecord, timeoutMs: number, check: () => Promise<boolean>): Promise<ReadyResult> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return 'ready'
    if (!(await isSameProcess(record))) return 'exited'
    await sleep(100)
  }
  return 'timeout'
}

export function waitForHttpOk(record: ProcessRecord, socketPath: string, urlPath: string, timeoutMs: number): Promise<ReadyResult> {
  return pollUntil(record, timeoutMs, async () => (await httpStatus(socketPath, urlPath)) === 200)
}

/** /proc/PID/net/{udp,tcp} list the sockets of the namespace the process lives in, addresses in little-endian hex. */
function procNetAddress(ipv4: string, port: number): string {
  const hex = ipv4
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0').toUpperCase())
    .reverse()
    .join('')
  return `${hex}:${port.toString(16).padStart(4, '0').toUpperCase()}`
}

async function hasSocket(pid: number, proto: 'udp' | 'tcp', local: string): Promise<boolean> {
  try {
    const lines = (await fs.readFile(`/proc/${pid}/net/${proto}`, 'utf8')).split('\n').slice(1)
    // Column 4 is the state: 07 is an unconnected UDP socket, 0A a listening TCP one.
    const wanted = proto === 'udp' ? '07' : '0A'
    return lines.some((line) => {
      const cols = line.trim().split(/\s+/)
      return cols[1] === local && cols[3] === wanted
    })
  } catch {
    return false
  }
}

export function waitForListening(record: ProcessRecord, ipv4: string, port: number, timeoutMs: number): Promise<ReadyResult> {
  const local = procNetAddress(ipv4, port)
  return pollUntil(record, timeoutMs, async () => (await hasSocket(record.pid, 'udp', local)) && (await hasSocket(record.pid, 'tcp', local)))
}
