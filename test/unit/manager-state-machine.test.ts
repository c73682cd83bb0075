/**
 * The manager's state machine over the store (manager/state-machine.ts):
 * entries apply with the proposer's time, refusals are outcomes, snapshots
 * round-trip, listeners hear changes only — and through a real
 * ReplicatedLog on disk, a reopened log rebuilds the same state.
 */
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ReplicatedLog } from '../../manager/raft/replicated-log.ts'
import { StoreStateMachine, type EntryOutcome, type LogEntry } from '../../manager/state-machine.ts'
import { checkUserCommand } from '../../manager/control.ts'

const init = { type: 'cluster.init', clusterId: 'c1', node: { id: 'n1', hostname: 'manager', addr: '192.168.1.107' }, ingressNetworkId: 'ingress' }

t.test('apply: the proposer\'s time, refusals as outcomes, listeners on change', async (t) => {
  const machine = new StoreStateMachine()
  let heard = 0
  machine.onChange(() => heard++)
  t.match(machine.apply({ command: init, now: 1000 }), { ok: true, result: { changed: true } })
  t.equal(machine.state.cluster?.createdAt, 1000, 'stamped with the entry\'s time')
  t.match(machine.apply({ command: init, now: 2000 }), { ok: false, error: { code: 'STORE_ERR_ALREADY_INITIALIZED' } })
  t.match(machine.apply({ command: { type: 'node.status', node: 'n1', status: 'ready' }, now: 3000 }), { ok: true, result: { changed: false } })
  t.match(machine.apply({ command: { type: 'network.create', id: 'net', name: 'my-network' }, now: Number.NaN }), { ok: false, error: { code: 'STORE_ERR_INVALID_COMMAND' } })
  t.equal(heard, 1, 'only the change was announced')
  const copy = new StoreStateMachine()
  copy.restore(machine.snapshot())
  t.same(copy.state, machine.state, 'a snapshot restores the same state')
  t.throws(() => copy.restore(new TextEncoder().encode('{"format":99}')), /state format 99/)
})

t.test('through the replicated log: acknowledged entries survive a reopen', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weft-sm-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const open = async (machine: StoreStateMachine): Promise<ReplicatedLog<LogEntry, EntryOutcome>> =>
    await ReplicatedLog.open<LogEntry, EntryOutcome>({ dir, id: 'n1', peers: ['n1'], stateMachine: machine, snapshotEvery: 3 })
  const first = new StoreStateMachine()
  const log = await open(first)
  t.match(await log.propose({ command: init, now: 1 }), { ok: true })
  for (let i = 0; i < 5; i++) t.match(await log.propose({ command: { type: 'network.create', id: `net${i}`, name: `net${i}` }, now: 10 + i }), { ok: true })
  t.match(await log.propose({ command: { type: 'network.create', id: 'again', name: 'net0' }, now: 20 }), { ok: false, error: { code: 'STORE_ERR_NAME_IN_USE' } })
  await log.close()
  const second = new StoreStateMachine()
  const reopened = await open(second)
  t.teardown(async () => await reopened.close())
  t.same(second.state, first.state, 'snapshot plus the entries after it rebuild the state')
  t.equal(second.state.networks.net4?.createdAt, 14)
})

t.test('control: a user\'s command is checked against the state first', async (t) => {
  const machine = new StoreStateMachine()
  machine.apply({ command: init, now: 1 })
  t.match(checkUserCommand(machine.state, { type: 'network.create', id: 'x1', name: 'front' }, 2), { type: 'network.create', driver: 'overlay', attachable: false })
  t.throws(() => checkUserCommand(machine.state, { type: 'node.join', node: { id: 'n9', hostname: 'h', addr: '10.1.1.1' } }, 2), { code: 'MANAGER_ERR_INVALID_REQUEST' })
  t.throws(() => checkUserCommand(machine.state, { type: 'network.create', id: 'x1', name: 'front', subnet: '10.0.0.0/24' }, 2), { code: 'STORE_ERR_SUBNET_OVERLAP' })
  t.throws(() => checkUserCommand(machine.state, { type: 'node.update', node: 'manager', role: 'worker' }, 2), { code: 'STORE_ERR_LAST_MANAGER' })
})
