/**
 * The Raft core, one test per rule it implements, citing where the rule is
 * stated: the Raft paper (§) or Ongaro's dissertation ("diss."). Single cores
 * are driven message by message; groups run in the deterministic simulation
 * with `flush()` (deliver until quiet, no time passing) so every interleaving
 * here is chosen, not drawn.
 */
import t from 'tap'
import { bootstrapState, RaftCore, type RaftCoreOptions } from '../../manager/raft/core.ts'
import { NotLeaderError, RaftError } from '../../manager/raft/errors.ts'
import { prng, Simulation, type SimulationOptions } from '../helpers/raft-simulation.ts'
import type { AppendResponse, Entry, Message, NodeId, Ready, VoteResponse } from '../../manager/raft/types.ts'

const encoder = new TextEncoder()
const bytes = (text: string): Uint8Array => encoder.encode(text)

function single (id: NodeId, voters: readonly NodeId[], options: Partial<RaftCoreOptions> = {}): RaftCore {
  return new RaftCore({ id, random: prng(7), restored: bootstrapState(voters), preVote: false, ...options })
}

/** Carries out a ready() the way a host would, with nothing to persist to; returns it. */
function drain (core: RaftCore): Ready {
  const ready = core.ready()
  core.advance()
  return ready
}

function sim (nodes: readonly NodeId[], options: Partial<SimulationOptions> = {}): Simulation {
  return new Simulation({ seed: 1, nodes, preVote: false, ...options })
}

/** Makes `id` campaign and delivers until quiet; returns the term it leads. */
function elect (s: Simulation, id: NodeId): number {
  s.act(id, (core) => { core.campaign() })
  s.flush()
  const core = s.core(id)!
  if (core.role !== 'leader') throw new Error(`${id} did not win: ${core.role} in term ${core.term}`)
  return core.term
}

/** Delivers until quiet, passing each message through `filter` (which may alter it, or drop it with null). */
function pump (s: Simulation, filter: (m: Message) => Message | null): void {
  for (let round = 0; round < 1000; round++) {
    const messages = s.intercept(() => true)
    if (messages.length === 0) return
    for (const m of messages) {
      const out = filter(m)
      if (out !== null) s.deliver(out)
    }
  }
  throw new Error('pump: the group does not settle')
}

t.test('§5.2: a follower that hears from no leader campaigns after between electionTicks and 2×electionTicks ticks', async (t) => {
  const waits = new Set<number>()
  for (let seed = 1; seed <= 50; seed++) {
    const core = new RaftCore({ id: 'a', random: prng(seed), restored: bootstrapState(['a', 'b', 'c']), electionTicks: 10, preVote: false })
    let ticks = 0
    while (core.role === 'follower' && ticks < 100) { core.tick(); ticks++ }
    t.ok(ticks >= 10 && ticks < 20, `seed ${seed}: campaigned after ${ticks} ticks`)
    t.equal(core.term, 2, 'in a new term')
    waits.add(ticks)
  }
  t.ok(waits.size >= 5, `timeouts are randomized (${[...waits].sort((a, b) => a - b).join(', ')})`)
})

t.test('§5.2: a candidate votes for itself and asks every other voter, with its last index and term', async (t) => {
  const core = single('a', ['a', 'b', 'c'])
  core.campaign()
  const ready = drain(core)
  t.same(ready.hardState, { term: 2, vote: 'a', commit: 1 }, 'the vote is in the hard state handed out with the requests')
  t.same(ready.messages.map((m) => [m.type, m.to, m.term, (m as { lastIndex: number }).lastIndex, (m as { lastTerm: number }).lastTerm]),
    [['vote', 'b', 2, 1, 1], ['vote', 'c', 2, 1, 1]])
})

t.test('§5.2: a server votes for at most one candidate per term, first come first served', async (t) => {
  const core = single('c', ['a', 'b', 'c'])
  const ask = (from: NodeId): VoteResponse => {
    core.step({ type: 'vote', from, to: 'c', term: 2, preVote: false, transfer: false, lastIndex: 1, lastTerm: 1 })
    return drain(core).messages[0] as VoteResponse
  }
  t.equal(ask('a').granted, true, 'the first candidate gets the vote')
  t.equal(ask('b').granted, false, 'the second does not')
  t.equal(ask('a').granted, true, 'a repeated request from the first is granted again (idempotent)')
})

