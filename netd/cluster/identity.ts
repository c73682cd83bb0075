/**
 * What a node keeps of its swarm membership, under netd's state directory:
 *
 *     swarm/identity.json             cluster id, node id, role, managers' addresses
 *     swarm/certificates/swarm-node.* the node's key and certificate (manager/ca/files.ts)
 *     swarm/manager/                  the manager module's directory, on a manager
 *
 * identity.json is written last when a node joins or initialises a swarm and
 * removed first when it leaves: it is what says "this node is in a swarm".
 * Anything else found without it is a leftover of an interrupted init or
 * join, and is removed before the next one.
 */
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { loadNodeCredentials, saveNodeCredentials } from '../../manager/ca/files.ts'
import type { NodeCredentials } from '../../manager/ca/root-ca.ts'
import { readJsonFile, writeJsonFile } from '../../manager/json-file.ts'
import { SwarmError } from './errors.ts'

export const identitySchema = z.strictObject({
  clusterId: z.string().min(1),
  nodeId: z.string().min(1),
  role: z.enum(['worker', 'manager']),
  /** `host:port` of the managers, the first one tried first. */
  managers: z.array(z.string().min(1)).min(1)
})

export type SwarmIdentity = z.infer<typeof identitySchema>

export function swarmDir (stateDir: string): string {
  return join(stateDir, 'swarm')
}

export function managerDir (stateDir: string): string {
  return join(swarmDir(stateDir), 'manager')
}

const identityPath = (stateDir: string): string => join(swarmDir(stateDir), 'identity.json')
const certificatesDir = (stateDir: string): string => join(swarmDir(stateDir), 'certificates')

export interface Membership {
  readonly identity: SwarmIdentity
  readonly credentials: NodeCredentials
}

/** The node's membership, or undefined when it is in no swarm. */
export async function loadMembership (stateDir: string): Promise<Membership | undefined> {
  let identity: SwarmIdentity | undefined
  let credentials: NodeCredentials | undefined
  try {
    identity = await readJsonFile(identityPath(stateDir), identitySchema)
    if (identity === undefined) return undefined
    credentials = await loadNodeCredentials(certificatesDir(stateDir))
  } catch (error) {
    throw new SwarmError('NETD_ERR_SWARM_FILES', `the swarm files in ${swarmDir(stateDir)} are unusable: ${(error as Error).message}`)
  }
  if (credentials === undefined) throw new SwarmError('NETD_ERR_SWARM_FILES', `${certificatesDir(stateDir)} holds no node certificate`)
  return { identity, credentials }
}

export async function saveCredentials (stateDir: string, credentials: NodeCredentials): Promise<void> {
  await saveNodeCredentials(certificatesDir(stateDir), credentials)
}

/** The last step of joining: from here on, the node is in the swarm. */
export async function saveIdentity (stateDir: string, identity: SwarmIdentity): Promise<void> {
  await writeJsonFile(identityPath(stateDir), identity)
}

/** Forgets the membership: identity first, then every file of it. */
export async function removeMembership (stateDir: string): Promise<void> {
  await rm(identityPath(stateDir), { force: true })
  await rm(swarmDir(stateDir), { recursive: true, force: true })
}
