/**
 * Labs for tests. Each test file gets lab names derived from its own path, so files run in
 * parallel without clashing, and a lab left behind by a killed run of the same file is removed
 * before the new one is created. Teardown is registered before anything can fail.
 */

import { createHash } from 'node:crypto'
import path from 'node:path'
import { Lab, labDown, labUp, type LabUpOptions } from '../../lab/lab.ts'
import { runCommand, type CommandResult, type RunOptions } from '../../lab/run-command.ts'
import { NAMESPACE_PREFIX } from '../../lab/topology.ts'

export type { Lab }

interface Teardownable {
  teardown(fn: () => void | Promise<void>): void
}

export interface StartLabOptions extends Omit<LabUpOptions, 'name'> {
  /** Test file the name derives from; defaults to the running script (tap runs one file per process). */
  readonly file?: string
}

let labsStarted = 0

/** `<3 letters of the file name><4 chars of a hash of its path><counter>`: 8 chars, a valid lab name. */
export function labNameFor(file: string, index: number): string {
  if (index < 0 || index >= 36) throw new Error(`a test file may start at most 36 labs (asked for #${index})`)
  const stem = path.basename(file).toLowerCase().replace(/[^a-z0-9]/g, '')
  const head = /^[a-z]/.test(stem) ? stem.slice(0, 3) : `t${stem.slice(0, 2)}`
  const hash = BigInt(`0x${createHash('sha256').update(path.resolve(file)).digest('hex').slice(0, 12)}`).toString(36).slice(-4).padStart(4, '0')
  return `${head}${hash}${index.toString(36)}`
}

/**
 * A fresh lab name for this test file, with its removal already registered on t and any leftover
 * of a killed earlier run removed. For tests that create the lab some other way (e.g. the CLI).
 */
export async function reserveLabName(t: Teardownable, file: string = process.argv[1] ?? 'test'): Promise<string> {
  const name = labNameFor(file, labsStarted++)
  t.teardown(() => labDown(name))
  await labDown(name)
  return name
}

export async function startLab(t: Teardownable, opts: StartLabOptions = {}): Promise<Lab> {
  const { file, ...upOptions } = opts
  const name = await reserveLabName(t, file)
  return labUp({ ...upOptions, name })
}

/** Runs a command inside any weft lab namespace, including task namespaces netd created. */
export function execIn(netns: string, argv: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  if (!netns.startsWith(NAMESPACE_PREFIX)) throw new Error(`refusing to run in namespace ${netns}: not a weft lab namespace`)
  return runCommand(['ip', 'netns', 'exec', netns, ...argv], opts)
}
