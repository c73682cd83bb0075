/**
 * The lab's state on disk: /run/weft/labs/NAME/lab.json plus one directory per host for netd's
 * state, socket and log. Written atomically (temp file + rename) because `down` after a crash
 * must never read half a file; `down` also works without it, from namespace names alone.
 */

import fs from 'node:fs/promises'
import path from 'node:path'
import { z } from 'zod'
import { LabError, LabErrorCode } from './errors.ts'

export const LABS_DIR = '/run/weft/labs'
export const ETC_NETNS_DIR = '/etc/netns'

const processRecordSchema = z.object({ pid: z.number().int().positive(), startTime: z.string(), script: z.string() })

const stateSchema = z.object({
  version: z.literal(1),
  name: z.string(),
  nodes: z.number().int().positive(),
  createdAt: z.string(),
  /** `creating` until up finished: a lab left in that state was interrupted. */
  phase: z.enum(['creating', 'ready']),
  hosts: z.array(
    z.object({
      name: z.string(),
      role: z.enum(['node', 'outside', 'dns', 'underlay']),
      netns: z.string(),
      address: z.string().nullable(),
    }),
  ),
  /** How netd is started on every node, so a later `restartNetd` starts the same program. */
  netd: z.object({ entry: z.string(), args: z.array(z.string()) }),
  /** At most one managed process per host: netd on nodes, the resolver on `dns`. */
  processes: z.record(z.string(), processRecordSchema),
})

export type LabState = z.infer<typeof stateSchema>

export function labDir(name: string): string {
  return path.join(LABS_DIR, name)
}

export function hostDir(name: string, host: string): string {
  return path.join(LABS_DIR, name, host)
}

export function stateFile(name: string): string {
  return path.join(LABS_DIR, name, 'lab.json')
}

export async function readState(name: string): Promise<LabState | null> {
  let text: string
  try {
    text = await fs.readFile(stateFile(name), 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw e
  }
  const parsed = stateSchema.safeParse(JSON.parse(text))
  if (!parsed.success) {
    throw new LabError(LabErrorCode.state, `state file ${stateFile(name)} is invalid: ${parsed.error.message}`)
  }
  return parsed.data
}

export async function writeState(state: LabState): Promise<void> {
  const file = stateFile(state.name)
  const tmp = `${file}.${process.pid}.tmp`
  await fs.writeFile(tmp, JSON.stringify(state, null, 2) + '\n')
  await fs.rename(tmp, file)
}

/** Lab names that have a state directory, valid or not. */
export async function labsOnDisk(): Promise<string[]> {
  try {
    return (await fs.readdir(LABS_DIR, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw e
  }
}

/**
 * Claims the lab's directory with a non-recursive mkdir, which fails if it exists: two concurrent
 * `up` of the same name cannot both proceed.
 */
export async function claimLabDir(name: string): Promise<boolean> {
  await fs.mkdir(LABS_DIR, { recursive: true })
  try {
    await fs.mkdir(labDir(name))
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw e
  }
}