t.test('§5.2, §5.4.1: the vote survives a restart, and a restarted server does not vote twice in a term', async (t) => {
  const core = single('c', ['a', 'b', 'c'])
  core.step({ type: 'vote', from: 'a', to: 'c', term: 2, preVote: false, transfer: false, lastIndex: 1, lastTerm: 1 })
  const persisted = drain(core).hardState!
  const restarted = new RaftCore({ id: 'c', random: prng(1), preVote: false, restored: { ...bootstrapState(['a', 'b', 'c']), hardState: persisted } })
  restarted.step({ type: 'vote', from: 'b', to: 'c', term: 2, preVote: false, transfer: false, lastIndex: 1, lastTerm: 1 })
  t.equal((drain(restarted).messages[0] as VoteResponse).granted, false)
})

t.test('§5.4.1: a vote is refused to a candidate whose log is less up to date', async (t) => {
  const s = sim(['a', 'b', 'c'], { checkQuorum: false })
  elect(s, 'a')
  s.propose('a', 'x')
  s.flush()
  // c's log: [1:1, 2:2(noop), 3:2(x)]. A candidate with a lower last term, or the same term and a shorter log, is refused.
  const c = s.core('c')!
  const ask = (lastIndex: number, lastTerm: number): boolean => {
    c.step({ type: 'vote', from: 'b', to: 'c', term: c.term + 1, preVote: false, transfer: false, lastIndex, lastTerm })
    return (drain(c).messages.find((m) => m.type === 'voteResponse') as VoteResponse).granted
  }
  t.equal(ask(10, 1), false, 'lower last term, longer log')
  t.equal(ask(2, 2), false, 'same last term, shorter log')
  t.equal(ask(3, 2), true, 'same last term, same length')
})

t.test('§5.2: a candidate that wins a majority becomes leader and appends a no-op of its term (§8)', async (t) => {
  const s = sim(['a', 'b', 'c'])
  const term = elect(s, 'a')
  const a = s.core('a')!
  t.equal(term, 2)
  t.same(a.entries(2).map((e) => [e.index, e.term, e.kind]), [[2, 2, 'noop']])
  t.equal(a.commitIndex, 2, 'committed once the followers acknowledged it')
  t.equal(s.core('b')!.leaderId, 'a')
  t.equal(s.core('b')!.commitIndex, 2, 'followers learn the commit index')
})

t.test('§5.2: a candidate that learns of a leader of its term becomes a follower', async (t) => {
  const s = sim(['a', 'b', 'c'])
  elect(s, 'a')
  const b = s.core('b')!
  b.step({ type: 'heartbeat', from: 'a', to: 'b', term: 2, commit: 2 })
  drain(b)
  s.act('c', (core) => { core.campaign() }) // c campaigns in term 3 and wins against nobody…
  s.intercept(() => true)
  const c = s.core('c')!
  t.equal(c.role, 'candidate')
  c.step({ type: 'append', from: 'b', to: 'c', term: 3, prevIndex: 2, prevTerm: 2, entries: [], commit: 2 })
  t.equal(c.role, 'follower', '…and follows b, who leads term 3')
  t.equal(c.leaderId, 'b')
})

t.test('§5.1: a request with a stale term is refused with the current term, and its sender steps down', async (t) => {
  const s = sim(['a', 'b', 'c'])
  elect(s, 'a')
  const a = s.core('a')!
  a.step({ type: 'appendResponse', from: 'b', to: 'a', term: 7, success: false, index: 0, hintIndex: 0, hintTerm: 0 })
  t.equal(a.role, 'follower', 'a leader that sees a newer term steps down')
  t.equal(a.term, 7)
  drain(a)
  a.step({ type: 'append', from: 'b', to: 'a', term: 3, prevIndex: 2, prevTerm: 2, entries: [], commit: 2 })
  const [reply] = drain(a).messages as AppendResponse[]
  t.match(reply, { type: 'appendResponse', to: 'b', term: 7, success: false }, 'the stale leader is told the term')
})

