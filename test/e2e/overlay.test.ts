/**
 * The overlay end to end: three lab hosts, two networks with the same subnet
 * and different VNIs, one task per host on each, real packets.
 */
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { spawn } from 'node:child_process'
import { startLab, execIn } from '../helpers/lab.ts'
import { OverlayCluster, serve } from '../helpers/overlay.ts'
import { networkNamespaceName } from '../../netd/kernel-state.ts'

const HOSTS = ['h1', 'h2', 'h3']
const root = t
// The periodic repair is off so a test can observe drift before netd repairs it.
const lab = await startLab(t, { nodes: 3, netdArgs: ['--reconcile-interval', '0'] })
const cluster = new OverlayCluster(lab, HOSTS)
cluster.networks = [
  { id: 'blue', name: 'blue', subnet: '10.10.1.0/24', gateway: '10.10.1.1', vni: 4101 },
  { id: 'red', name: 'red', subnet: '10.10.1.0/24', gateway: '10.10.1.1', vni: 4102 }
]
cluster.tasks = [
  { task: 'a1', network: 'blue', ip: '10.10.1.11', host: 'h1' },
  { task: 'a2', network: 'blue', ip: '10.10.1.12', host: 'h2' },
  { task: 'a3', network: 'blue', ip: '10.10.1.13', host: 'h3' },
  // Same subnet, overlapping addresses: only the VNI keeps the networks apart.
  { task: 'b1', network: 'red', ip: '10.10.1.11', host: 'h1' },
  { task: 'b2', network: 'red', ip: '10.10.1.12', host: 'h2' },
  { task: 'b3', network: 'red', ip: '10.10.1.23', host: 'h3' }
]
await cluster.apply()
for (const task of cluster.tasks) await serve(t, cluster, task.task, task.task, 7000)

const ping = async (task: string, ip: string, ...flags: string[]) =>
  (await cluster.inTask(task, ['ping', '-c', '1', '-W', '1', ...flags, ip])).code === 0

t.test('TCP and UDP reach every endpoint on other hosts, on both networks', async (t) => {
  for (const from of cluster.tasks) {
    for (const to of cluster.tasks.filter((x) => x.network === from.network && x.host !== from.host)) {
      const tcp = await cluster.probe(from.task, 'tcp', to.ip, '7000')
      t.equal(tcp.stdout.trim(), to.task, `TCP ${from.task} → ${to.task}`)
      const udp = await cluster.probe(from.task, 'udp', to.ip, '7000')
      t.equal(udp.stdout.trim(), to.task, `UDP ${from.task} → ${to.task}`)
    }
  }
})

t.test('networks with the same subnet are isolated by VNI', async (t) => {
  t.notOk(await ping('a1', '10.10.1.23'), 'blue cannot reach an address that exists only on red')
  t.notOk(await ping('b1', '10.10.1.13'), 'red cannot reach an address that exists only on blue')
  t.equal((await cluster.probe('b1', 'tcp', '10.10.1.12', '7000')).stdout.trim(), 'b2', 'the shared address answers from the caller\'s own network')
})

t.test('full-MTU packets pass with DF set, one byte more does not (TSO/GSO off)', async (t) => {
  for (const task of ['a1', 'a2']) {
    const off = await cluster.inTask(task, ['ethtool', '-K', 'eth0', 'tso', 'off', 'gso', 'off'])
    t.equal(off.code, 0, `offloads off in ${task}: ${off.stderr}`)
  }
  const mtu = await cluster.inTask('a1', ['cat', '/sys/class/net/eth0/mtu'])
  t.equal(mtu.stdout.trim(), '1450', 'task MTU is the underlay MTU minus 50')
  t.ok(await ping('a1', '10.10.1.12', '-M', 'do', '-s', '1422'), '1422 bytes of ICMP payload (a 1450-byte packet) pass')
  t.notOk(await ping('a1', '10.10.1.12', '-M', 'do', '-s', '1423'), '1423 bytes do not')
  const stream = await cluster.probe('a1', 'stream', '10.10.1.12', '7000', '1')
  t.equal(stream.code, 0, `a TCP stream of full-size segments arrives whole: ${stream.stdout}${stream.stderr}`)
})

