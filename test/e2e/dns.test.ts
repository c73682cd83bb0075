/**
 * dnsd end to end: a lab, tasks on overlay networks, `dig` and glibc from
 * inside task namespaces asking 127.0.0.11.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { startLab } from '../helpers/lab.ts'
import { OverlayCluster } from '../helpers/overlay.ts'

const FIXTURES = resolve(import.meta.dirname, '../fixtures')
// A dead upstream first: every forwarded query has to time out on it and move on to the lab's resolver.
const DEAD_UPSTREAM = '192.168.99.3'
const scratch = await mkdtemp(join(tmpdir(), 'weft-dns-'))
t.teardown(() => rm(scratch, { recursive: true, force: true }))
const resolvConf = join(scratch, 'resolv.conf')
await writeFile(resolvConf, `nameserver ${DEAD_UPSTREAM}\nnameserver 192.168.99.2\nsearch lab.test\n`)

const lab = await startLab(t, { nodes: 3, netdArgs: ['--reconcile-interval', '0', '--resolv-conf', resolvConf, '--dns-rate-limit', '100000'] })
const cluster = new OverlayCluster(lab, ['h1', 'h2', 'h3'])
cluster.networks = [
  { id: 'front', name: 'front', subnet: '10.30.0.0/16', gateway: '10.30.0.1', vni: 4301 },
  { id: 'back', name: 'back', subnet: '10.31.0.0/24', gateway: '10.31.0.1', vni: 4302 }
]
const BIG = Array.from({ length: 200 }, (_, i) => `10.30.${2 + Math.floor(i / 200)}.${10 + i}`)
const services = [
  { id: 'web', name: 'web', endpointMode: 'vip' as const, networks: [{ network: 'front', vip: '10.30.0.2', aliases: ['www'] }], ports: [{ name: 'http', protocol: 'tcp' as const, target: 80 }] },
  { id: 'api', name: 'api', endpointMode: 'vip' as const, networks: [{ network: 'front', vip: '10.30.0.3', aliases: [] }, { network: 'back', vip: '10.31.0.3', aliases: [] }], ports: [] },
  { id: 'db', name: 'db', endpointMode: 'dnsrr' as const, networks: [{ network: 'back', aliases: [] }], ports: [] },
  { id: 'big', name: 'big', endpointMode: 'vip' as const, networks: [{ network: 'front', vip: '10.30.0.4', aliases: [] }], ports: [] }
]
interface Task { task: string, network: string, ip: string, host: string, service?: string, name?: string, healthy?: boolean }
let tasks: Task[] = [
  { task: 'c1', network: 'front', ip: '10.30.1.1', host: 'h1' },
  { task: 'c2', network: 'front', ip: '10.30.1.2', host: 'h1' },
  { task: 'c2', network: 'back', ip: '10.31.0.12', host: 'h1' },
  { task: 'w1', network: 'front', ip: '10.30.1.21', host: 'h2', service: 'web', name: 'web.1.w1' },
  { task: 'w2', network: 'front', ip: '10.30.1.22', host: 'h3', service: 'web', name: 'web.2.w2' },
  { task: 'a1', network: 'front', ip: '10.30.1.31', host: 'h2', service: 'api', name: 'api.1.a1' },
  { task: 'a1', network: 'back', ip: '10.31.0.31', host: 'h2', service: 'api', name: 'api.1.a1' },
  { task: 'd1', network: 'back', ip: '10.31.0.41', host: 'h2', service: 'db', name: 'db.1.d1' },
  { task: 'd2', network: 'back', ip: '10.31.0.42', host: 'h3', service: 'db', name: 'db.2.d2' },
  { task: 'd3', network: 'back', ip: '10.31.0.43', host: 'h3', service: 'db', name: 'db.3.d3' }
]

/** 200 tasks of `big` on a node that is not in the lab: only their DNS records matter here. */
const bigEndpoints = BIG.map((ip, i) => ({ task: `b${i}`, network: 'front', ip, mac: `02:42:0a:1e:${(2 + Math.floor(i / 200)).toString(16).padStart(2, '0')}:${(10 + i).toString(16).padStart(2, '0')}`, node: '192.168.99.250', service: 'big', name: `big.${i + 1}.b${i}` }))