t.test('propose on a follower is refused with the leader it knows; on a candidate, with none', async (t) => {
  const s = sim(['a', 'b', 'c'])
  elect(s, 'a')
  const error = s.propose('b', 'x')
  t.ok(error instanceof NotLeaderError)
  t.match(error, { code: 'RAFT_ERR_NOT_LEADER', leaderId: 'a', message: /leader is a/ })
  s.act('c', (core) => { core.campaign() })
  t.match(s.propose('c', 'x'), { code: 'RAFT_ERR_NOT_LEADER', leaderId: null })
})

t.test('a group of one leads at once and commits each proposal in the ready that persists it', async (t) => {
  const core = single('a', ['a'])
  core.campaign()
  t.equal(core.role, 'leader')
  drain(core)
  const { index, term } = core.propose(bytes('x'))
  const ready = drain(core)
  t.same(ready.entries.map((e) => e.index), [index])
  t.same(ready.committed.map((e) => [e.index, e.term]), [[index, term]], 'to apply once the entry is persisted')
  t.equal(ready.hardState?.commit, index)
  t.same(ready.messages, [])
})

t.test('§5.3: a follower refuses entries whose predecessor it does not hold, and hints where to resume', async (t) => {
  const core = single('b', ['a', 'b', 'c'])
  core.step({ type: 'append', from: 'a', to: 'b', term: 2, prevIndex: 5, prevTerm: 2, entries: [], commit: 1 })
  const [reply] = drain(core).messages as AppendResponse[]
  t.match(reply, { success: false, index: 5, hintIndex: 1, hintTerm: 1 }, 'its log stops at 1 (term 1)')
})

t.test('§5.3: a conflicting suffix is truncated and replaced; a stale duplicate truncates nothing', async (t) => {
  const core = single('b', ['a', 'b', 'c'])
  const entry = (index: number, term: number, data = ''): Entry => ({ index, term, kind: 'normal', data: bytes(data) })
  core.step({ type: 'append', from: 'a', to: 'b', term: 2, prevIndex: 1, prevTerm: 1, entries: [entry(2, 2), entry(3, 2, 'old'), entry(4, 2, 'old')], commit: 1 })
  drain(core)
  core.step({ type: 'append', from: 'c', to: 'b', term: 3, prevIndex: 2, prevTerm: 2, entries: [entry(3, 3, 'new')], commit: 1 })
  const ready = drain(core)
  t.same(core.entries(2).map((e) => [e.index, e.term]), [[2, 2], [3, 3]], 'entries 3 and 4 of term 2 are gone')
  t.same(ready.entries.map((e) => [e.index, e.term]), [[3, 3]], 'and the write starts at the conflict, truncating the WAL there')
  core.step({ type: 'append', from: 'c', to: 'b', term: 3, prevIndex: 1, prevTerm: 1, entries: [entry(2, 2)], commit: 1 })
  drain(core)
  t.same(core.entries(2).map((e) => [e.index, e.term]), [[2, 2], [3, 3]], 'a delayed shorter message does not cut entry 3')
})

t.test('§5.3: a follower commits min(leaderCommit, index of its last new entry), never a stale entry after it', async (t) => {
  const core = single('b', ['a', 'b', 'c'])
  const entry = (index: number, term: number): Entry => ({ index, term, kind: 'normal', data: bytes('') })
  // b holds entries 2..4 of term 2 from an old leader; the leader of term 3 agrees only up to 2.
  core.step({ type: 'append', from: 'a', to: 'b', term: 2, prevIndex: 1, prevTerm: 1, entries: [entry(2, 2), entry(3, 2), entry(4, 2)], commit: 1 })
  drain(core)
  core.step({ type: 'append', from: 'c', to: 'b', term: 3, prevIndex: 1, prevTerm: 1, entries: [entry(2, 2)], commit: 4 })
  t.equal(core.commitIndex, 2, 'entries 3 and 4 may differ from the leader\'s: not committed')
})

