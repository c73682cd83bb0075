import t from 'tap'
import { parseBatchErrors } from '../../netd/iproute.ts'
import { execute } from '../../netd/executor.ts'
import type { IprouteRunner } from '../../netd/iproute.ts'
import type { Command } from '../../netd/plan.ts'

t.test('batch errors are tied to their line, as iproute2 -force prints them', async (t) => {
  // Captured from `ip -force -batch -` (iproute2 6.1).
  const stderr = 'Cannot find device "nope"\nCommand failed -:1\nCannot find device "nope2"\nCommand failed -:3\n'
  t.same(parseBatchErrors(stderr), [
    { index: 0, message: 'Cannot find device "nope"' },
    { index: 2, message: 'Cannot find device "nope2"' }
  ])
  // `ip neigh` exits the whole batch on failure, with no trailer.
  t.same(parseBatchErrors('RTNETLINK answers: No such file or directory\n'), [{ index: -1, message: 'RTNETLINK answers: No such file or directory' }])
  t.same(parseBatchErrors(''), [{ index: -1, message: 'batch failed without a message' }])
})

t.test('a removal that finds nothing is done; any other failure is reported with its line', async (t) => {
  const runner: IprouteRunner = {
    batch: async () => ({ failures: [{ index: 0, message: 'Cannot find device "ve1"' }, { index: 1, message: 'Cannot find device "eth0"' }] }),
    dump: async () => [],
    sysctls: async () => new Map(),
    namespaces: async () => []
  }
  const command = (line: string): Command => ({ stage: 1, netns: 'ns', tool: 'ip', line, reason: 'test' })
  await t.resolves(execute(runner, [command('link del dev ve1'), command('link del dev eth0')]))
  await t.rejects(execute(runner, [command('link del dev ve1'), command('link set dev eth0 up')]), {
    code: 'NETD_ERR_KERNEL',
    details: ['ip in ns: Cannot find device "eth0" (link set dev eth0 up)']
  })
})
