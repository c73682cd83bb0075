/**
 * Golden plans: desired and observed KernelState in, `stage netns tool line`
 * out. The observed side is built by hand from the desired side (what a
 * converged kernel reads as), then bent into the drift under test.
 */
import t from 'tap'
import { parseDesiredState, type DesiredState } from '../../netd/desired-state.ts'
import { desiredKernel, type NodeIdentity } from '../../netd/desired-kernel.ts'
import { emptyKernelState, portName, type KernelState } from '../../netd/kernel-state.ts'
import { plan } from '../../netd/plan.ts'

const NODE: NodeIdentity = { prefix: 'wt-', underlayAddress: '192.168.5.1', overlayMtu: 1450 }
const PORT = portName('t1')

const BASE = {
  version: 1,
  revision: 1,
  networks: [{ id: 'blue', name: 'blue', subnet: '10.0.1.0/24', gateway: '10.0.1.1', vni: 4097 }],
  endpoints: [{ task: 't1', network: 'blue', ip: '10.0.1.2', mac: '02:42:0a:00:01:02' }],
  remoteEndpoints: [{ network: 'blue', ip: '10.0.1.3', mac: '02:42:0a:00:01:03', node: '192.168.5.2' }]
}
const doc = (patch: Partial<typeof BASE> = {}): DesiredState => parseDesiredState({ ...BASE, ...patch })

/** What observe.ts reads from a kernel converged on `desired`: task interfaces named eth0, eth1… in document order. */
function converged (desired: KernelState): KernelState {
  const copy = structuredClone(desired)
  for (const task of copy.tasks.values()) {
    let index = 0
    for (const iface of task.interfaces.values()) iface.ifname = `eth${index++}`
  }
  return copy
}

const golden = (desired: KernelState, observed: KernelState): string[] =>
  plan(desired, observed).map((c) => `${c.stage} ${c.netns ?? '-'} ${c.tool} ${c.line}`)

t.test('one network, one task and one remote endpoint from an empty kernel', async (t) => {
  t.same(golden(desiredKernel(doc(), NODE), emptyKernelState()), [
    '2 - ip netns add wt-n-blue',
    '2 - ip link add wvx4097 mtu 1450 type vxlan id 4097 local 192.168.5.1 dstport 4789 nolearning proxy',
    '2 - ip link set dev wvx4097 netns wt-n-blue',
    '2 - ip netns add wt-t-t1',
    `2 - ip link add name ${PORT} mtu 1450 netns wt-n-blue type veth peer name eth0 mtu 1450 address 02:42:0a:00:01:02 netns wt-t-t1`,
    '3 wt-n-blue ip link set dev lo up',
    '3 wt-n-blue sysctl net.bridge.bridge-nf-call-iptables=0',
    '3 wt-n-blue sysctl net.bridge.bridge-nf-call-ip6tables=0',
    '3 wt-n-blue sysctl net.bridge.bridge-nf-call-arptables=0',
    '3 wt-n-blue ip link add br0 mtu 1450 type bridge',
    '3 wt-n-blue ip link set dev br0 addrgenmode none up',
    '3 wt-n-blue ip link set dev wvx4097 name vx0',
    '3 wt-n-blue ip link set dev vx0 addrgenmode none master br0 up',
    `3 wt-n-blue ip link set dev ${PORT} alias weft:task=t1 addrgenmode none master br0 up`,
    '4 wt-t-t1 ip link set dev lo up',
    '4 wt-t-t1 ip link set dev eth0 alias weft:net=blue addrgenmode none',
    '4 wt-t-t1 ip addr add 10.0.1.2/24 dev eth0',
    '4 wt-t-t1 ip link set dev eth0 up',
    '5 wt-n-blue bridge fdb replace 02:42:0a:00:01:03 dev vx0 dst 192.168.5.2 self permanent',
    '5 wt-n-blue ip neigh replace 10.0.1.3 lladdr 02:42:0a:00:01:03 dev vx0 nud permanent'
  ])
})

t.test('a converged kernel plans nothing', async (t) => {
  const desired = desiredKernel(doc(), NODE)
  t.same(golden(desired, converged(desired)), [])
})