async function apply (): Promise<void> {
  cluster.tasks = tasks.map(({ task, network, ip, host }) => ({ task, network, ip, host }))
  const view = cluster.view()
  const byKey = new Map(tasks.map((x) => [`${x.task}/${x.network}`, x]))
  const endpoints = view.endpoints.map((e) => {
    const spec = byKey.get(`${e.task}/${e.network}`)!
    return { ...e, ...(spec.service ? { service: spec.service, name: spec.name } : {}), healthy: spec.healthy ?? true }
  })
  const full = { ...view, endpoints: [...endpoints, ...bigEndpoints], services }
  const { nodeDocument } = await import('../../manager/node-view.ts')
  const documents = ['h1', 'h2', 'h3'].map((host) => [host, nodeDocument(full, lab.addr(host))] as const)
  // h1, whose tasks the timing tests watch, first and alone: the 100 ms are the node's own, not the
  // time the other nodes' reconciles take from the same two CPUs.
  const [[first, firstDocument], ...others] = documents as [typeof documents[number], ...typeof documents]
  sentAt = Date.now()
  await cluster.client(first).call('PUT', '/state', firstDocument)
  await Promise.all(others.map(async ([host, document]) => await cluster.client(host).call('PUT', '/state', document)))
}
/** When the last apply() sent h1 its document: the 100 ms of an update count from here. */
let sentAt = 0
await apply()

const dig = async (task: string, ...args: string[]) => {
  const result = await cluster.inTask(task, ['dig', '+time=3', '+tries=1', ...args])
  const status = /status: (\w+)/.exec(result.stdout)?.[1] ?? 'none'
  const flags = /flags: ([a-z ]+);/.exec(result.stdout)?.[1]?.split(' ') ?? []
  const answer = result.stdout.split('\n').filter((line) => line !== '' && !line.startsWith(';')).map((line) => line.split(/\s+/))
  return { status, flags, answer, stdout: result.stdout }
}
const short = async (task: string, ...args: string[]) =>
  (await cluster.inTask(task, ['dig', '+short', '+time=3', '+tries=1', ...args])).stdout.trim().split('\n').filter((x) => x !== '')

t.test('every task names 127.0.0.11 in its resolv.conf, with the node\'s search domains', async (t) => {
  const conf = await cluster.inTask('c1', ['cat', '/etc/resolv.conf'])
  t.match(conf.stdout, /^nameserver 127\.0\.0\.11$/m)
  t.match(conf.stdout, /^search lab\.test$/m)
  t.notMatch(conf.stdout, /192\.168\.99/, 'no upstream leaks into the task')
})

t.test('service, alias, tasks., task name, PTR and SRV', async (t) => {
  t.same(await short('c1', 'web'), ['10.30.0.2'], 'a VIP-mode service resolves to its VIP')
  t.same(await short('c1', 'www'), ['10.30.0.2'], 'a network alias resolves like the service')
  t.same((await short('c1', 'tasks.web')).sort(), ['10.30.1.21', '10.30.1.22'], 'tasks.<service> lists its tasks')
  t.same(await short('c1', 'web.1.w1'), ['10.30.1.21'], 'a task name resolves to the task')
  t.same(await short('c1', '-x', '10.30.1.22'), ['web.2.w2.'], 'PTR of a task IP is its task name')
  t.same(await short('c1', '-x', '10.30.0.2'), ['web.'], 'PTR of a VIP is the service name')
  t.same(await short('c1', 'SRV', '_http._tcp.web'), ['0 0 80 web.'], 'SRV of a named port')
  t.same(await short('c1', 'WeB'), ['10.30.0.2'], 'names are case-insensitive')
  const aaaa = await dig('c1', 'AAAA', 'web')
  t.equal(aaaa.status, 'NOERROR', 'AAAA of an IPv4-only name is NOERROR…')
  t.same(aaaa.answer, [], '…with no answer (NODATA)')
  t.same(await short('c1', '+tcp', 'web'), ['10.30.0.2'], 'TCP queries are answered')
})

