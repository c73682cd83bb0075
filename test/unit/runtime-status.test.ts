/**
 * The status reported for a task, from what was observed: Swarm's states,
 * exit codes, signals read from 128+N, and stops that are not failures.
 */
import t from 'tap'
import { endedStatus, isFinal, runningStatus, signalOfExitCode, startingStatus, TASK_STATES } from '../../netd/runtime/status.ts'
import { parseExitStatus } from '../../netd/runtime/task-dir.ts'

const id = { task: 't1', name: 'web.1.t1' }
const ended = { finishedAt: '2025-01-01T00:00:01.000Z', startedAt: '2025-01-01T00:00:00.000Z', stopRequested: false }

t.test('Swarm\'s states, in order; the last four are final', async (t) => {
  t.same(TASK_STATES, ['new', 'assigned', 'preparing', 'starting', 'running', 'complete', 'failed', 'shutdown', 'rejected'])
  t.same(TASK_STATES.filter(isFinal), ['complete', 'failed', 'shutdown', 'rejected'])
})

t.test('starting and running', async (t) => {
  t.match(startingStatus(id), { ...id, state: 'starting', message: 'starting', pid: null, exitCode: null })
  t.match(runningStatus(id, 42, 'then'), { ...id, state: 'running', message: 'started', pid: 42, startedAt: 'then', error: null })
})

t.test('exit 0 is complete, anything else failed with the code', async (t) => {
  t.match(endedStatus(id, { ...ended, exitCode: 0 }), { state: 'complete', message: 'finished', exitCode: 0, signal: null, error: null, pid: null, finishedAt: ended.finishedAt })
  t.match(endedStatus(id, { ...ended, exitCode: 3 }), { state: 'failed', exitCode: 3, signal: null, error: 'non-zero exit (3)' })
})

t.test('128+N reads as signal N', async (t) => {
  t.equal(signalOfExitCode(137), 'SIGKILL')
  t.equal(signalOfExitCode(143), 'SIGTERM')
  t.equal(signalOfExitCode(128), null)
  t.equal(signalOfExitCode(1), null)
  t.equal(signalOfExitCode(255), null)
  t.match(endedStatus(id, { ...ended, exitCode: 137 }), { state: 'failed', exitCode: 137, signal: 'SIGKILL', error: 'non-zero exit (137): killed by SIGKILL' })
})

t.test('a stop netd asked for is shutdown, whatever the code', async (t) => {
  for (const exitCode of [0, 1, 137, 143, null]) {
    t.match(endedStatus(id, { ...ended, exitCode, stopRequested: true }), { state: 'shutdown', message: 'shutdown', error: null, exitCode })
  }
})

t.test('a launch failure carries the last line of stderr', async (t) => {
  t.equal(endedStatus(id, { ...ended, exitCode: 127, stderrTail: 'unshare: failed to execute x: No such file or directory' }).error,
    'non-zero exit (127): unshare: failed to execute x: No such file or directory')
  t.equal(endedStatus(id, { ...ended, exitCode: 1, stderrTail: 'whatever' }).error, 'non-zero exit (1)', 'not for the task\'s own failures')
})

t.test('an end without a status is failed, and says why', async (t) => {
  t.match(endedStatus(id, { ...ended, exitCode: null, finishedAt: null, lost: 'the supervisor ended without recording it' }),
    { state: 'failed', exitCode: null, finishedAt: null, error: 'exit status lost: the supervisor ended without recording it' })
})

t.test('the exit-status file: one code and a newline, anything else is not there yet', async (t) => {
  t.equal(parseExitStatus('0\n'), 0)
  t.equal(parseExitStatus('255\n'), 255)
  for (const torn of ['', '1', '256\n', '-1\n', ' 1\n', '1\n2\n', 'x\n']) t.equal(parseExitStatus(torn), null, JSON.stringify(torn))
})
