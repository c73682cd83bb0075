/**
 * `down` for one lab, written to work from any leftover: it trusts the state file only for pids
 * (and re-verifies each against /proc), and finds everything else by the lab's namespace prefix.
 * Idempotent: a lab that does not exist is removed successfully.
 */

import fs from 'node:fs/promises'
import { LabError, LabErrorCode } from './errors.ts'
import { deleteNamespaces, namespacesWithPrefix, removeEtcNetns } from './network.ts'
import { isSameProcess, netnsInode, pidsInNetns, terminate } from './processes.ts'
import { labDir, readState } from './state.ts'
import { labPrefix } from './topology.ts'

const GRACE_MS = 3000

async function recordedPids(name: string): Promise<number[]> {
  // A corrupt state file must not keep a lab alive: fall back to namespace scanning alone.
  const state = await readState(name).catch(() => null)
  if (state === null) return []
  const records = Object.values(state.processes)
  const ours = await Promise.all(records.map(isSameProcess))
  return records.filter((_, i) => ours[i]).map((r) => r.pid)
}

async function pidsInLabNamespaces(prefix: string): Promise<number[]> {
  const inodes = await Promise.all((await namespacesWithPrefix(prefix)).map(netnsInode))
  return pidsInNetns(new Set(inodes.filter((i) => i !== null)))
}

export async function teardownLab(name: string): Promise<void> {
  const prefix = labPrefix(name)
  const problems: string[] = []
  const pids = new Set([...(await recordedPids(name)), ...(await pidsInLabNamespaces(prefix))])
  let survivors = await terminate([...pids], GRACE_MS)
  // netd may have started task processes while we were stopping it: one more sweep catches them.
  const late = (await pidsInLabNamespaces(prefix)).filter((p) => !survivors.includes(p))
  survivors = [...survivors, ...(await terminate(late, GRACE_MS))]
  if (survivors.length > 0) problems.push(`processes still running after SIGKILL: ${survivors.join(', ')}`)
  try {
    await deleteNamespaces(await namespacesWithPrefix(prefix))
  } catch (e) {
    problems.push((e as Error).message)
  }
  await removeEtcNetns(prefix)
  await fs.rm(labDir(name), { recursive: true, force: true })
  if (problems.length > 0) throw new LabError(LabErrorCode.teardown, `lab ${name} was not removed completely: ${problems.join('; ')}`)
}
