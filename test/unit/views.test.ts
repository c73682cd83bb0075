/**
 * The debugging tables: each status a row can have, from a document and a
 * KernelState bent to show it.
 */
import t from 'tap'
import { parseDesiredState } from '../../netd/desired-state.ts'
import { desiredKernel, type NodeIdentity } from '../../netd/desired-kernel.ts'
import type { KernelState } from '../../netd/kernel-state.ts'
import { endpointRows, fdbRows, networkRows } from '../../netd/views.ts'

const NODE: NodeIdentity = { prefix: 'wt-', underlayAddress: '192.168.5.1', overlayMtu: 1450 }

const doc = parseDesiredState({
  version: 1,
  revision: 3,
  networks: [
    { id: 'blue', name: 'blue', subnet: '10.0.1.0/24', gateway: '10.0.1.1', vni: 4097 },
    { id: 'red', name: 'red', subnet: '10.0.2.0/24', gateway: '10.0.2.1', vni: 4098 },
    { id: 'green', name: 'green', subnet: '10.0.3.0/24', gateway: '10.0.3.1', vni: 4099 }
  ],
  endpoints: [
    { task: 't1', network: 'blue', ip: '10.0.1.2', mac: '02:00:00:00:01:02' },
    { task: 't2', network: 'blue', ip: '10.0.1.3', mac: '02:00:00:00:01:03' },
    { task: 't3', network: 'red', ip: '10.0.2.2', mac: '02:00:00:00:02:02' }
  ],
  remoteEndpoints: [
    { network: 'blue', ip: '10.0.1.10', mac: '02:00:00:00:01:10', node: '192.168.5.2' },
    { network: 'blue', ip: '10.0.1.11', mac: '02:00:00:00:01:11', node: '192.168.5.2' },
    { network: 'blue', ip: '10.0.1.12', mac: '02:00:00:00:01:12', node: '192.168.5.3' },
    { network: 'blue', ip: '10.0.1.13', mac: '02:00:00:00:01:13', node: '192.168.5.3' },
    { network: 'red', ip: '10.0.2.10', mac: '02:00:00:00:02:10', node: '192.168.5.2' }
  ]
})

/** A kernel converged on `doc`, then bent. */
function kernel (): KernelState {
  const state = desiredKernel(doc, NODE)
  for (const task of state.tasks.values()) for (const iface of task.interfaces.values()) iface.ifname = 'eth0'
  state.networks.delete('green')
  const blue = state.networks.get('blue')!
  blue.fdb.delete('02:00:00:00:01:11') // missing
  blue.neighbours.delete('10.0.1.11')
  blue.fdb.set('02:00:00:00:01:12', '192.168.5.9') // wrong-node
  blue.neighbours.delete('10.0.1.13') // missing-neighbour
  blue.fdb.set('02:00:00:00:01:99', '192.168.5.4') // unexpected
  blue.neighbours.set('10.0.1.99', '02:00:00:00:01:99')
  return state
}

t.test('fdbRows: ok, missing, wrong-node, missing-neighbour, unexpected', async (t) => {
  t.same(fdbRows(doc, kernel(), 'blue'), [
    { mac: '02:00:00:00:01:10', ip: '10.0.1.10', desiredNode: '192.168.5.2', kernelNode: '192.168.5.2', kernelNeighbour: '10.0.1.10', status: 'ok' },
    { mac: '02:00:00:00:01:11', ip: '10.0.1.11', desiredNode: '192.168.5.2', kernelNode: null, kernelNeighbour: null, status: 'missing' },
    { mac: '02:00:00:00:01:12', ip: '10.0.1.12', desiredNode: '192.168.5.3', kernelNode: '192.168.5.9', kernelNeighbour: '10.0.1.12', status: 'wrong-node' },
    { mac: '02:00:00:00:01:13', ip: '10.0.1.13', desiredNode: '192.168.5.3', kernelNode: '192.168.5.3', kernelNeighbour: null, status: 'missing-neighbour' },
    { mac: '02:00:00:00:01:99', ip: null, desiredNode: null, kernelNode: '192.168.5.4', kernelNeighbour: '10.0.1.99', status: 'unexpected' }
  ])
  t.same(fdbRows(doc, kernel(), 'red').map((r) => r.status), ['ok'])
  t.same(fdbRows(doc, kernel(), 'green'), [], 'a network with no remotes and no namespace has no rows')
})

t.test('a neighbour pointing the IP at another MAC is missing-neighbour', async (t) => {
  const state = kernel()
  state.networks.get('red')!.neighbours.set('10.0.2.10', '02:00:00:00:02:77')
  t.same(fdbRows(doc, state, 'red').map((r) => r.status), ['missing-neighbour'])
})

t.test('networkRows: ok, drift, missing', async (t) => {
  const rows = networkRows(doc, kernel(), 'wt-')
  t.same(rows.map((r) => [r.id, r.netns, r.localEndpoints, r.remoteEndpoints, r.kernel]), [
    ['blue', 'wt-n-blue', 2, 4, 'drift'],
    ['red', 'wt-n-red', 1, 1, 'ok'],
    ['green', 'wt-n-green', 0, 0, 'missing']
  ])
  const vxlanDown = kernel()
  vxlanDown.networks.get('red')!.vxlan!.up = false
  t.equal(networkRows(doc, vxlanDown, 'wt-')[1]!.kernel, 'drift', 'a VXLAN device that is down is drift')
  const wrongVni = kernel()
  wrongVni.networks.get('red')!.vxlan!.vni = 1
  t.equal(networkRows(doc, wrongVni, 'wt-')[1]!.kernel, 'drift', 'a wrong VNI is drift')
})

t.test('endpointRows: local and remote, ok, drift and missing, filtered by network', async (t) => {
  const state = kernel()
  state.tasks.get('t2')!.interfaces.get('blue')!.address = '10.0.1.99/24'
  state.tasks.delete('t3')
  const rows = endpointRows(doc, state, 'wt-')
  t.same(rows.map((r) => [r.task, r.network, r.ip, r.node, r.netns, r.ifname, r.kernel]), [
    ['t1', 'blue', '10.0.1.2', 'local', 'wt-t-t1', 'eth0', 'ok'],
    ['t2', 'blue', '10.0.1.3', 'local', 'wt-t-t2', 'eth0', 'drift'],
    ['t3', 'red', '10.0.2.2', 'local', 'wt-t-t3', null, 'missing'],
    [null, 'blue', '10.0.1.10', '192.168.5.2', null, null, 'ok'],
    [null, 'blue', '10.0.1.11', '192.168.5.2', null, null, 'missing'],
    [null, 'blue', '10.0.1.12', '192.168.5.3', null, null, 'drift'],
    [null, 'blue', '10.0.1.13', '192.168.5.3', null, null, 'drift'],
    [null, 'red', '10.0.2.10', '192.168.5.2', null, null, 'ok']
  ])
  t.same(endpointRows(doc, state, 'wt-', 'red').map((r) => r.ip), ['10.0.2.2', '10.0.2.10'])
})