t.test('a task sees only the networks it shares with a service', async (t) => {
  t.same(await short('c1', 'api'), ['10.30.0.3'], 'c1 (front only) gets only the front VIP')
  t.same((await short('c2', 'api')).sort(), ['10.30.0.3', '10.31.0.3'], 'c2 (front and back) gets both VIPs')
  const db = await dig('c1', 'db')
  t.same(db.answer, [], 'db (only on back) does not exist for c1')
  t.not(db.status, 'NOERROR', `and is not answered locally (${db.status})`)
  t.same((await short('c2', 'db')).sort(), ['10.31.0.41', '10.31.0.42', '10.31.0.43'], 'c2 resolves db')
})

t.test('dnsrr answers rotate', async (t) => {
  const firsts = new Set<string>()
  for (let i = 0; i < 6; i++) firsts.add((await short('c2', 'db'))[0]!)
  t.ok(firsts.size >= 2, `the first answer changes between queries (${[...firsts].join(', ')})`)
})

t.test('EDNS0: 200 tasks truncate over plain UDP and come whole over TCP or a large buffer', async (t) => {
  const plain = await dig('c1', '+noedns', '+ignore', 'tasks.big')
  t.ok(plain.flags.includes('tc'), 'truncated (TC) without EDNS0')
  t.ok(plain.answer.length < 200, `only what fits in 512 bytes (${plain.answer.length})`)
  const large = await dig('c1', '+bufsize=4096', '+ignore', 'tasks.big')
  t.equal(large.answer.length, 200, 'all 200 fit in a 4096-byte EDNS0 buffer')
  t.notOk(large.flags.includes('tc'))
  const tcp = await dig('c1', '+tcp', 'tasks.big')
  t.equal(tcp.answer.length, 200, 'all 200 over TCP')
})

t.test('forwarding: past a dead upstream, truncation retried over TCP, SERVFAIL when nothing answers', async (t) => {
  const started = Date.now()
  t.same(await short('c1', 'h1.lab.test'), ['192.168.99.11'], 'a lab name is answered by the upstream after the dead one times out')
  t.ok(Date.now() - started < 3000, 'within one upstream timeout')
  const big = await dig('c1', '+tcp', 'big.lab.test')
  t.equal(big.answer.length, 100, 'the upstream truncated over UDP; dnsd retried over TCP and returns all 100 records over TCP')
  const slow = await dig('c1', '+time=8', 'slow.lab.test')
  t.equal(slow.status, 'SERVFAIL', 'an upstream that never answers gives SERVFAIL, not a hang')
  const glibc = await cluster.inTask('c1', ['getent', 'ahostsv4', 'h2'])
  t.match(glibc.stdout, /^192\.168\.99\.12\s/m, 'glibc applies the search domain (h2 → h2.lab.test)')
  const glibcLocal = await cluster.inTask('c1', ['getent', 'ahostsv4', 'web'])
  t.match(glibcLocal.stdout, /^10\.30\.0\.2\s/m, 'and still resolves cluster names')
})

