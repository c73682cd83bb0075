/**
 * dnsd's record tables: who sees which names, under which rule, on which
 * network, with which TTL; and that building them stays cheap.
 */
import t from 'tap'
import { parseDesiredState, type DesiredState } from '../../netd/desired-state.ts'
import { buildDnsTables, taskView, TASK_TTL, VIP_TTL, type DnsTables, type RecordSet } from '../../dnsd/records.ts'
import { fixture, fixtureInput } from '../helpers/dnsd.ts'

const tables = buildDnsTables(fixture())

function set (task: string, name: string): RecordSet | undefined {
  return tables.tasks.get(task)?.names.get(name)
}

/** The values of `name` as `task` sees it, e.g. ['A 10.0.1.100 front']. */
function values (tables: DnsTables, task: string, name: string): string[] {
  return (tables.tasks.get(task)?.names.get(name)?.values ?? []).map((v) => `${v.type} ${v.value} ${v.network}`)
}

t.test('every local task has a view of the networks it is attached to', async (t) => {
  t.same([...tables.tasks.keys()], ['c1', 'w1', 'b1', 'web1'])
  t.same(tables.tasks.get('c1')?.networks, ['front'])
  t.same(tables.tasks.get('b1')?.networks, ['front', 'back'])
  t.equal(tables.tasks.get('b1')?.name, 'both.1.b1')
  t.equal(tables.revision, 3)
  t.equal(tables.tasks.get('b1')?.names, tables.tasks.get('web1')?.names, 'tasks on the same networks share one table')
  t.not(tables.tasks.get('c1')?.names, tables.tasks.get('b1')?.names)
  t.equal(taskView(tables, 'worker.1.w1')?.task, 'w1', 'a view is found by task name too')
  t.equal(taskView(tables, 'Worker.1.W1.')?.task, 'w1')
  t.equal(taskView(tables, 'db1'), undefined, 'remote tasks have no view')
})

t.test('a name exists only on networks the task shares with it', async (t) => {
  t.same(values(tables, 'c1', 'web'), ['A 10.0.1.100 front'])
  t.same(values(tables, 'w1', 'web'), ['A 10.0.2.100 back'])
  t.same(values(tables, 'b1', 'web'), ['A 10.0.2.100 back', 'A 10.0.1.100 front'], 'both networks: the union')
  t.same(set('b1', 'web')?.networks, ['back', 'front'])
  t.equal(set('c1', 'api'), undefined, 'api is only on back')
  t.equal(set('w1', 'www'), undefined, 'the alias www is only given on front')
  for (const task of tables.tasks.keys()) {
    t.equal(set(task, 'db'), undefined, `${task} does not see db (network other)`)
    t.equal(set(task, 'db.1.db1'), undefined)
    t.equal(set(task, '10.3.0.10.in-addr.arpa'), undefined)
  }
})

t.test('rules and TTLs: VIP-bound names 5 s, task-level names 1 s', async (t) => {
  t.equal(VIP_TTL, 5)
  t.equal(TASK_TTL, 1)
  const expect: Array<[string, string, string, number]> = [
    ['c1', 'web', 'service-vip', VIP_TTL],
    ['c1', 'www', 'alias', VIP_TTL],
    ['c1', 'tasks.web', 'tasks', TASK_TTL],
    ['c1', 'tasks.www', 'tasks', TASK_TTL],
    ['c1', 'web.2.web2', 'task-name', TASK_TTL],
    ['c1', '100.1.0.10.in-addr.arpa', 'ptr', VIP_TTL],
    ['c1', '21.1.0.10.in-addr.arpa', 'ptr', TASK_TTL],
    ['c1', '_http._tcp.web', 'srv', VIP_TTL],
    ['w1', 'api', 'service-dnsrr', TASK_TTL],
    ['w1', 'api-alias', 'alias', TASK_TTL],
    ['w1', '_grpc._tcp.api', 'srv', TASK_TTL]
  ]
  for (const [task, name, rule, ttl] of expect) {
    const s = set(task, name)
    t.equal(s?.rule, rule, `${name}: rule`)
    t.equal(s?.ttl, ttl, `${name}: ttl`)
    t.ok(s?.values.every((v) => v.ttl === ttl), `${name}: every value carries the TTL`)
  }
  t.equal(set('c1', '_https._tcp.web'), undefined, 'unnamed ports have no SRV')
})

t.test('health: unhealthy tasks leave tasks.<svc> and dnsrr answers, keep their name and PTR', async (t) => {
  t.same(values(tables, 'c1', 'tasks.web'), ['A 10.0.1.20 front', 'A 10.0.1.21 front'])
  t.same(values(tables, 'w1', 'api'), ['A 10.0.2.30 back', 'A 10.0.2.31 back', 'A 10.0.2.32 back'])
  t.same(values(tables, 'c1', 'web.3.web3'), ['A 10.0.1.22 front'])
  t.same(values(tables, 'w1', '33.2.0.10.in-addr.arpa'), ['PTR api.4.api4. back'])
  t.ok(set('w1', 'api')?.rotate, 'dnsrr answers rotate')
  t.ok(set('w1', 'tasks.api')?.rotate, 'tasks.<svc> rotates')
  t.notOk(set('c1', 'web')?.rotate, 'a single VIP does not')
})

