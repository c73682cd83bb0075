/**
 * The last applied document, kept on disk so a restarted netd (or one
 * restarted while every manager is away) rebuilds from the same state.
 * Written to a temporary file, fsynced, then renamed: a crash leaves either
 * the old document or the new one, never half of one.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { EMPTY_STATE, parseDesiredState, type DesiredState } from './desired-state.ts'

const FILE = 'desired-state.json'

export async function loadState (dir: string): Promise<DesiredState> {
  let text: string
  try {
    text = await readFile(join(dir, FILE), 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY_STATE
    throw error
  }
  return parseDesiredState(JSON.parse(text))
}

export async function saveState (dir: string, doc: DesiredState): Promise<void> {
  await mkdir(dir, { recursive: true })
  const target = join(dir, FILE)
  const temporary = `${target}.tmp`
  const file = await open(temporary, 'w', 0o600)
  try {
    await file.writeFile(JSON.stringify(doc, null, 2) + '\n')
    await file.sync()
  } finally {
    await file.close()
  }
  await rename(temporary, target)
  const directory = await open(dir, 'r')
  try { await directory.sync() } finally { await directory.close() }
}
