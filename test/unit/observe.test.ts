/**
 * observe.ts against iproute2 JSON as `ip -j -d addr show`, `ip -j neigh show`
 * and `bridge -j fdb show` print it, noise included.
 */
import t from 'tap'
import { classifyNamespace, observeKernel, parseNetworkNamespace, parseTaskNamespace, strayHostLinks } from '../../netd/observe.ts'
import type { IprouteRunner } from '../../netd/iproute.ts'

type Json = any

const lo: Json = { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK', 'UP', 'LOWER_UP'], mtu: 65536, address: '00:00:00:00:00:00', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }] }
const br0: Json = { ifindex: 2, ifname: 'br0', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], mtu: 1450, address: '5e:10:7c:8a:1b:01', linkinfo: { info_kind: 'bridge', info_data: { forward_delay: 1500, stp_state: 0 } }, addr_info: [] }
// The real sample from `ip -j -d addr show vx0`.
const vx0: Json = { ifindex: 4, ifname: 'vx0', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], mtu: 1450, master: 'br0', address: '26:71:98:c7:89:dc', linkinfo: { info_kind: 'vxlan', info_data: { id: 42, local: '192.168.5.1', port: 4789, learning: false, proxy: true } }, ifalias: 'hello', addr_info: [] }
const port: Json = { ifindex: 5, link_netnsid: 1, ifname: 've628b49d96d', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], mtu: 1450, master: 'br0', address: 'ae:51:0c:11:22:33', ifalias: 'weft:task=t1', linkinfo: { info_kind: 'veth', info_slave_kind: 'bridge' }, addr_info: [] }
const dummy: Json = { ifindex: 6, ifname: 'dummy0', flags: ['BROADCAST', 'NOARP'], mtu: 1500, address: 'f2:00:00:00:00:01', linkinfo: { info_kind: 'dummy' }, addr_info: [] }

const fdb: Json[] = [
  { mac: '5e:10:7c:8a:1b:01', ifname: 'br0', vlan: 1, flags: ['self'], state: 'permanent' },
  { mac: '26:71:98:c7:89:dc', ifname: 'vx0', master: 'br0', state: 'permanent' },
  { mac: 'ae:51:0c:11:22:33', ifname: 've628b49d96d', master: 'br0', state: 'permanent' },
  { mac: '33:33:00:00:00:01', ifname: 've628b49d96d', flags: ['self'], state: 'permanent' },
  { mac: '02:00:00:00:00:01', ifname: 'vx0', dst: '192.168.5.2', linkNetNsId: 0, flags: ['self'], state: 'permanent' },
  { mac: '02:00:00:00:00:02', ifname: 'vx0', dst: '192.168.5.3', linkNetNsId: 0, flags: ['self'], state: 'permanent' },
  // Learned, not ours: no "permanent" state.
  { mac: '02:00:00:00:00:09', ifname: 'vx0', dst: '192.168.5.9', flags: ['self'] }
]
const neighbours: Json[] = [
  { dst: '10.0.0.5', dev: 'vx0', lladdr: '02:00:00:00:00:01', state: ['PERMANENT'] },
  { dst: '10.0.0.6', dev: 'vx0', lladdr: '02:00:00:00:00:02', state: ['PERMANENT'] },
  { dst: '10.0.0.7', dev: 'vx0', lladdr: '02:00:00:00:00:07', state: ['STALE'] },
  { dst: '10.0.0.8', dev: 'br0', lladdr: '02:00:00:00:00:08', state: ['PERMANENT'] },
  { dst: '10.0.0.9', dev: 'vx0', state: ['FAILED'] }
]

t.test('parseNetworkNamespace reads lo, bridge, VXLAN, ports, FDB and neighbours; everything else is stray', async (t) => {
  const state = parseNetworkNamespace('wt-n-blue', 'blue', [lo, br0, vx0, port, dummy], neighbours, fdb, new Map())
  t.equal(state.loUp, true)
  t.same(state.bridge, { ifname: 'br0', mtu: 1450, up: true })
  t.same(state.vxlan, { ifname: 'vx0', mtu: 1450, up: true, vni: 42, local: '192.168.5.1', port: 4789, learning: false, proxy: true, master: 'br0' })
  t.same([...state.ports], [['t1', { ifname: 've628b49d96d', task: 't1', mtu: 1450, up: true, master: 'br0' }]])
  t.same(state.strayLinks, ['dummy0'])
  t.same([...state.fdb], [['02:00:00:00:00:01', '192.168.5.2'], ['02:00:00:00:00:02', '192.168.5.3']])
  t.same([...state.neighbours], [['10.0.0.5', '02:00:00:00:00:01'], ['10.0.0.6', '02:00:00:00:00:02']])
})

