/**
 * Processes as /proc shows them. A task's processes are known by pid *and*
 * start time (field 22 of /proc/PID/stat, constant for a process's life and
 * across exec), so a pid recycled while netd was down is never mistaken for
 * the task, and never signalled.
 */
import { readFile, readdir } from 'node:fs/promises'

export interface ProcessIdentity {
  readonly pid: number
  /** Clock ticks after boot at which the process started. */
  readonly startTime: string
}

export interface ProcStat {
  readonly state: string
  readonly ppid: number
  readonly pgrp: number
  readonly startTime: string
}

export async function readStat (pid: number): Promise<ProcStat | null> {
  let text: string
  try {
    text = await readFile(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // comm (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const [state, ppid, pgrp] = [fields[0], fields[1], fields[2]]
  const startTime = fields[19]
  if (state === undefined || ppid === undefined || pgrp === undefined || startTime === undefined) return null
  return { state, ppid: Number(ppid), pgrp: Number(pgrp), startTime }
}

export async function identify (pid: number): Promise<ProcessIdentity | null> {
  const stat = await readStat(pid)
  return stat === null ? null : { pid, startTime: stat.startTime }
}

/** Running means: this very process, and not a zombie (which holds nothing and waits only to be reaped). */
export async function isAlive (process: ProcessIdentity | null): Promise<boolean> {
  if (process === null) return false
  const stat = await readStat(process.pid)
  return stat !== null && stat.startTime === process.startTime && stat.state !== 'Z' && stat.state !== 'X'
}

/** Direct children, from every thread's `children` file. */
export async function childrenOf (pid: number): Promise<number[]> {
  const threads = await readdir(`/proc/${pid}/task`).catch(() => [] as string[])
  const children: number[] = []
  for (const tid of threads) {
    const text = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '')
    for (const field of text.split(' ')) if (/^\d+$/.test(field)) children.push(Number(field))
  }
  return children
}

/** The pid in each PID namespace the process is in, outermost first (the NSpid line). */
export async function namespacePids (pid: number): Promise<number[] | null> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => null)
  const line = status?.split('\n').find((l) => l.startsWith('NSpid:'))
  if (line === undefined) return null
  return line.slice('NSpid:'.length).trim().split(/\s+/).map(Number)
}

export async function cmdline (pid: number): Promise<string[]> {
  const text = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
  return text.split('\0').filter((s) => s !== '')
}

/** Sends a signal; false when there was no such process (or group). */
export function sendSignal (target: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(target, signal)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw error
  }
}
