/**
 * ReplicatedLog, the interface callers use: a group of one on a real
 * directory (propose → fsync → apply → resolve; restart re-applies;
 * snapshots), and groups of three and four over the in-memory network with a
 * fast clock (elections, leader hints, failover, membership changes).
 */
import t, { type Test } from 'tap'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ReplicatedLog, type StateMachine } from '../../manager/raft/replicated-log.ts'
import { InMemoryNetwork, decodeMessage, encodeMessage } from '../../manager/raft/transport.ts'
import { NotLeaderError } from '../../manager/raft/errors.ts'
import { prng } from '../helpers/raft-simulation.ts'
import type { Message } from '../../manager/raft/types.ts'

interface Command { readonly op: 'add', readonly key: string, readonly value: number }

/** A deterministic key → sum store; apply returns the new sum, or an error result for a negative value. */
class Sums implements StateMachine<Command, number | { error: string }> {
  values = new Map<string, number>()
  applied: number[] = []
  apply (command: Command, index: number): number | { error: string } {
    this.applied.push(index)
    if (command.value < 0) return { error: 'negative' }
    const sum = (this.values.get(command.key) ?? 0) + command.value
    this.values.set(command.key, sum)
    return sum
  }

  snapshot (): Uint8Array {
    return new TextEncoder().encode(JSON.stringify([...this.values]))
  }

  restore (data: Uint8Array): void {
    this.values = new Map(JSON.parse(new TextDecoder().decode(data)) as Array<[string, number]>)
  }
}