t.test('parseNetworkNamespace: down links, no master, learning on', async (t) => {
  const downVx = { ...vx0, flags: ['BROADCAST', 'MULTICAST'], master: undefined, linkinfo: { info_kind: 'vxlan', info_data: { id: 7, local: '192.168.5.1', port: 4789, learning: true, proxy: false } } }
  const downLo = { ...lo, flags: ['LOOPBACK'] }
  const loosePort = { ...port, flags: ['BROADCAST', 'MULTICAST'], master: undefined }
  const state = parseNetworkNamespace('wt-n-blue', 'blue', [downLo, downVx, loosePort], [], [], new Map())
  t.equal(state.loUp, false)
  t.equal(state.bridge, null)
  t.match(state.vxlan, { vni: 7, up: false, learning: true, proxy: false, master: null })
  t.match(state.ports.get('t1'), { up: false, master: null })
})

t.test('parseNetworkNamespace: a link with our name but the wrong kind, or a veth without our alias, is stray', async (t) => {
  const fakeVx = { ...dummy, ifname: 'vx0' }
  const fakeBr = { ...vx0, ifname: 'br0' }
  const untagged = { ...port, ifalias: undefined }
  const state = parseNetworkNamespace('wt-n-blue', 'blue', [fakeVx, fakeBr, untagged], [], [], new Map())
  t.equal(state.vxlan, null)
  t.equal(state.bridge, null)
  t.same(state.strayLinks, ['vx0', 'br0', 've628b49d96d'])
  t.equal(state.ports.size, 0)
})

t.test('parseNetworkNamespace: bridged frames reach netfilter if any of br_netfilter\'s switches is on; null without the module', async (t) => {
  const read = (values: Array<[string, string]>): boolean | null => parseNetworkNamespace('wt-n-blue', 'blue', [], [], [], new Map(values)).bridgeNetfilter
  t.equal(read([]), null, 'br_netfilter not loaded: no names')
  t.equal(read([['net.bridge.bridge-nf-call-iptables', '0'], ['net.bridge.bridge-nf-call-ip6tables', '0'], ['net.bridge.bridge-nf-call-arptables', '0']]), false)
  t.equal(read([['net.bridge.bridge-nf-call-iptables', '0'], ['net.bridge.bridge-nf-call-ip6tables', '0'], ['net.bridge.bridge-nf-call-arptables', '1']]), true)
  t.equal(read([['net.bridge.bridge-nf-call-iptables', '1']]), true)
})

t.test('parseNetworkNamespace: FDB entries without ifname (a dump of one device) are not read as ours', async (t) => {
  // `bridge fdb show dev vx0` omits ifname; observeKernel dumps all devices, which include it.
  const state = parseNetworkNamespace('wt-n-blue', 'blue', [vx0], [], [{ mac: '02:00:00:00:00:01', dst: '192.168.5.2', linkNetNsId: 0, flags: ['self'], state: 'permanent' } as Json], new Map())
  t.equal(state.fdb.size, 0)
})

const eth0: Json = {
  ifindex: 2, link_netnsid: 0, ifname: 'eth0', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], mtu: 1450, address: '02:42:0a:00:01:02', ifalias: 'weft:net=blue',
  linkinfo: { info_kind: 'veth' },
  addr_info: [
    { family: 'inet', local: '10.0.1.2', prefixlen: 24, broadcast: '10.0.1.255', scope: 'global', label: 'eth0' },
    { family: 'inet6', local: 'fe80::42:aff:fe00:102', prefixlen: 64, scope: 'link' }
  ]
}