t.test('§5.3: a diverged follower is repaired in one round trip per conflicting term, not per entry', async (t) => {
  const run = (from: number, to: number, term: number): Entry[] =>
    Array.from({ length: to - from + 1 }, (_, k) => ({ index: from + k, term, kind: 'normal' as const, data: bytes(`t${term}`) }))
  const [first] = bootstrapState(['a', 'b', 'c']).entries
  // a: 2..11 of term 2, then 12..41 of term 4. c: the same up to 11, then 40 entries of term 3 that no one else has.
  const a = new RaftCore({ id: 'a', random: prng(1), preVote: false, restored: { hardState: { term: 4, vote: null, commit: 11 }, snapshot: null, entries: [first!, ...run(2, 11, 2), ...run(12, 41, 4)] } })
  const c = new RaftCore({ id: 'c', random: prng(2), preVote: false, restored: { hardState: { term: 4, vote: null, commit: 11 }, snapshot: null, entries: [first!, ...run(2, 11, 2), ...run(12, 51, 3)] } })
  a.campaign()
  drain(a)
  a.step({ type: 'voteResponse', from: 'b', to: 'a', term: 5, preVote: false, granted: true })
  t.equal(a.role, 'leader')
  let refused = 0
  let queue = drain(a).messages.filter((m) => m.to === 'c')
  for (let round = 0; queue.length > 0 && round < 100; round++) {
    for (const m of queue) c.step(m)
    const replies = drain(c).messages
    refused += replies.filter((m) => m.type === 'appendResponse' && !m.success).length
    for (const m of replies) a.step(m)
    queue = drain(a).messages.filter((m) => m.to === 'c' && m.type !== 'heartbeat')
  }
  t.equal(refused, 1, 'one refusal skips all 40 entries of term 3')
  t.same(c.entries(1).map((e) => [e.index, e.term]), a.entries(1).map((e) => [e.index, e.term]), 'c now holds the leader\'s log')
})

t.test('§5.4.2, figure 8: a leader never commits an entry of an earlier term by counting replicas', async (t) => {
  const s = sim(['s1', 's2', 's3', 's4', 's5'], { checkQuorum: false, maxEntriesPerMessage: 1 })
  const campaign = (id: NodeId, filter: (m: Message) => Message | null = (m) => m): void => {
    for (let attempt = 0; attempt < 3 && s.core(id)!.role !== 'leader'; attempt++) {
      s.act(id, (core) => { core.campaign() })
      pump(s, filter)
    }
  }
  // (a) s1 leads term 2 and gets entry X (index 3, term 2) to s2 only.
  elect(s, 's1')
  s.partition([['s1', 's2'], ['s3', 's4', 's5']])
  s.propose('s1', 'X')
  s.flush()
  t.same([s.core('s1')!.termOf(3), s.core('s2')!.termOf(3), s.core('s3')!.termOf(3)], [2, 2, undefined])
  // (b) s5 wins term 3 with s3 and s4, appends its no-op at index 3, and crashes before sending it.
  campaign('s5', (m) => (m.type === 'append' ? null : m))
  t.same([s.core('s5')!.role, s.core('s5')!.term, s.core('s5')!.termOf(3)], ['leader', 3, 3])
  s.crash('s5')
  // (c) s1 restarts and wins term 4 with s2, s3, s4; it gets X (term 2) to s3, so X is on s1, s2, s3:
  // a majority. Its own no-op (index 4, term 4) reaches no one.
  s.crash('s1')
  s.restart('s1')
  s.partition([['s1', 's2', 's3', 's4'], ['s5']])
  campaign('s1', (m) => {
    if (m.type !== 'append' || m.from !== 's1') return m
    if (m.to === 's4') return null
    return { ...m, entries: m.entries.filter((e) => e.index <= 3) }
  })
  const s1 = s.core('s1')!
  t.same([s1.role, s1.term], ['leader', 4])
  t.same([s.core('s2')!.termOf(3), s.core('s3')!.termOf(3), s.core('s3')!.termOf(4)], [2, 2, undefined], 'X is on s1, s2, s3')
  t.same([s1.status().progress!.s2!.match, s1.status().progress!.s3!.match], [3, 3], 'and s1 knows it')
  t.equal(s1.commitIndex, 2, 'yet X is not committed: its term is not the current one')
  // (d) s1 crashes; s5 (last term 3, newer than X's) wins with s2, s3, s4 and overwrites X everywhere.
  // Had s1 committed X, a committed entry would now be lost.
  s.crash('s1')
  s.restart('s5')
  s.partition([['s2', 's3', 's4', 's5'], ['s1']])
  campaign('s5')
  t.equal(s.core('s5')!.role, 'leader')
  for (const id of ['s2', 's3', 's4', 's5']) t.equal(s.core(id)!.termOf(3), 3, `${id} holds s5's entry at 3`)
  t.same(s.violations, [])
})