t.test('encoded RRs: answers point at the question name, SRV glue is named', async (t) => {
  const web = set('c1', 'web')!
  t.equal(web.a.length, 1)
  t.same(web.a[0], Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 1, 100]))
  t.equal(set('c1', 'www')!.a[0], web.a[0], 'identical RRs are one shared buffer')
  const srv = set('w1', '_grpc._tcp.api')!
  t.equal(srv.srv.length, 3)
  t.equal(srv.additionals.length, 3)
  t.equal(srv.additionals[0]![0], 3, 'glue owner is a full name (api.1.api1), not a pointer')
})

t.test('a dnsrr service with no healthy task exists and answers nothing (NODATA, not NXDOMAIN)', async (t) => {
  const input = fixtureInput()
  for (const e of input.remoteEndpoints) if (e.service === 'svc-api') e.healthy = false
  const empty = buildDnsTables(parseDesiredState(input))
  t.same(empty.tasks.get('w1')?.names.get('api')?.a, [])
  t.same(empty.tasks.get('w1')?.names.get('tasks.api')?.a, [])
  t.same(empty.tasks.get('w1')?.names.get('_grpc._tcp.api')?.srv, [])
})

t.test('collisions: a service name beats an alias; equal ranks merge', async (t) => {
  const input = fixtureInput()
  input.services.push(
    { id: 'svc-x', name: 'x', networks: [{ network: 'front', vip: '10.0.1.101', aliases: ['web', 'shared'] }] },
    { id: 'svc-y', name: 'y', networks: [{ network: 'front', vip: '10.0.1.102', aliases: ['shared'] }] }
  )
  const merged = buildDnsTables(parseDesiredState(input))
  t.same(values(merged, 'c1', 'web'), ['A 10.0.1.100 front'], 'the service web wins over x\'s alias web')
  t.same(values(merged, 'c1', 'shared'), ['A 10.0.1.101 front', 'A 10.0.1.102 front'])
  t.equal(merged.tasks.get('c1')?.names.get('shared')?.rule, 'alias')
})

t.test('an empty document: no views', async (t) => {
  const empty = buildDnsTables(parseDesiredState({ version: 1, revision: 0, networks: [], endpoints: [], remoteEndpoints: [] }))
  t.equal(empty.tasks.size, 0)
  t.equal(empty.taskIds.size, 0)
})

/** 10 networks (/16), 100 services on 1–2 networks each, 1000 endpoints of which 200 local. */
function bigDocument (): DesiredState {
  const networks = Array.from({ length: 10 }, (_, n) => ({ id: `n${n}`, name: `n${n}`, subnet: `10.${n}.0.0/16`, gateway: `10.${n}.0.1`, vni: 5000 + n }))
  const services = Array.from({ length: 100 }, (_, s) => {
    const home = [s % 10, ...(s % 3 === 0 ? [(s + 1) % 10] : [])]
    const dnsrr = s % 4 === 0
    return {
      id: `s${s}`,
      name: `svc${s}`,
      endpointMode: dnsrr ? 'dnsrr' as const : 'vip' as const,
      networks: home.map((n) => ({ network: `n${n}`, ...(dnsrr ? {} : { vip: `10.${n}.200.${s}` }), aliases: [`alias${s}`] })),
      ports: [{ name: 'http', protocol: 'tcp' as const, target: 80 }]
    }
  })
  const endpoints = []
  const remoteEndpoints = []
  for (let i = 0; i < 1000; i++) {
    const s = i % 100
    const service = services[s]!
    const network = service.networks[i % service.networks.length]!.network
    const n = Number(network.slice(1))
    const ip = `10.${n}.${1 + (i >> 8)}.${i & 255}`
    const mac = `02:42:00:${(n).toString(16).padStart(2, '0')}:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`
    const common = { network, ip, mac, service: `s${s}`, name: `svc${s}.${i}.t${i}`, healthy: i % 7 !== 0 }
    if (i < 200) endpoints.push({ task: `t${i}`, ...common })
    else remoteEndpoints.push({ ...common, node: '192.168.5.2', task: `t${i}` })
  }
  return parseDesiredState({ version: 1, revision: 1, networks, endpoints, remoteEndpoints, services })
}

t.test('1000 endpoints / 100 services: tasks on the same networks share one table', async (t) => {
  const built = buildDnsTables(bigDocument())
  t.equal(built.tasks.size, 200)
  t.ok((built.tasks.get('t0')?.names.size ?? 0) > 100, 'views hold the network\'s names')
  // t0 and t10 are both tasks of svc0, on n0 only: one folded table, not two copies.
  t.equal(built.tasks.get('t0')?.names, built.tasks.get('t10')?.names)
  t.not(built.tasks.get('t0')?.names, built.tasks.get('t1')?.names, 'another network, another table')
})

t.test('the ingress network is not for discovery: no names on it, the other networks unchanged', async (t) => {
  const input = fixtureInput()
  input.networks.push({ id: 'ingress', name: 'ingress', subnet: '10.255.0.0/24', gateway: '10.255.0.1', vni: 4096, ingress: true })
  input.endpoints.push({ task: 'web1', network: 'ingress', ip: '10.255.0.20', mac: '02:42:0a:ff:00:14', service: 'svc-web', name: 'web.1.web1' })
  input.services[0].networks.push({ network: 'ingress', vip: '10.255.0.100' })
  const withIngress = buildDnsTables(parseDesiredState(input))
  t.same(values(withIngress, 'web1', 'web').sort(), ['A 10.0.1.100 front', 'A 10.0.2.100 back'], 'no ingress VIP')
  t.notOk(withIngress.tasks.get('web1')?.names.has('20.0.255.10.in-addr.arpa'), 'no PTR for an ingress address')
})