t.test('bridged frames handed to netfilter: turned off; without br_netfilter (null) there is nothing to turn off', async (t) => {
  const desired = desiredKernel(doc(), NODE)
  const on = converged(desired)
  on.networks.get('blue')!.bridgeNetfilter = true
  t.same(golden(desired, on), [
    '3 wt-n-blue sysctl net.bridge.bridge-nf-call-iptables=0',
    '3 wt-n-blue sysctl net.bridge.bridge-nf-call-ip6tables=0',
    '3 wt-n-blue sysctl net.bridge.bridge-nf-call-arptables=0'
  ])
  const absent = converged(desired)
  absent.networks.get('blue')!.bridgeNetfilter = null
  t.same(golden(desired, absent), [])
})

t.test('a VNI change recreates only the VXLAN device and re-programs its FDB and neighbours', async (t) => {
  const observed = converged(desiredKernel(doc(), NODE))
  const desired = desiredKernel(doc({ networks: [{ ...BASE.networks[0]!, vni: 5000 }] }), NODE)
  t.same(golden(desired, observed), [
    '1 wt-n-blue ip link del dev vx0',
    '2 - ip link add wvx5000 mtu 1450 type vxlan id 5000 local 192.168.5.1 dstport 4789 nolearning proxy',
    '2 - ip link set dev wvx5000 netns wt-n-blue',
    '3 wt-n-blue ip link set dev wvx5000 name vx0',
    '3 wt-n-blue ip link set dev vx0 addrgenmode none master br0 up',
    '5 wt-n-blue bridge fdb replace 02:42:0a:00:01:03 dev vx0 dst 192.168.5.2 self permanent',
    '5 wt-n-blue ip neigh replace 10.0.1.3 lladdr 02:42:0a:00:01:03 dev vx0 nud permanent'
  ])
})

t.test('a remote endpoint that moved to another node: fdb del of the old node, replace with the new', async (t) => {
  const observed = converged(desiredKernel(doc(), NODE))
  const desired = desiredKernel(doc({ remoteEndpoints: [{ ...BASE.remoteEndpoints[0]!, node: '192.168.5.9' }] }), NODE)
  t.same(golden(desired, observed), [
    '1 wt-n-blue bridge fdb del 02:42:0a:00:01:03 dev vx0 dst 192.168.5.2 self',
    '5 wt-n-blue bridge fdb replace 02:42:0a:00:01:03 dev vx0 dst 192.168.5.9 self permanent'
  ])
})

t.test('a task interface with a drifted MTU gets one link set mtu', async (t) => {
  const desired = desiredKernel(doc(), NODE)
  const observed = converged(desired)
  observed.tasks.get('t1')!.interfaces.get('blue')!.mtu = 1500
  t.same(golden(desired, observed), ['4 wt-t-t1 ip link set dev eth0 mtu 1450'])
})

t.test('a task interface whose bridge port vanished is recreated, both ends', async (t) => {
  const desired = desiredKernel(doc(), NODE)
  const observed = converged(desired)
  observed.networks.get('blue')!.ports.delete('t1')
  t.same(golden(desired, observed), [
    '1 wt-t-t1 ip link del dev eth0',
    `2 - ip link add name ${PORT} mtu 1450 netns wt-n-blue type veth peer name eth0 mtu 1450 address 02:42:0a:00:01:02 netns wt-t-t1`,
    `3 wt-n-blue ip link set dev ${PORT} alias weft:task=t1 addrgenmode none master br0 up`,
    '4 wt-t-t1 ip link set dev eth0 alias weft:net=blue addrgenmode none',
    '4 wt-t-t1 ip addr add 10.0.1.2/24 dev eth0',
    '4 wt-t-t1 ip link set dev eth0 up'
  ])
})

t.test('new interfaces take the lowest free ethN', async (t) => {
  const networks = ['a', 'b', 'c', 'd'].map((id, index) => ({ id, name: id, subnet: `10.0.${index}.0/24`, gateway: `10.0.${index}.1`, vni: 100 + index }))
  const endpoints = networks.map((n, index) => ({ task: 't1', network: n.id, ip: `10.0.${index}.2`, mac: `02:00:00:00:0${index}:02` }))
  const desired = desiredKernel(doc({ networks, endpoints, remoteEndpoints: [] }), NODE)
  // The kernel has the task on a (eth0) and c (eth2) only; b and d are new.
  const observed = converged(desired)
  const task = observed.tasks.get('t1')!
  task.interfaces.delete('b')
  task.interfaces.delete('d')
  observed.networks.get('b')!.ports.delete('t1')
  observed.networks.get('d')!.ports.delete('t1')
  const created = golden(desired, observed).filter((line) => line.includes('type veth'))
  t.same(created.map((line) => / netns (wt-n-\w+) type veth peer name (eth\d+) /.exec(line)?.slice(1).join(' ')), ['wt-n-b eth1', 'wt-n-d eth3'])
})