t.test('diss. §9.6: with pre-vote, a member rejoining from a partition does not depose the leader', async (t) => {
  for (const preVote of [true, false]) {
    const s = sim(['a', 'b', 'c'], { preVote })
    elect(s, 'a')
    const term = s.core('a')!.term
    s.partition([['a', 'b'], ['c']])
    for (let i = 0; i < 100; i++) s.step() // c times out again and again
    s.heal()
    for (let i = 0; i < 30; i++) s.step()
    if (preVote) {
      t.equal(s.core('c')!.term, term, 'pre-vote: c never raised its term')
      t.equal(s.core('a')!.role, 'leader', 'and a still leads')
      t.equal(s.core('a')!.term, term)
    } else {
      t.ok(s.leaders.size > 1, 'without pre-vote: c\'s higher term forced a new election')
    }
  }
})

t.test('diss. §6.2 check quorum: a leader cut off from a majority steps down within an election timeout', async (t) => {
  const s = sim(['a', 'b', 'c'], { preVote: true, checkQuorum: true })
  elect(s, 'a')
  s.partition([['a'], ['b', 'c']])
  for (let i = 0; i < 25; i++) s.step()
  t.not(s.core('a')!.role, 'leader')
  t.equal(s.core('a')!.leaderId, null)
})

t.test('diss. §4.2.3: a member that hears from its leader ignores vote requests', async (t) => {
  const s = sim(['a', 'b', 'c'], { checkQuorum: true })
  elect(s, 'a')
  const b = s.core('b')!
  b.step({ type: 'vote', from: 'c', to: 'b', term: 9, preVote: false, transfer: false, lastIndex: 99, lastTerm: 9 })
  t.equal(b.term, 2, 'term unchanged')
  t.same(drain(b).messages, [], 'no answer')
})

t.test('diss. §4.1: membership changes one voter at a time, in force once appended, one at a time', async (t) => {
  const s = sim(['a', 'b', 'c', 'd'], { voters: ['a', 'b', 'c'] })
  elect(s, 'a')
  const a = s.core('a')!
  t.same(s.core('d')!.voters, [], 'the joiner starts with no configuration and waits')
  s.partition([['a'], ['b', 'c', 'd']])
  const add = s.proposeConfChange('a', 'add', 'd') as { index: number }
  t.same(a.voters, ['a', 'b', 'c', 'd'], 'the leader uses the new configuration before it is committed')
  t.match(s.proposeConfChange('a', 'add', 'e'), { code: 'RAFT_ERR_CONF_PENDING' }, 'a second change waits for the first')
  s.heal()
  for (let i = 0; i < 5; i++) s.step()
  s.flush()
  t.ok(a.commitIndex >= add.index, 'committed with the new quorum (3 of 4)')
  t.same(s.core('d')!.voters, ['a', 'b', 'c', 'd'], 'the joiner received the log, and learnt it is a voter')
  t.same(s.core('d')!.entries(1).length, a.lastIndex, 'from the first entry')
  t.match(s.proposeConfChange('a', 'add', 'd'), { code: 'RAFT_ERR_CONF_INVALID' })
  t.match(s.proposeConfChange('a', 'remove', 'x'), { code: 'RAFT_ERR_CONF_INVALID' })
  s.proposeConfChange('a', 'remove', 'b')
  s.flush()
  t.same(a.voters, ['a', 'c', 'd'])
  // With b gone, a and one more make a quorum of three.
  s.partition([['a', 'c'], ['b', 'd']])
  s.propose('a', 'after')
  s.flush()
  t.equal(a.commitIndex, a.lastIndex, 'commits with 2 of the 3 voters')
})

