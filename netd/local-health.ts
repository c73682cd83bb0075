/**
 * What this node knows before the manager does: a local task that has ended
 * or failed its health check. The document the manager sent still calls its
 * endpoints healthy until the manager hears of it; dnsd and lb are given the
 * document with those endpoints marked unhealthy, so the task leaves local
 * answers and backend sets at once. Only ever subtracts: a task comes back
 * into traffic when the manager says it is healthy, never on local word alone.
 */
import type { DesiredState } from './desired-state.ts'

/** The document with the endpoints of `down` tasks unhealthy; the same object when that changes nothing. */
export function withLocalHealth (doc: DesiredState, down: ReadonlySet<string>): DesiredState {
  if (down.size === 0 || !doc.endpoints.some((e) => e.healthy && down.has(e.task))) return doc
  return {
    ...doc,
    endpoints: doc.endpoints.map((e) => (e.healthy && down.has(e.task) ? { ...e, healthy: false } : e))
  }
}