t.test('parseTaskNamespace reads interfaces by their network alias', async (t) => {
  const eth1 = { ...eth0, ifname: 'eth1', ifalias: 'weft:net=red', flags: ['BROADCAST', 'MULTICAST'], addr_info: [] }
  const eth2 = { ...eth0, ifname: 'eth2', ifalias: 'weft:net=green', addr_info: [{ family: 'inet', local: '10.0.3.2', prefixlen: 24 }, { family: 'inet', local: '10.0.3.3', prefixlen: 24 }] }
  const stray = { ...eth0, ifname: 'eth9', ifalias: undefined }
  const notVeth = { ...dummy, ifalias: 'weft:net=blue' }
  const state = parseTaskNamespace('wt-t-t1', 't1', [lo, eth0, eth1, eth2, stray, notVeth])
  t.equal(state.loUp, true)
  t.same(state.interfaces.get('blue'), { ifname: 'eth0', network: 'blue', mac: '02:42:0a:00:01:02', mtu: 1450, up: true, address: '10.0.1.2/24' })
  t.match(state.interfaces.get('red'), { ifname: 'eth1', up: false, address: null })
  t.equal(state.interfaces.get('green')?.address, '10.0.3.2/24,10.0.3.3/24', 'two addresses read as drift')
  t.same(state.strayLinks, ['eth9', 'dummy0'])
})

t.test('strayHostLinks: only VXLAN devices with the wvx prefix', async (t) => {
  const host: Json[] = [
    lo,
    { ifindex: 2, ifname: 'eth0', flags: ['UP'], mtu: 1500 },
    { ...vx0, ifname: 'wvx42' },
    { ...br0, ifname: 'wvxbr' },
    { ...vx0, ifname: 'flannel.1' }
  ]
  t.same(strayHostLinks(host), ['wvx42'])
})

t.test('classifyNamespace', async (t) => {
  t.same(classifyNamespace('wt-', 'wt-n-blue'), { kind: 'network', id: 'blue' })
  t.same(classifyNamespace('wt-', 'wt-t-task.1'), { kind: 'task', id: 'task.1' })
  t.same(classifyNamespace('wt-', 'wt-t-n-x'), { kind: 'task', id: 'n-x' })
  t.same(classifyNamespace('wt-', 'wt-n-'), { kind: 'stray' })
  t.same(classifyNamespace('wt-', 'wt-junk'), { kind: 'stray' })
  t.equal(classifyNamespace('wt-', 'cni-1234'), null)
  t.equal(classifyNamespace('wt-', 'xwt-n-blue'), null)
})

t.test('observeKernel dumps only the namespaces under the prefix, each by its kind', async (t) => {
  const calls: string[] = []
  const runner: IprouteRunner = {
    batch: async () => { throw new Error('observe must not change anything') },
    namespaces: async () => ['wt-n-blue', 'wt-t-t1', 'wt-junk', 'other'],
    dump: async (tool, netns, lines) => {
      calls.push(`${tool} ${netns ?? '-'} ${lines.join(' | ')}`)
      if (netns === null) return [[lo, { ...vx0, ifname: 'wvx42' }]]
      if (netns === 'wt-n-blue') return tool === 'ip' ? [[lo, br0, vx0, port], neighbours] : [fdb]
      return [[lo, eth0]]
    },
    sysctls: async (netns, names) => {
      calls.push(`sysctl ${netns} ${names.join(' ')}`)
      return new Map([['net.bridge.bridge-nf-call-iptables', '1']])
    }
  }
  const state = await observeKernel(runner, 'wt-')
  t.same(calls.sort(), [
    'bridge wt-n-blue fdb show',
    'ip - addr show',
    'ip wt-n-blue addr show | neigh show nud permanent',
    'ip wt-t-t1 addr show | route show default',
    'sysctl wt-n-blue net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.bridge.bridge-nf-call-arptables'
  ])
  t.equal(state.networks.get('blue')?.bridgeNetfilter, true)
  t.same(state.strayHostLinks, ['wvx42'])
  t.same(state.strayNamespaces, ['wt-junk'])
  t.same([...state.networks.keys()], ['blue'])
  t.equal(state.networks.get('blue')?.fdb.size, 2)
  t.equal(state.tasks.get('t1')?.interfaces.get('blue')?.address, '10.0.1.2/24')
})