t.test('diss. §4.1: a leader takes no membership change before it has committed an entry of its term', async (t) => {
  const s = sim(['a', 'b', 'c'])
  s.partition([['a', 'b', 'c']])
  s.act('a', (core) => { core.campaign() })
  s.flush() // votes only: the leader's first appends are in flight
  const a = s.core('a')!
  if (a.commitIndex < a.lastIndex) {
    t.match(s.proposeConfChange('a', 'add', 'd'), { code: 'RAFT_ERR_CONF_PENDING', message: /not yet committed an entry of its term/ })
  }
  s.flush()
  t.notMatch(s.proposeConfChange('a', 'add', 'd'), { code: String })
})

t.test('diss. §4.1: a config entry that is truncated away takes its configuration with it', async (t) => {
  const core = single('b', ['a', 'b', 'c'])
  const conf: Entry = { index: 2, term: 2, kind: 'config', data: bytes(JSON.stringify({ voters: ['a', 'b', 'c', 'd'], change: { type: 'add', node: 'd' } })) }
  core.step({ type: 'append', from: 'a', to: 'b', term: 2, prevIndex: 1, prevTerm: 1, entries: [conf], commit: 1 })
  drain(core)
  t.same(core.voters, ['a', 'b', 'c', 'd'], 'in force once appended')
  core.step({ type: 'append', from: 'c', to: 'b', term: 3, prevIndex: 1, prevTerm: 1, entries: [{ index: 2, term: 3, kind: 'noop', data: bytes('') }], commit: 1 })
  t.same(core.voters, ['a', 'b', 'c'], 'reverted with the truncation')
})

t.test('diss. §4.2.2: a leader that removes itself steps down once the removal commits, and the rest elect', async (t) => {
  const s = sim(['a', 'b', 'c'])
  elect(s, 'a')
  s.proposeConfChange('a', 'remove', 'a')
  s.flush()
  t.not(s.core('a')!.role, 'leader')
  t.same(s.core('b')!.voters, ['b', 'c'])
  for (let i = 0; i < 40 && s.leaderIds().length === 0; i++) s.step()
  t.match(s.leaderIds(), [/^[bc]$/])
  for (let i = 0; i < 50; i++) s.step()
  t.equal(s.core('a')!.role, 'follower', 'the removed member never campaigns again')
})

// Regression (simulation seed 55): e led {a, e}, removed itself, and stepped down (check quorum) before the
// removal committed. a, whose log lacked the removal, needed e's vote; e, a non-member by its own log, never
// campaigned and refused a's shorter log: no leader, ever. Now e campaigns until it knows the removal committed.
t.test('diss. §4.2.2: a member whose removal is not known committed still campaigns, so the group can commit it', async (t) => {
  const s = sim(['a', 'e'], { checkQuorum: true, preVote: true })
  elect(s, 'e')
  s.partition([['a'], ['e']])
  s.proposeConfChange('e', 'remove', 'e')
  t.same(s.core('e')!.voters, ['a'])
  for (let i = 0; i < 25; i++) s.step()
  t.not(s.core('e')!.role, 'leader', 'e stepped down without a quorum, its removal uncommitted')
  s.heal()
  for (let i = 0; i < 200 && s.core('a')!.voters.length !== 1; i++) s.step()
  for (let i = 0; i < 100 && s.core('a')!.role !== 'leader'; i++) s.step()
  t.same(s.core('a')!.voters, ['a'], 'the removal reached a')
  t.equal(s.core('a')!.role, 'leader', 'and a leads the group of one')
  for (let i = 0; i < 50; i++) s.step()
  t.equal(s.core('e')!.role, 'follower', 'e, knowing its removal committed, stays quiet')
})

// Regression (simulation seed 969): a lower-term vote request went unanswered, so a candidate that needed
// this member's vote kept campaigning in terms already past, forever.
t.test('§5.1: a vote request with a stale term is refused with the current term', async (t) => {
  const core = single('b', ['a', 'b', 'c'])
  core.step({ type: 'heartbeat', from: 'c', to: 'b', term: 5, commit: 1 })
  drain(core)
  core.step({ type: 'vote', from: 'a', to: 'b', term: 3, preVote: false, transfer: false, lastIndex: 9, lastTerm: 3 })
  t.match(drain(core).messages, [{ type: 'voteResponse', to: 'a', term: 5, granted: false }])
})

