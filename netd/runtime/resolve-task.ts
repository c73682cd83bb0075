/**
 * Which task `netd exec TASK` means. In order, the first rule that matches
 * anything decides:
 *
 *   1. the task id, exactly;
 *   2. the task name (`web.2.<id>`), exactly;
 *   3. a leading part of the name that ends at a dot: `web.2` is slot 2 of service web (and `web`
 *      the whole service). Several matches (a slot's earlier, finished tasks) are narrowed to the
 *      running ones;
 *   4. a prefix of the task id, as docker accepts for containers.
 *
 * More than one task left is an error that lists them; so is none.
 */
import { TaskRuntimeError } from './errors.ts'

export interface TaskRef {
  readonly id: string
  readonly name: string
  readonly running: boolean
}

function pick<T extends TaskRef> (query: string, matches: readonly T[], rule: string): T {
  if (matches.length === 1) return matches[0] as T
  const listed = matches.map((m) => `${m.name} (${m.id}${m.running ? ', running' : ''})`).sort()
  throw new TaskRuntimeError('NETD_ERR_TASK_AMBIGUOUS', `task "${query}" is ambiguous: ${rule} matches ${listed.join(', ')}`, listed)
}

export function resolveTask<T extends TaskRef> (query: string, tasks: readonly T[]): T {
  if (query === '') throw new TaskRuntimeError('NETD_ERR_TASK_NOT_FOUND', 'no task given')

  const byId = tasks.find((t) => t.id === query)
  if (byId !== undefined) return byId

  const byName = tasks.filter((t) => t.name === query)
  if (byName.length > 0) return pick(query, byName, 'the name')

  const byNamePrefix = tasks.filter((t) => t.name.startsWith(`${query}.`))
  if (byNamePrefix.length > 0) {
    const running = byNamePrefix.filter((t) => t.running)
    return pick(query, running.length > 0 ? running : byNamePrefix, 'the name')
  }

  const byIdPrefix = tasks.filter((t) => t.id.startsWith(query))
  if (byIdPrefix.length > 0) return pick(query, byIdPrefix, 'the id prefix')

  throw new TaskRuntimeError('NETD_ERR_TASK_NOT_FOUND', `no task "${query}" on this node: give a task id, a unique prefix of one, or a name such as web.2`)
}