t.test('answers follow the document within 100 ms: removal and unhealthy tasks leave tasks.<service>', async (t) => {
  const watcher = spawn('ip', ['netns', 'exec', cluster.taskNetns('c2'), process.execPath, join(FIXTURES, 'dns-watch.ts'), 'tasks.db', '5'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { watcher.kill('SIGKILL') })
  const changes = createInterface({ input: watcher.stdout! })[Symbol.asyncIterator]()
  const next = async () => JSON.parse((await changes.next()).value as string) as { at: number, answers: string[] }
  t.same((await next()).answers, ['10.31.0.41', '10.31.0.42', '10.31.0.43'])

  tasks = tasks.filter((x) => x.task !== 'd3')
  await apply()
  let change = await next()
  t.same(change.answers, ['10.31.0.41', '10.31.0.42'], 'a removed task leaves tasks.db')
  t.ok(change.at - sentAt < 100, `within 100 ms (${change.at - sentAt} ms)`)

  tasks = tasks.map((x) => x.task === 'd2' ? { ...x, healthy: false } : x)
  await apply()
  change = await next()
  t.same(change.answers, ['10.31.0.41'], 'an unhealthy task leaves tasks.db')
  t.ok(change.at - sentAt < 100, `within 100 ms (${change.at - sentAt} ms)`)
  t.same(await short('c2', 'db'), ['10.31.0.41'], 'and the dnsrr answer')

  tasks = tasks.map((x) => x.task === 'd2' ? { ...x, healthy: true } : x)
  await apply()
  t.same((await next()).answers, ['10.31.0.41', '10.31.0.42'], 'a task healthy again comes back')
})

t.test('malformed packets never stop dnsd from answering', async (t) => {
  const fuzz = await cluster.inTask('c1', [process.execPath, join(FIXTURES, 'dns-fuzz.ts'), '20000', 'web', '10.30.0.2'])
  t.equal(fuzz.code, 0, fuzz.stderr)
  const result = JSON.parse(fuzz.stdout) as { garbage: number, valid: number, answered: number }
  t.equal(result.answered, result.valid, `every correct query among ${result.garbage} bad packets was answered (${result.answered}/${result.valid})`)
  t.same(await short('c1', 'web'), ['10.30.0.2'], 'and dnsd still answers afterwards')
})

t.test('netd dns shows what a task sees and explains an answer', async (t) => {
  const records = await lab.exec('h1', ['netd', 'dns', '--as', 'c1', '--json'])
  t.equal(records.code, 0, records.stderr)
  const rows = JSON.parse(records.stdout) as Array<{ name: string, type: string, value: string }>
  t.ok(rows.some((r) => r.name === 'web' && r.type === 'A' && r.value === '10.30.0.2'), 'c1 sees web')
  t.notOk(rows.some((r) => r.name === 'db'), 'c1 does not see db')
  const local = await lab.exec('h1', ['netd', 'dns', 'query', 'api', '--as', 'c2'])
  t.match(local.stdout, /answered locally by rule service-vip on network\(s\) (front, back|back, front)/, local.stderr)
  const forwarded = await lab.exec('h1', ['netd', 'dns', 'query', 'h3.lab.test', '--as', 'c1'])
  t.match(forwarded.stdout, /forwarded/, forwarded.stderr)
  t.match(forwarded.stdout, /192\.168\.99\.13/)
})

t.test('per-task rate limiting drops a flood without starving other tasks', async (t) => {
  await lab.restartNetd('h1', ['--reconcile-interval', '0', '--resolv-conf', resolvConf, '--dns-rate-limit', '50'])
  const flood = await cluster.inTask('c1', [process.execPath, '-e', `
    const s = require('dgram').createSocket('udp4'); let got = 0
    const q = Buffer.from('123401000001000000000000' + '0377656200' + '00010001', 'hex') // web. A IN
    s.on('message', () => got++)
    for (let i = 0; i < 2000; i++) s.send(q, 53, '127.0.0.11')
    setTimeout(() => { console.log(got); s.close() }, 500)`])
  const answered = Number(flood.stdout.trim())
  t.ok(answered > 0 && answered < 2000, `a burst of 2000 is cut to the bucket (${answered} answered)`)
  t.same(await short('c2', 'web'), ['10.30.0.2'], 'another task is still answered')
  await lab.restartNetd('h1', ['--reconcile-interval', '0', '--resolv-conf', resolvConf, '--dns-rate-limit', '100000'])
})