t.test('a third host sees none of the traffic between two others', async (t) => {
  const capture = (host: string) => {
    const child = spawn('ip', ['netns', 'exec', lab.netns(host), 'timeout', '3', 'tcpdump', '-i', 'eth0', '-n', '-p', 'udp port 4789'], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    return new Promise<number>((resolve) => child.on('close', () => resolve(Number(/(\d+) packets? captured/.exec(stderr)?.[1] ?? -1))))
  }
  const onH3 = capture('h3')
  const onH2 = capture('h2')
  await sleep(1000)
  for (let i = 0; i < 5; i++) t.ok(await ping('a1', '10.10.1.12'), `a1 → a2 ping ${i}`)
  t.equal(await onH3, 0, 'h3 captured no VXLAN packet')
  t.ok(await onH2 >= 10, 'h2 captured the pings and replies (the capture works)')
})

t.test('removing and adding a remote endpoint changes reachability', async (t) => {
  const saved = cluster.tasks
  cluster.tasks = saved.filter((x) => x.task !== 'a2')
  const results = await cluster.apply()
  t.notOk(await ping('a1', '10.10.1.12'), 'a2 is unreachable once removed')
  t.ok(await ping('a1', '10.10.1.13'), 'a3 still answers')
  const blueOnH1 = networkNamespaceName(`${lab.netns('h1')}-`, 'blue')
  // The VXLAN device's own entries (flag self), not what the bridge learned on its port.
  const fdb = await execIn(blueOnH1, ['bridge', '-j', 'fdb', 'show', 'dev', 'vx0'])
  const vxlanMacs = (JSON.parse(fdb.stdout) as Array<{ mac: string, flags: string[] }>).filter((e) => e.flags.includes('self')).map((e) => e.mac)
  t.same(vxlanMacs, ['02:42:0a:0a:01:0d'], 'only a3\'s VXLAN FDB entry is left on h1')
  t.same(results.get('h1')?.reasons.sort(), [
    'unexpected FDB entry 02:42:0a:0a:01:0c → ' + lab.addr('h2') + ' in network blue',
    'unexpected neighbour 10.10.1.12 in network blue'
  ].sort(), 'h1 removed exactly the FDB and neighbour entries of a2')
  t.same(results.get('h2')?.reasons, ['unexpected task a2', 'unexpected network blue'],
    'h2, left with no task on blue, removed a2\'s namespace and blue\'s, nothing else')

  cluster.tasks = saved
  await cluster.apply()
  await serve(root, cluster, 'a2', 'a2', 7000)
  t.equal((await cluster.probe('a1', 'tcp', '10.10.1.12', '7000')).stdout.trim(), 'a2', 'a2 answers again once added back')
})

t.test('netd check reports a deleted FDB entry as drift and reconcile repairs it', async (t) => {
  const blueOnH1 = networkNamespaceName(`${lab.netns('h1')}-`, 'blue')
  const removed = await execIn(blueOnH1, ['bridge', 'fdb', 'del', '02:42:0a:0a:01:0d', 'dev', 'vx0', 'dst', lab.addr('h3'), 'self'])
  t.equal(removed.code, 0, removed.stderr)
  const check = await lab.exec('h1', ['netd', 'check'])
  t.equal(check.code, 1, 'check exits 1 on drift')
  t.match(check.stdout, `missing FDB entry 02:42:0a:0a:01:0d → ${lab.addr('h3')} in network blue`)
  const fdb = await lab.exec('h1', ['netd', 'fdb', 'blue', '--json'])
  t.ok((JSON.parse(fdb.stdout) as Array<{ mac: string, status: string }>).some((r) => r.mac === '02:42:0a:0a:01:0d' && r.status === 'missing'), 'netd fdb shows it missing')
  const reconcile = await lab.exec('h1', ['netd', 'reconcile'])
  t.equal(reconcile.code, 0, reconcile.stderr)
  t.equal((await lab.exec('h1', ['netd', 'check'])).code, 0, 'no drift after reconcile')
  t.ok(await ping('a1', '10.10.1.13'), 'a3 reachable again')
})

t.test('bridged frames are not handed to netfilter in network namespaces; turning that on is drift netd repairs', async (t) => {
  const blueOnH2 = networkNamespaceName(`${lab.netns('h2')}-`, 'blue')
  const read = async (): Promise<string> => (await execIn(blueOnH2, ['sysctl', '-n', 'net.bridge.bridge-nf-call-iptables'])).stdout.trim()
  if ((await execIn(blueOnH2, ['test', '-d', '/proc/sys/net/bridge'])).code !== 0) {
    t.plan(0, 'br_netfilter is not in this kernel: nothing to turn off')
    return
  }
  t.equal(await read(), '0', 'off once netd built the namespace')
  t.equal((await execIn(blueOnH2, ['sysctl', '-q', '-w', 'net.bridge.bridge-nf-call-iptables=1'])).code, 0)
  const check = await lab.exec('h2', ['netd', 'check'])
  t.equal(check.code, 1, 'check exits 1 on drift')
  t.match(check.stdout, 'bridged frames handed to netfilter in network blue')
  t.equal((await lab.exec('h2', ['netd', 'reconcile'])).code, 0)
  t.equal(await read(), '0', 'off again after reconcile')
  t.ok(await ping('a2', '10.10.1.13'), 'and the network carries traffic')
})

t.test('a TCP stream across hosts keeps flowing while netd restarts on both ends', async (t) => {
  const linksBefore = await execIn(cluster.taskNetns('a1'), ['ip', '-o', 'link', 'show', 'eth0'])
  const stream = cluster.probe('a1', 'stream', '10.10.1.12', '7000', '8')
  await sleep(1000)
  await lab.stopNetd('h1', 'SIGTERM')
  await lab.stopNetd('h2', 'SIGKILL')
  await lab.startNetd('h1')
  await lab.startNetd('h2')
  const result = await stream
  t.equal(result.code, 0, `the stream completed: ${result.stdout}${result.stderr}`)
  t.match(result.stdout, /^sent (\d+) received \1 from a2$/m, 'every byte sent was received')
  const linksAfter = await execIn(cluster.taskNetns('a1'), ['ip', '-o', 'link', 'show', 'eth0'])
  t.equal(linksAfter.stdout, linksBefore.stdout, 'the task interface was adopted, not recreated')
  for (const host of ['h1', 'h2']) {
    const status = await cluster.client(host).call<{ lastReconcile: { commands: number } }>('GET', '/status')
    t.equal(status.lastReconcile.commands, 0, `netd on ${host} changed nothing when it came back`)
  }
})

t.test('a malformed or conflicting document is refused by field, and nothing changes', async (t) => {
  const before = await cluster.client('h1').call<{ revision: number }>('GET', '/status')
  const good = await cluster.client('h1').call<Record<string, unknown>>('GET', '/state')
  const cases: Array<[string, (doc: any) => void, RegExp]> = [
    ['bad CIDR', (d) => { d.networks[0].subnet = '10.10.1.0/33' }, /networks\[0\]\.subnet/],
    ['duplicate IP', (d) => { d.remoteEndpoints[0].ip = d.endpoints[0].ip }, /remoteEndpoints\[0\]\.ip: duplicate IP/],
    ['IP outside subnet', (d) => { d.endpoints[0].ip = '10.99.0.5' }, /endpoints\[0\]\.ip: 10\.99\.0\.5 is outside subnet/],
    ['duplicate VNI', (d) => { d.networks[1].vni = d.networks[0].vni }, /networks\[1\]\.vni: duplicate VNI/]
  ]
  for (const [name, mutate, field] of cases) {
    const doc = structuredClone(good)
    mutate(doc)
    const result = await lab.exec('h1', ['netd', 'apply', '-f', '-'], { input: JSON.stringify(doc) })
    t.equal(result.code, 2, `${name}: refused`)
    t.match(result.stderr, field, `${name}: the message names the field`)
  }
  const after = await cluster.client('h1').call<{ revision: number }>('GET', '/status')
  t.equal(after.revision, before.revision, 'the applied revision is unchanged')
  t.equal((await lab.exec('h1', ['netd', 'check'])).code, 0, 'the kernel still matches the old document')
  t.ok(await ping('a1', '10.10.1.12'), 'traffic still flows')
})

t.test('netd leave and SIGTERM with --cleanup remove every kernel object netd made', async (t) => {
  const owned = async (host: string) => (await lab.exec(host, ['ip', 'netns', 'list'])).stdout
    .split('\n').filter((line) => line.startsWith(`${lab.netns(host)}-`))
  t.ok((await owned('h3')).length >= 2, 'h3 has its network and task namespaces')
  await lab.stopNetd('h3')
  await lab.startNetd('h3', ['--reconcile-interval', '0', '--cleanup'])
  await lab.stopNetd('h3', 'SIGTERM')
  t.same(await owned('h3'), [], 'nothing of netd is left on h3 after SIGTERM with --cleanup')
  const hostLinks = await lab.exec('h3', ['ip', '-o', 'link', 'show'])
  t.notMatch(hostLinks.stdout, /wvx/, 'no VXLAN device left in the host namespace')

  t.ok((await owned('h2')).length >= 2, 'h2 has its namespaces')
  const leave = await lab.exec('h2', ['netd', 'leave'])
  t.equal(leave.code, 0, leave.stderr)
  t.same(await owned('h2'), [], 'nothing of netd is left on h2 after netd leave')
})