t.test('an interface whose name is taken by a link being removed may reuse it', async (t) => {
  // eth0 is a stray (no alias): it is deleted in stage 1, so the new interface can be eth0 in stage 2.
  const desired = desiredKernel(doc(), NODE)
  const observed = converged(desired)
  const task = observed.tasks.get('t1')!
  task.interfaces.clear()
  task.strayLinks.push('eth0')
  observed.networks.get('blue')!.ports.delete('t1')
  const lines = golden(desired, observed)
  t.same(lines.slice(0, 2), [
    '1 wt-t-t1 ip link del dev eth0',
    `2 - ip link add name ${PORT} mtu 1450 netns wt-n-blue type veth peer name eth0 mtu 1450 address 02:42:0a:00:01:02 netns wt-t-t1`
  ])
})

t.test('every command is sorted by stage, and removals come before creations', async (t) => {
  const observed = converged(desiredKernel(doc(), NODE))
  observed.strayHostLinks.push('wvx77')
  observed.strayNamespaces.push('wt-junk')
  const desired = desiredKernel(doc({ networks: [{ ...BASE.networks[0]!, vni: 5000 }] }), NODE)
  const stages = plan(desired, observed).map((c) => c.stage)
  t.same(stages, [...stages].sort((a, b) => a - b))
  t.same(golden(desired, observed).slice(0, 3), ['0 - ip link del dev wvx77', '0 - ip netns del wt-junk', '1 wt-n-blue ip link del dev vx0'])
})

// Regression (fails today): deleting a namespace deletes the veth ends in it and, with them, their peers in
// other namespaces. plan() deletes those peers again in stage 1, so the line fails ("Cannot find device")
// on a kernel that has finished tearing the namespace down, and succeeds or fails by timing on one that has not.
t.test('removing a task is one netns del: its bridge ports go with it', async (t) => {
  const both = doc({ endpoints: [...BASE.endpoints, { task: 't2', network: 'blue', ip: '10.0.1.4', mac: '02:42:0a:00:01:04' }] })
  const observed = converged(desiredKernel(both, NODE))
  t.same(golden(desiredKernel(doc(), NODE), observed), ['0 - ip netns del wt-t-t2'])
})

t.test('removing a network is one netns del: its tasks\' interfaces on it go with it', async (t) => {
  const red = { id: 'red', name: 'red', subnet: '10.0.2.0/24', gateway: '10.0.2.1', vni: 4098 }
  const both = doc({ networks: [...BASE.networks, red], endpoints: [...BASE.endpoints, { task: 't1', network: 'red', ip: '10.0.2.2', mac: '02:42:0a:00:02:02' }] })
  const observed = converged(desiredKernel(both, NODE))
  t.same(golden(desiredKernel(doc(), NODE), observed), ['0 - ip netns del wt-n-red'])
})

// Regression (fails today): deleting either end of a veth deletes the pair, so a second `link del` of the
// other end fails. Detaching a task from a network that stays must delete one end, not both.
t.test('detaching a task from one network deletes one end of its veth pair', async (t) => {
  const red = { id: 'red', name: 'red', subnet: '10.0.2.0/24', gateway: '10.0.2.1', vni: 4098 }
  const attached = doc({ networks: [...BASE.networks, red], endpoints: [...BASE.endpoints, { task: 't1', network: 'red', ip: '10.0.2.2', mac: '02:42:0a:00:02:02' }] })
  const detached = doc({ networks: [...BASE.networks, red] })
  const deletions = golden(desiredKernel(detached, NODE), converged(desiredKernel(attached, NODE))).filter((line) => line.includes('link del'))
  t.equal(deletions.length, 1, `one link del, got: ${deletions.join(' | ')}`)
})