t.test('§7: a follower too far behind receives a snapshot, then entries', async (t) => {
  const s = sim(['a', 'b', 'c'], { snapshotEvery: 5 })
  elect(s, 'a')
  s.crash('c')
  for (let i = 0; i < 20; i++) s.propose('a', `x${i}`)
  s.flush()
  const a = s.core('a')!
  t.ok(a.snapshotIndex > 5, `the leader compacted to ${a.snapshotIndex}`)
  s.restart('c')
  let snapshots = 0
  for (let i = 0; i < 30; i++) {
    snapshots += s.inFlight.filter((m) => m.type === 'snapshot').length
    s.step()
  }
  t.ok(snapshots >= 1, 'c got a snapshot')
  t.equal(s.core('c')!.appliedIndex, a.commitIndex, 'and caught up')
  t.same(s.member('c').applied.map((e) => e.data), s.member('a').applied.map((e) => e.data), 'with the same state')
  t.same(s.violations, [])
})

t.test('compact refuses what is not applied or already compacted', async (t) => {
  const core = single('a', ['a'])
  core.campaign()
  drain(core)
  core.propose(bytes('x'))
  drain(core)
  t.throws(() => core.compact(9, bytes('s')), { code: 'RAFT_ERR_COMPACT' })
  const snapshot = core.compact(3, bytes('s'))
  t.same([snapshot.index, snapshot.term, snapshot.conf], [3, 2, { voters: ['a'] }])
  t.throws(() => core.compact(3, bytes('s')), { code: 'RAFT_ERR_COMPACT' })
  t.same(core.entries(1), [], 'entries up to 3 are gone')
})

t.test('diss. §3.10: leadership transfer hands over to an up-to-date voter, refusing proposals meanwhile', async (t) => {
  const s = sim(['a', 'b', 'c'], { checkQuorum: true, preVote: true })
  elect(s, 'a')
  s.partition([['a', 'c'], ['b']])
  s.propose('a', 'x')
  s.flush()
  s.act('a', (core) => { core.transferLeadership('b') })
  t.match(s.propose('a', 'y'), { code: 'RAFT_ERR_TRANSFERRING' })
  s.heal()
  for (let i = 0; i < 5 && s.core('b')!.role !== 'leader'; i++) { s.step(); s.flush() }
  t.equal(s.core('b')!.role, 'leader', 'b caught up, was told to campaign, and won despite the leases')
  t.equal(s.core('a')!.leaderId, 'b')
})

t.test('between ready() and advance() the core does not change', async (t) => {
  const core = single('a', ['a'])
  core.campaign()
  core.ready()
  t.throws(() => { core.tick() }, { code: 'RAFT_ERR_READY_PENDING' })
  t.throws(() => core.propose(bytes('x')), { code: 'RAFT_ERR_READY_PENDING' })
  t.throws(() => { core.ready() }, { code: 'RAFT_ERR_READY_PENDING' })
  core.advance()
  t.throws(() => { core.advance() }, { code: 'RAFT_ERR_READY_PENDING' })
  t.equal(core.hasReady(), false)
})

t.test('a restored state that contradicts itself is refused', async (t) => {
  const base = bootstrapState(['a'])
  t.throws(() => new RaftCore({ id: 'a', random: Math.random, restored: { ...base, hardState: { term: 1, vote: null, commit: 5 } } }), { code: 'RAFT_ERR_STATE' })
  t.throws(() => new RaftCore({ id: 'a', random: Math.random, restored: { ...base, entries: [{ ...base.entries[0]!, index: 2 }] } }), { code: 'RAFT_ERR_STATE' })
})

t.test('bad options are refused with every problem named', async (t) => {
  t.throws(() => new RaftCore({ id: '', random: Math.random }), { code: 'RAFT_ERR_CONFIG', message: /id/ })
  const error = t.throws(() => new RaftCore({ id: 'a', random: Math.random, electionTicks: 1, heartbeatTicks: 0, maxInflight: 0 })) as RaftError
  t.match(error.details, [/electionTicks/, /heartbeatTicks/, /maxInflight/])
  t.throws(() => bootstrapState([]), { code: 'RAFT_ERR_CONFIG' })
})
