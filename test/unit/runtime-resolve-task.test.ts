/**
 * Which task `netd exec TASK` means: id, name, `service.slot`, id prefix —
 * and the errors for none and for several.
 */
import t from 'tap'
import { resolveTask, type TaskRef } from '../../netd/runtime/resolve-task.ts'

const tasks: TaskRef[] = [
  { id: 'k2m9p1a8s5d4f6g0h2j4kx7q3', name: 'web.1.k2m9p1a8s5d4f6g0h2j4kx7q3', running: true },
  { id: 'k2n0aaaaaaaaaaaaaaaaaaaaa', name: 'web.2.k2n0aaaaaaaaaaaaaaaaaaaaa', running: false },
  { id: 'zzz1bbbbbbbbbbbbbbbbbbbbb', name: 'web.2.zzz1bbbbbbbbbbbbbbbbbbbbb', running: true },
  { id: 'q7q7ccccccccccccccccccccc', name: 'web.3.q7q7ccccccccccccccccccccc', running: false },
  { id: 'q7q8ddddddddddddddddddddd', name: 'web.3.q7q8ddddddddddddddddddddd', running: false },
  { id: 'web', name: 'odd.1.web', running: true },
  { id: 'r1r1eeeeeeeeeeeeeeeeeeeee', name: 'web.10.r1r1eeeeeeeeeeeeeeeeeeeee', running: true }
]

const id = (query: string): string => resolveTask(query, tasks).id

t.test('a full task id', async (t) => {
  t.equal(id('k2m9p1a8s5d4f6g0h2j4kx7q3'), 'k2m9p1a8s5d4f6g0h2j4kx7q3')
  t.equal(id('web'), 'web', 'an exact id wins over a name that starts with it')
})

t.test('a full task name', async (t) => {
  t.equal(id('web.2.k2n0aaaaaaaaaaaaaaaaaaaaa'), 'k2n0aaaaaaaaaaaaaaaaaaaaa', 'even when the task has ended')
})

t.test('service.slot: the slot\'s running task', async (t) => {
  t.equal(id('web.1'), 'k2m9p1a8s5d4f6g0h2j4kx7q3')
  t.equal(id('web.2'), 'zzz1bbbbbbbbbbbbbbbbbbbbb', 'the ended task of the same slot is passed over')
  t.equal(id('web.10'), 'r1r1eeeeeeeeeeeeeeeeeeeee', 'web.1 does not match web.10: a name part ends at a dot')
  t.equal(id('odd'), 'web', 'a service with one task')
})

t.test('a slot with only ended tasks, and more than one of them, is ambiguous', async (t) => {
  t.throws(() => id('web.3'), { code: 'NETD_ERR_TASK_AMBIGUOUS' })
  try {
    id('web.3')
  } catch (error) {
    t.same((error as { details: string[] }).details, ['web.3.q7q7ccccccccccccccccccccc (q7q7ccccccccccccccccccccc)', 'web.3.q7q8ddddddddddddddddddddd (q7q8ddddddddddddddddddddd)'], 'the candidates are listed')
  }
})

t.test('a unique prefix of an id', async (t) => {
  t.equal(id('k2m'), 'k2m9p1a8s5d4f6g0h2j4kx7q3')
  t.equal(id('q7q8'), 'q7q8ddddddddddddddddddddd')
  t.throws(() => id('k2'), { code: 'NETD_ERR_TASK_AMBIGUOUS' })
  t.throws(() => id('q7q'), { code: 'NETD_ERR_TASK_AMBIGUOUS' })
})

t.test('nothing matches, or nothing was asked', async (t) => {
  t.throws(() => id('db.1'), { code: 'NETD_ERR_TASK_NOT_FOUND' })
  t.throws(() => id('web.4'), { code: 'NETD_ERR_TASK_NOT_FOUND' })
  t.throws(() => id(''), { code: 'NETD_ERR_TASK_NOT_FOUND' })
  t.throws(() => resolveTask('x', []), { code: 'NETD_ERR_TASK_NOT_FOUND' })
})
