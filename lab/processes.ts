/**
 * Process bookkeeping through /proc: identify a process robustly (pid + start time + a script in
 * its command line, so a recycled pid is never signalled), find every process living in a given
 * set of network namespaces, and stop processes with SIGTERM then SIGKILL.
 */

import fs from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'

export interface ProcessRecord {
  readonly pid: number
  /** Field 22 of /proc/PID/stat: with the pid, a process identity that survives exec but not pid reuse. */
  readonly startTime: string
  /** A path that must appear in the command line for the record to still describe our process. */
  readonly script: string
}

interface ProcStat {
  readonly state: string
  readonly startTime: string
}

async function readStat(pid: number): Promise<ProcStat | null> {
  try {
    const text = await fs.readFile(`/proc/${pid}/stat`, 'utf8')
    // comm (field 2) may contain spaces and parentheses: parse after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
    const state = fields[0]
    const startTime = fields[19]
    if (state === undefined || startTime === undefined) return null
    return { state, startTime }
  } catch {
    return null
  }
}

async function readCmdline(pid: number): Promise<string[]> {
  try {
    return (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter((s) => s !== '')
  } catch {
    return []
  }
}

/** Zombies count as gone: they hold no resources and only their parent can reap them. */
async function isRunning(pid: number): Promise<boolean> {
  const stat = await readStat(pid)
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X'
}

export async function recordProcess(pid: number, script: string): Promise<ProcessRecord> {
  const stat = await readStat(pid)
  return { pid, startTime: stat?.startTime ?? '', script }
}

export async function isSameProcess(record: ProcessRecord): Promise<boolean> {
  const stat = await readStat(record.pid)
  if (stat === null || stat.state === 'Z' || stat.startTime !== record.startTime) return false
  const argv = await readCmdline(record.pid)
  // An empty command line with the same pid and start time is our process in the middle of its exec
  // (nsenter becoming node): /proc/PID/cmdline reads empty while the new image replaces the old one.
  return argv.length === 0 || argv.some((arg) => arg.includes(record.script))
}

export async function listPids(): Promise<number[]> {
  const entries = await fs.readdir('/proc')
  return entries.filter((e) => /^\d+$/.test(e)).map(Number)
}

/** Inode of a named namespace's nsfs file; /proc/PID/ns/net links read `net:[INODE]` for the same namespace. */
export async function netnsInode(netns: string): Promise<string | null> {
  try {
    return String((await fs.stat(`/run/netns/${netns}`)).ino)
  } catch {
    return null
  }
}

export async function pidsInNetns(inodes: ReadonlySet<string>): Promise<number[]> {
  const found: number[] = []
  for (const pid of await listPids()) {
    if (pid === process.pid) continue
    try {
      const link = await fs.readlink(`/proc/${pid}/ns/net`)
      const inode = /^net:\[(\d+)\]$/.exec(link)?.[1]
      if (inode !== undefined && inodes.has(inode) && (await isRunning(pid))) found.push(pid)
    } catch {
      // The process exited while we looked, or is a kernel thread without namespaces: not ours.
    }
  }
  return found
}

export async function waitForExit(pids: readonly number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs
  let alive = [...pids]
  for (;;) {
    const states = await Promise.all(alive.map(isRunning))
    alive = alive.filter((_, i) => states[i])
    if (alive.length === 0 || Date.now() >= deadline) return alive
    await sleep(50)
  }
}

export function signalProcess(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch (e) {
    // ESRCH: it exited between the check and the signal, which is what we wanted.
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e
  }
}

/** SIGTERM, then SIGKILL whatever is still running after graceMs. Returns pids that survived even that. */
export async function terminate(pids: readonly number[], graceMs: number): Promise<number[]> {
  for (const pid of pids) signalProcess(pid, 'SIGTERM')
  const stubborn = await waitForExit(pids, graceMs)
  for (const pid of stubborn) signalProcess(pid, 'SIGKILL')
  return waitForExit(stubborn, 2000)
}
