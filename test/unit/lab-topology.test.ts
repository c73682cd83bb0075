import t from 'tap'
import { LabErrorCode } from '../../lab/errors.ts'
import { netnsScripts, rootScript } from '../../lab/ip-plan.ts'
import {
  MAX_NODES,
  allHosts,
  buildTopology,
  findHost,
  hostNetns,
  labNameOfNetns,
  labPrefix,
  nodeHosts,
  resolvConf,
  resolverClients,
  validateLabName,
  validateNodeCount,
} from '../../lab/topology.ts'
import { labNameFor } from '../helpers/lab.ts'

t.test('lab names', async (t) => {
  for (const ok of ['lab', 'a', 'a1234567', 'ci2']) t.equal(validateLabName(ok), ok)
  for (const bad of ['', 'Lab', '1lab', 'lab-1', 'abcdefghi', 'la b', 'lab_']) {
    t.throws(() => validateLabName(bad), { code: LabErrorCode.name }, JSON.stringify(bad))
  }
})

t.test('node counts', async (t) => {
  t.equal(validateNodeCount(1), 1)
  t.equal(validateNodeCount(MAX_NODES), MAX_NODES)
  for (const bad of [0, -1, MAX_NODES + 1, 1.5, Number.NaN]) t.throws(() => validateNodeCount(bad), { code: LabErrorCode.nodes })
})

t.test('prefixes of distinct labs never overlap', async (t) => {
  t.equal(labPrefix('lab'), 'weftlab-lab-')
  t.notOk(labPrefix('lab1').startsWith(labPrefix('lab')))
  t.equal(hostNetns('ci', 'h3'), 'weftlab-ci-h3')
})

t.test('topology of a 3-node lab', async (t) => {
  const topo = buildTopology('lab', 3)
  t.same(
    allHosts(topo).map((h) => [h.name, h.role, h.netns, h.address]),
    [
      ['ul', 'underlay', 'weftlab-lab-ul', null],
      ['h1', 'node', 'weftlab-lab-h1', '192.168.99.11'],
      ['h2', 'node', 'weftlab-lab-h2', '192.168.99.12'],
      ['h3', 'node', 'weftlab-lab-h3', '192.168.99.13'],
      ['outside', 'outside', 'weftlab-lab-outside', '192.168.99.200'],
      ['dns', 'dns', 'weftlab-lab-dns', '192.168.99.2'],
    ],
  )
  t.same(nodeHosts(topo).map((h) => h.name), ['h1', 'h2', 'h3'])
  t.same(resolverClients(topo).map((h) => h.name), ['h1', 'h2', 'h3', 'outside'])
  t.ok(Object.isFrozen(topo) && Object.isFrozen(topo.hosts))
  t.equal(findHost(topo, 'outside').address, '192.168.99.200')
  t.throws(() => findHost(topo, 'h4'), { code: LabErrorCode.host })
  t.equal(resolvConf(), 'nameserver 192.168.99.2\nsearch lab.test\n')
})

t.test('the largest lab stays inside the underlay subnet, below the outside host', async (t) => {
  const addresses = buildTopology('big', MAX_NODES).hosts.map((h) => h.address)
  t.equal(new Set(addresses).size, addresses.length, 'addresses are unique')
  t.equal(addresses[MAX_NODES - 1], '192.168.99.30')
})

t.test('namespace names map back to their lab', async (t) => {
  t.equal(labNameOfNetns('weftlab-lab-h1'), 'lab')
  t.equal(labNameOfNetns('weftlab-ci2-h1-task7'), 'ci2', "netd's task namespaces belong to the lab")
  t.equal(labNameOfNetns('weftlab-'), null)
  t.equal(labNameOfNetns('weftlab-Bad-h1'), null)
  t.equal(labNameOfNetns('other-lab-h1'), null)
})

t.test('iproute2 batches create every veth end inside a lab namespace', async (t) => {
  const topo = buildTopology('x', 1)
  t.equal(
    rootScript(topo),
    [
      'netns add weftlab-x-ul',
      'netns add weftlab-x-h1',
      'netns add weftlab-x-outside',
      'netns add weftlab-x-dns',
      'link add name eth0 netns weftlab-x-h1 mtu 1500 type veth peer name h1 netns weftlab-x-ul mtu 1500',
      'link add name eth0 netns weftlab-x-outside mtu 1500 type veth peer name outside netns weftlab-x-ul mtu 1500',
      'link add name eth0 netns weftlab-x-dns mtu 1500 type veth peer name dns netns weftlab-x-ul mtu 1500',
      '',
    ].join('\n'),
  )
  const scripts = netnsScripts(topo)
  t.same(scripts.map((s) => s.netns), ['weftlab-x-ul', 'weftlab-x-h1', 'weftlab-x-outside', 'weftlab-x-dns'])
  t.match(scripts[0]?.script, /link add br0 type bridge\n.*link set h1 master br0 up/s)
  t.equal(scripts[1]?.script, 'link set lo up\naddr add 192.168.99.11/24 dev eth0\nlink set eth0 up\n')
})

t.test('test lab names are valid, stable per file and distinct per index', async (t) => {
  const a = labNameFor('/work/main/test/e2e/lab.test.ts', 0)
  t.equal(validateLabName(a), a)
  t.equal(labNameFor('/work/main/test/e2e/lab.test.ts', 0), a)
  t.not(labNameFor('/work/main/test/e2e/lab.test.ts', 1), a)
  t.not(labNameFor('/work/main/test/e2e/other.test.ts', 0), a)
  t.match(labNameFor('/x/9lives.test.ts', 0), /^t9l/)
})