async function scratch (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-raft-log-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const add = (key: string, value: number): Command => ({ op: 'add', key, value })

async function until (what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now()
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

t.test('a group of one: proposals resolve with their results, in order, and survive a restart', async (t) => {
  const dir = await scratch(t)
  let machine = new Sums()
  let log = await ReplicatedLog.open({ dir, id: 'm1', peers: ['m1'], stateMachine: machine })
  t.equal(log.isLeader, true, 'leads at once')
  t.equal(log.leaderId, 'm1')
  t.equal(await log.propose(add('a', 1)), 1)
  t.same(await Promise.all([log.propose(add('a', 2)), log.propose(add('b', 5)), log.propose(add('a', 3))]), [3, 5, 6])
  t.same(await log.propose(add('a', -1)), { error: 'negative' }, 'a refused command is a result, not an exception')
  t.match(log.status(), { role: 'leader', voters: ['m1'], pending: 0, failed: null })
  await log.close()
  await t.rejects(log.propose(add('a', 1)), { code: 'RAFT_ERR_CLOSED' })

  machine = new Sums()
  log = await ReplicatedLog.open({ dir, id: 'm1', peers: ['m1'], stateMachine: machine })
  t.same([...machine.values], [['a', 6], ['b', 5]], 'open resolves once everything committed is applied again')
  t.equal(await log.propose(add('b', 1)), 6)
  await log.close()
})

t.test('a group of one compacts every N entries; a restart restores the snapshot and replays the rest', async (t) => {
  const dir = await scratch(t)
  let machine = new Sums()
  let log = await ReplicatedLog.open({ dir, id: 'm1', peers: ['m1'], stateMachine: machine, snapshotEvery: 10 })
  for (let i = 0; i < 35; i++) await log.propose(add('k', 1))
  const status = log.status()
  t.ok(status.snapshotIndex >= 30, `compacted to ${status.snapshotIndex}`)
  t.equal((await readdir(dir)).filter((f) => f.endsWith('.snap')).length, 1)
  await log.close()
  machine = new Sums()
  log = await ReplicatedLog.open({ dir, id: 'm1', peers: [], stateMachine: machine, snapshotEvery: 10 })
  t.equal(machine.values.get('k'), 35)
  t.ok(machine.applied[0]! > status.snapshotIndex, `only entries after the snapshot were applied again (from ${machine.applied[0]})`)
  await log.close()
})

t.test('bad options and commands are refused with stable codes', async (t) => {
  const dir = await scratch(t)
  await t.rejects(ReplicatedLog.open({ dir, id: '', peers: ['x'], stateMachine: new Sums() }), { code: 'RAFT_ERR_CONFIG', message: /id/ })
  await t.rejects(ReplicatedLog.open({ dir, id: 'a', peers: ['a'], stateMachine: {} as Sums }), { code: 'RAFT_ERR_CONFIG', message: /stateMachine/ })
  await t.rejects(ReplicatedLog.open({ dir, id: 'a', peers: ['a', 'b'], stateMachine: new Sums() }), { code: 'RAFT_ERR_CONFIG', message: /transport/ })
  const log = await ReplicatedLog.open<unknown, unknown>({ dir: join(dir, 'ok'), id: 'a', peers: ['a'], stateMachine: new Sums() as StateMachine<unknown, unknown> })
  await t.rejects(log.propose(undefined), { code: 'RAFT_ERR_DECODE' })
  await t.rejects(log.addMember('a'), { code: 'RAFT_ERR_CONF_INVALID' })
  await log.close()
})

t.test('messages survive the wire encoding, and malformed ones are refused', async (t) => {
  const message: Message = {
    type: 'append', from: 'a', to: 'b', term: 3, prevIndex: 1, prevTerm: 1, commit: 1,
    entries: [{ index: 2, term: 3, kind: 'normal', data: Buffer.from('hé') }]
  }
  const back = decodeMessage(encodeMessage(message))
  t.same(back, { ...message, entries: [{ index: 2, term: 3, kind: 'normal', data: new Uint8Array(Buffer.from('hé')) }] })
  t.throws(() => decodeMessage('{"type":"append","from":"a","to":"b","term":-1}'), { code: 'RAFT_ERR_DECODE' })
  t.throws(() => decodeMessage('nope'), { code: 'RAFT_ERR_DECODE' })
})

interface Member { id: string, log: ReplicatedLog<Command, number | { error: string }>, machine: Sums, dir: string }

async function group (t: Test, ids: readonly string[], network: InMemoryNetwork, peers: readonly string[] = ids, snapshotEvery = 20): Promise<Member[]> {
  const root = await scratch(t)
  const members = await Promise.all(ids.map(async (id, k) => {
    const machine = new Sums()
    const dir = join(root, id)
    const log = await ReplicatedLog.open({
      dir, id, peers: peers.includes(id) ? peers : [], stateMachine: machine, transport: network.transport(id),
      tickMs: 5, electionTicks: 20, random: prng(k + 1), snapshotEvery
    })
    return { id, log, machine, dir }
  }))
  t.teardown(() => Promise.all(members.map((m) => m.log.close())))
  return members
}

const leaderOf = (members: readonly Member[]): Member | undefined => members.find((m) => m.log.isLeader)

/**
 * Runs `fn` on the current leader, again on the next one if leadership moved meanwhile (as a client
 * would: a refusal by a non-leader, or a replaced entry, means the command was not applied).
 */
async function onLeader<T> (members: readonly Member[], fn: (leader: Member) => Promise<T>): Promise<T> {
  const start = Date.now()
  for (;;) {
    const leader = leaderOf(members)
    if (leader !== undefined) {
      try {
        return await fn(leader)
      } catch (error) {
        const code = (error as { code?: string }).code
        if (code !== 'RAFT_ERR_NOT_LEADER' && code !== 'RAFT_ERR_DROPPED' && code !== 'RAFT_ERR_CONF_PENDING') throw error
      }
    }
    if (Date.now() - start > 10_000) throw new Error('no stable leader within 10 s')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

t.test('a group of three elects a leader, replicates, and points followers\' callers at it', async (t) => {
  const network = new InMemoryNetwork()
  const members = await group(t, ['a', 'b', 'c'], network)
  t.equal(await onLeader(members, (leader) => leader.log.propose(add('x', 7))), 7)
  await until('every member applied it', () => members.every((m) => m.machine.values.get('x') === 7))
  await until('a follower that knows the leader', () => members.some((m) => !m.log.isLeader && m.log.leaderId !== null))
  const follower = members.find((m) => !m.log.isLeader && m.log.leaderId !== null)!
  const refused = await follower.log.propose(add('x', 1)).catch((error: unknown) => error)
  t.ok(refused instanceof NotLeaderError)
  t.match(refused, { code: 'RAFT_ERR_NOT_LEADER', leaderId: /^[abc]$/ })
  t.not((refused as NotLeaderError).leaderId, follower.id, 'the hint names another member')
})

t.test('when the leader is cut off, the other two elect a new one and go on; the old one catches up', async (t) => {
  const network = new InMemoryNetwork()
  const members = await group(t, ['a', 'b', 'c'], network, ['a', 'b', 'c'], 0) // no snapshots: the old leader catches up entry by entry
  for (let i = 0; i < 30; i++) await onLeader(members, (leader) => leader.log.propose(add('x', 1)))
  await until('a leader', () => leaderOf(members) !== undefined)
  const old = leaderOf(members)!
  network.isolate(old.id)
  const orphan = old.log.propose(add('x', 1000)).catch((error: unknown) => error) // can never reach a quorum
  const rest = members.filter((m) => m !== old)
  for (let i = 0; i < 30; i++) await onLeader(rest, (leader) => leader.log.propose(add('x', 1)))
  await until('the old leader stepped down', () => !old.log.isLeader)
  network.heal()
  await until('all members applied 60', () => members.every((m) => m.machine.values.get('x') === 60))
  t.match(await orphan, { code: 'RAFT_ERR_DROPPED' }, 'the proposal the old leader could not commit is reported lost')
})

t.test('a member joins with no state, is added by the leader, catches up by snapshot, and can be removed', async (t) => {
  const network = new InMemoryNetwork()
  const members = await group(t, ['a', 'b', 'c', 'd'], network, ['a', 'b', 'c'])
  const d = members.find((m) => m.id === 'd')!
  t.same(d.log.status().voters, [], 'd waits, knowing no group')
  for (let i = 0; i < 50; i++) await onLeader(members, (leader) => leader.log.propose(add('x', 1))) // past snapshotEvery: d will need the snapshot
  await onLeader(members, (leader) => leader.log.addMember('d'))
  await until('d caught up', () => d.machine.values.get('x') === 50)
  t.ok((network.sent.get('snapshot') ?? 0) > 0, 'through a snapshot')
  t.same(d.log.status().voters, ['a', 'b', 'c', 'd'], 'd knows it is a voter')
  await onLeader(members, (leader) => leader.log.propose(add('x', 1)))
  await until('d applies new entries', () => d.machine.values.get('x') === 51)
  await onLeader(members, (leader) => leader.log.removeMember('d'))
  const remaining = members.filter((m) => m !== d)
  await until('the removal reached a, b and c', () => remaining.every((m) => m.log.status().voters.join() === 'a,b,c'))
  await onLeader(remaining, (leader) => leader.log.propose(add('x', 1)))
  t.pass('the group of three goes on without d')
})
