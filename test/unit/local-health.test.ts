/**
 * The node's own word on its tasks (netd/local-health.ts): it only takes
 * endpoints out of traffic, and leaves the document alone when it changes nothing.
 */
import t from 'tap'
import { parseDesiredState } from '../../netd/desired-state.ts'
import { withLocalHealth } from '../../netd/local-health.ts'

const doc = parseDesiredState({
  version: 1,
  revision: 3,
  networks: [{ id: 'n1', name: 'net', subnet: '10.0.1.0/24', gateway: '10.0.1.1', vni: 4096 }],
  endpoints: [
    { task: 'a', network: 'n1', ip: '10.0.1.2', mac: '02:42:0a:00:01:02', healthy: true },
    { task: 'b', network: 'n1', ip: '10.0.1.3', mac: '02:42:0a:00:01:03', healthy: false }
  ],
  remoteEndpoints: [{ network: 'n1', ip: '10.0.1.4', mac: '02:42:0a:00:01:04', node: '192.168.1.2', task: 'a', healthy: true }]
})

t.test('a task down here leaves traffic; nothing else changes', async (t) => {
  const served = withLocalHealth(doc, new Set(['a']))
  t.same(served.endpoints.map((e) => [e.task, e.healthy]), [['a', false], ['b', false]])
  t.equal(served.remoteEndpoints, doc.remoteEndpoints, 'remote endpoints are other nodes\' word')
  t.equal(doc.endpoints[0]!.healthy, true, 'the manager\'s document is untouched')
  t.equal(withLocalHealth(doc, new Set()), doc, 'nobody down: the same document')
  t.equal(withLocalHealth(doc, new Set(['b', 'gone'])), doc, 'already unhealthy, or unknown: the same document')
})
