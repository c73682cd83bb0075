/**
 * Object ids. Every id is chosen by the proposer and carried inside the
 * command (as SwarmKit does): `apply` never invents one, so replaying the log
 * yields the same ids, and a command proposed twice is refused the second time
 * (STORE_ERR_EXISTS) instead of creating a twin.
 *
 * - The API edge (a user's `service create`, a node's join) takes `randomId()`.
 * - The orchestrator is pure, so it derives ids from what it was given:
 *   `derivedId(clusterId, stateIndex, n)`. The same state yields the same ids;
 *   a round proposed again before the first was applied is refused whole.
 *
 * Ids look like Swarm's: 25 characters of [a-z0-9], and they satisfy the
 * desired-state document's id pattern.
 */
import { createHash, randomBytes } from 'node:crypto'

export const ID_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,31}$/
export const ID_LENGTH = 25

function base36 (bytes: Buffer): string {
  const value = BigInt(`0x${bytes.subarray(0, 16).toString('hex')}`)
  return value.toString(36).padStart(ID_LENGTH, '0').slice(-ID_LENGTH)
}

export function randomId (): string {
  return base36(randomBytes(16))
}

export function derivedId (...parts: ReadonlyArray<string | number>): string {
  return base36(createHash('sha256').update(parts.join('\u0000')).digest())
}
