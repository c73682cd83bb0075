/**
 * Which conntrack entries go when a backend leaves: all of a removed task's
 * (also when it had left rotation before), the UDP and unanswered TCP ones of
 * an unhealthy task, none of a backend that stays (even when its slot number
 * changes).
 */
import t from 'tap'
import { lbFixture, lbFixtureInput, lbFixtureSpec } from '../fixtures/lb-doc.ts'
import { conntrackArgs, conntrackDeletions } from '../../lb/conntrack.ts'
import { compileHost, compileTask } from '../../lb/ruleset.ts'
import { diff } from '../../lb/delta.ts'
import type { LbSpec } from '../../lb/spec.ts'

const before = lbFixtureSpec()

function deletions (after: LbSpec, netns: string | null): string[] {
  const from = netns === null ? compileHost(before.host) : compileTask(before.tasks.get(netns)!)
  const to = netns === null ? compileHost(after.host) : compileTask(after.tasks.get(netns)!)
  const frontends = netns === null ? after.host.frontends : after.tasks.get(netns)!.frontends
  return conntrackDeletions(from, diff(from, to), frontends).map((d) => `${d.reason}: conntrack ${conntrackArgs(d.filter).join(' ')}`)
}

function edit (change: (input: Record<string, any>) => void): LbSpec {
  const input = lbFixtureInput()
  change(input)
  return lbFixtureSpec(lbFixture(input))
}

t.test('a removed task: every protocol, for each VIP and published port it served', async (t) => {
  const after = edit((input) => { input.endpoints = input.endpoints.filter((e: { task: string }) => e.task !== 'web1') })
  t.same(deletions(after, 'ns-c1'), ['removed: conntrack -D --orig-dst 10.0.1.100 --reply-src 10.0.1.20'])
  t.same(deletions(after, null), [
    'removed: conntrack -D -p tcp --orig-port-dst 8080 --reply-src 10.255.0.20 --reply-port-src 80',
    'removed: conntrack -D -p udp --orig-port-dst 5353 --reply-src 10.255.0.20 --reply-port-src 53'
  ], 'web1 leaves 8080, and the host-mode port 5353 goes with its only local task')
})

t.test('an unhealthy task: UDP, and TCP never answered (in-flight TCP may complete)', async (t) => {
  const after = edit((input) => {
    for (const e of input.remoteEndpoints) if (e.task === 'web2') e.healthy = false
  })
  t.same(deletions(after, 'ns-c1'), [
    'unhealthy: conntrack -D -p udp --orig-dst 10.0.1.100 --reply-src 10.0.1.21',
    'unhealthy: conntrack -D -p tcp --state SYN_SENT --orig-dst 10.0.1.100 --reply-src 10.0.1.21'
  ])
  t.same(deletions(after, null), [
    'unhealthy: conntrack -D -p tcp --state SYN_SENT --orig-port-dst 8080 --reply-src 10.255.0.21 --reply-port-src 80'
  ], 'a TCP published port: only connections never answered')
  const udp = edit((input) => {
    for (const e of input.endpoints) if (e.task === 'web1') e.healthy = false
  })
  t.same(deletions(udp, null), [
    'unhealthy: conntrack -D -p tcp --state SYN_SENT --orig-port-dst 8080 --reply-src 10.255.0.20 --reply-port-src 80',
    'unhealthy: conntrack -D -p udp --orig-port-dst 5353 --reply-src 10.255.0.20 --reply-port-src 53'
  ], 'the UDP host-mode port deletes every entry')
})

t.test('a task out of rotation before, removed now: every entry goes', async (t) => {
  // web3 is unhealthy in the fixture: it has counters, no slot.
  const after = edit((input) => { input.remoteEndpoints = input.remoteEndpoints.filter((e: { task?: string }) => e.task !== 'web3') })
  t.same(deletions(after, 'ns-c1'), ['removed: conntrack -D --orig-dst 10.0.1.100 --reply-src 10.0.1.22'])
  t.same(deletions(after, null), ['removed: conntrack -D -p tcp --reply-src 10.255.0.22 --reply-port-src 80'])
})

t.test('a backend that stays keeps its connections, even when renumbered', async (t) => {
  // web1 (slot 0) leaves: web2 moves from slot 1 to slot 0 and must not lose its connections.
  const after = edit((input) => { input.endpoints = input.endpoints.filter((e: { task: string }) => e.task !== 'web1') })
  t.notOk(deletions(after, 'ns-c1').some((d) => d.includes('10.0.1.21')))
  const joined = edit((input) => {
    for (const e of input.remoteEndpoints) if (e.task === 'web3') e.healthy = true
  })
  t.same(deletions(joined, 'ns-c1'), [], 'a backend joining deletes nothing')
})

t.test('a whole table going (the last VIP of a namespace removed): all its backends', async (t) => {
  const from = compileTask(before.tasks.get('ns-c1')!)
  const got = conntrackDeletions(from, diff(from, null), []).map((d) => `${d.reason} ${d.frontend} ${d.backend}`)
  t.same(got, ['removed 10.0.1.100 10.0.1.20', 'removed 10.0.1.100 10.0.1.21', 'removed 10.0.1.100 10.0.1.22'], 'the unhealthy one too')
})
