/**
 * lb's conntrack deletions over netlink (native/conntrack.c), against a real
 * conntrack table in a namespace of the test's own, filled with `conntrack -I`:
 * each filter deletes what it names and nothing else, in one walk; a missing
 * namespace is a named error. The programmer's use of it runs end to end in
 * test/e2e/lb-kernel.test.ts and test/e2e/lb.test.ts.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { requireRoot } from '../helpers/root.ts'
import { deleteFlows } from '../../lb/native-conntrack.ts'
import { conntrackArgs, type FlowFilter } from '../../lb/conntrack.ts'

requireRoot('lb-native-conntrack.test.ts', 'a network namespace with its own conntrack table')

const NETNS = `weft-ctunit-${process.pid}`
execFileSync('ip', ['netns', 'add', NETNS])
t.teardown(() => { execFileSync('ip', ['netns', 'del', NETNS]) })

const inNetns = (...argv: string[]): string => execFileSync('ip', ['netns', 'exec', NETNS, ...argv], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

/** An entry as a client 10.0.0.5 made it through a DNAT: to `dst`, answered (in the tuple) by `backend`. */
function insert (protocol: 'tcp' | 'udp', dst: string, dport: number, backend: string, bport: number, sport: number, state?: string): void {
  inNetns('conntrack', '-I', '-p', protocol, '-s', '10.0.0.5', '-d', dst, '--sport', String(sport), '--dport', String(dport),
    '-r', backend, '-q', '10.0.0.5', '--reply-port-src', String(bport), '--reply-port-dst', String(sport), '-t', '300',
    ...(state === undefined ? [] : ['--state', state]))
}

/** Each remaining entry as `proto state? dst:dport←backend:bport`. */
function remaining (): string[] {
  return inNetns('conntrack', '-L').split('\n').filter((line) => line.trim() !== '').map((line) => {
    const field = (name: string, nth: number): string => [...line.matchAll(new RegExp(`${name}=(\\S+)`, 'g'))][nth]?.[1] ?? '?'
    const state = /^tcp\s+\d+\s+\d+\s+([A-Z_]+)/.exec(line)?.[1]
    return `${line.split(/\s+/)[0]}${state === undefined ? '' : ` ${state}`} ${field('dst', 0)}:${field('dport', 0)}←${field('src', 1)}:${field('sport', 1)}`
  }).sort()
}

t.test('each filter deletes what it names, and nothing else', async (t) => {
  // A VIP 10.9.9.9 with backends .21 and .22, and a published port 8080 → backend .31:80.
  insert('udp', '10.9.9.9', 53, '10.0.1.21', 53, 4000)
  insert('udp', '10.9.9.9', 53, '10.0.1.22', 53, 4001)
  insert('tcp', '10.9.9.9', 80, '10.0.1.21', 80, 5000, 'SYN_SENT')
  insert('tcp', '10.9.9.9', 80, '10.0.1.21', 80, 5001, 'ESTABLISHED')
  insert('tcp', '192.168.5.1', 8080, '10.0.1.31', 80, 6000, 'ESTABLISHED')
  insert('tcp', '192.168.5.1', 8081, '10.0.1.31', 80, 6001, 'ESTABLISHED')
  t.equal(remaining().length, 6)

  const unhealthy: FlowFilter[] = [
    { protocol: 'udp', origDst: '10.9.9.9', replySrc: '10.0.1.21' },
    { protocol: 'tcp', state: 'SYN_SENT', origDst: '10.9.9.9', replySrc: '10.0.1.21' },
    { protocol: 'tcp', origDstPort: 8080, replySrc: '10.0.1.31', replySrcPort: 80 }
  ]
  t.same(await deleteFlows(NETNS, unhealthy), [1, 1, 1], 'one entry per filter')
  t.same(remaining(), [
    'tcp ESTABLISHED 10.9.9.9:80←10.0.1.21:80',
    'tcp ESTABLISHED 192.168.5.1:8081←10.0.1.31:80',
    'udp 10.9.9.9:53←10.0.1.22:53'
  ], 'established TCP, the other backend and the other published port stay')

  t.same(await deleteFlows(NETNS, unhealthy), [0, 0, 0], 'deleting again finds nothing')
  t.same(await deleteFlows(NETNS, [{ origDst: '10.9.9.9', replySrc: '10.0.1.21' }]), [1], 'removed: every protocol and state')
  t.same(await deleteFlows(NETNS, [{ protocol: 'tcp', replySrc: '10.0.1.31', replySrcPort: 80 }, { protocol: 'udp', replySrc: '10.0.1.22' }]), [1, 1])
  t.same(remaining(), [])
  t.same(await deleteFlows(NETNS, []), [], 'no filter: no walk')
})

t.test('a table too big for one read: every matching entry of a multi-part dump goes', async (t) => {
  // Conntrack runs in a namespace only once a rule needs it; then 3,000 UDP datagrams from fresh sockets
  // (a source port may come up twice: somewhat fewer flows).
  inNetns('nft', 'add table ip weft_ctunit')
  inNetns('nft', 'add chain ip weft_ctunit out { type filter hook output priority 0; }')
  inNetns('nft', 'add rule ip weft_ctunit out ct state new counter')
  inNetns('ip', 'link', 'set', 'lo', 'up')
  inNetns('bash', '-c', 'for i in $(seq 3000); do echo x 2>/dev/null > /dev/udp/127.0.0.1/9; done; true')
  insert('udp', '10.9.9.9', 53, '10.0.1.22', 53, 4001)
  const flows = (): number => inNetns('conntrack', '-L', '-p', 'udp', '--orig-port-dst', '9').split('\n').filter((l) => l.trim() !== '').length
  const made = flows()
  t.ok(made > 2000, `${made} flows: a dump of many reads`)
  t.same(await deleteFlows(NETNS, [{ protocol: 'udp', origDst: '127.0.0.1', origDstPort: 9, replySrc: '127.0.0.1' }]), [made])
  t.equal(flows(), 0)
  t.same(remaining(), ['udp 10.9.9.9:53←10.0.1.22:53'], 'the other entry stays')
  t.same(await deleteFlows(NETNS, [{ protocol: 'udp', replySrc: '10.0.1.22' }]), [1])
})

t.test('the filters read as the conntrack command that does the same by hand', async (t) => {
  t.same(conntrackArgs({ protocol: 'tcp', state: 'SYN_SENT', origDst: '10.9.9.9', replySrc: '10.0.1.21' }),
    ['-D', '-p', 'tcp', '--state', 'SYN_SENT', '--orig-dst', '10.9.9.9', '--reply-src', '10.0.1.21'])
  t.same(conntrackArgs({ protocol: 'udp', origDstPort: 5353, replySrc: '10.255.0.20', replySrcPort: 53 }),
    ['-D', '-p', 'udp', '--orig-port-dst', '5353', '--reply-src', '10.255.0.20', '--reply-port-src', '53'])
})

t.test('a missing namespace or a bad address is a named error', async (t) => {
  await t.rejects(deleteFlows('weft-no-such-namespace', [{ replySrc: '10.0.0.1' }]), { code: 'LB_ERR_CONNTRACK', message: /in weft-no-such-namespace: .*No such file/ })
  await t.rejects(deleteFlows(NETNS, [{ replySrc: 'not-an-address' }]), { code: 'LB_ERR_CONNTRACK', message: /replySrc an IPv4 address/ })
})
