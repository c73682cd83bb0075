/**
 * The manager's directory (under netd's state directory on a manager node):
 *
 *     certificates/swarm-root-ca.{crt,key}   the cluster root CA (ca/files.ts)
 *     join-tokens.json                       the current worker and manager tokens (0600)
 *     config.json                            addresses and the heartbeat period
 *     pending-joins.json                     nodes admitted (certificate issued) but not yet recorded
 *     raft/                                  the replicated log (WAL and snapshots)
 *
 * Everything else the manager knows is in the log.
 */
import { join } from 'node:path'
import { z } from 'zod'
import { loadRootCa, saveRootCa } from './ca/files.ts'
import type { JoinTokens } from './ca/join-token.ts'
import type { RootCa } from './ca/root-ca.ts'
import { ManagerError } from './errors.ts'
import { readJsonFile, writeJsonFile } from './json-file.ts'

export const CA_DIR = 'certificates'
export const RAFT_DIR = 'raft'
const TOKENS_FILE = 'join-tokens.json'
const CONFIG_FILE = 'config.json'
const PENDING_FILE = 'pending-joins.json'

export const managerConfigSchema = z.strictObject({
  /** `host:port` the manager is reached at, as the join command shows it. */
  advertiseAddr: z.string().min(1),
  /** `host:port` it listens on. */
  listenAddr: z.string().min(1),
  /** How often nodes heartbeat; a node silent for three periods is down (`--dispatcher-heartbeat`). */
  heartbeatPeriodMs: z.number().int().min(100).max(3_600_000)
})

export type ManagerConfig = z.infer<typeof managerConfigSchema>

const tokensSchema = z.strictObject({ worker: z.string().min(1), manager: z.string().min(1) })

const pendingSchema = z.record(z.string(), z.strictObject({ role: z.enum(['worker', 'manager']), admittedAt: z.number() }))

export async function writeManagerFiles (dir: string, files: { rootCa: RootCa, tokens: JoinTokens, config: ManagerConfig }): Promise<void> {
  await saveRootCa(join(dir, CA_DIR), files.rootCa)
  await saveJoinTokens(dir, files.tokens)
  await writeJsonFile(join(dir, CONFIG_FILE), files.config)
}

export async function readManagerFiles (dir: string): Promise<{ rootCa: RootCa, tokens: JoinTokens, config: ManagerConfig }> {
  const rootCa = await loadRootCa(join(dir, CA_DIR))
  const tokens = await readJsonFile(join(dir, TOKENS_FILE), tokensSchema)
  const config = await readJsonFile(join(dir, CONFIG_FILE), managerConfigSchema)
  if (rootCa === undefined || tokens === undefined || config === undefined) {
    throw new ManagerError('MANAGER_ERR_FILES', `${dir} does not hold a manager (root CA, join tokens and config are needed)`)
  }
  return { rootCa, tokens, config }
}

export async function saveJoinTokens (dir: string, tokens: JoinTokens): Promise<void> {
  await writeJsonFile(join(dir, TOKENS_FILE), { worker: tokens.worker, manager: tokens.manager })
}

/**
 * Nodes whose certificate was issued but which have not registered yet: only
 * these may be recorded by `node.register`, so a node removed from the swarm
 * cannot come back with its old certificate. Kept on disk: the manager may
 * restart between the two steps.
 */
export class PendingJoins {
  readonly #path: string
  #entries: z.infer<typeof pendingSchema>

  private constructor (path: string, entries: z.infer<typeof pendingSchema>) {
    this.#path = path
    this.#entries = entries
  }

  static async open (dir: string): Promise<PendingJoins> {
    const path = join(dir, PENDING_FILE)
    return new PendingJoins(path, (await readJsonFile(path, pendingSchema)) ?? {})
  }

  has (nodeId: string): boolean {
    return Object.hasOwn(this.#entries, nodeId)
  }

  async add (nodeId: string, role: 'worker' | 'manager', now: number): Promise<void> {
    this.#entries = { ...this.#entries, [nodeId]: { role, admittedAt: now } }
    await writeJsonFile(this.#path, this.#entries)
  }

  async remove (nodeId: string): Promise<void> {
    if (!this.has(nodeId)) return
    const { [nodeId]: _gone, ...rest } = this.#entries
    this.#entries = rest
    await writeJsonFile(this.#path, this.#entries)
  }
}
