/**
 * lbSpec: which namespace balances which frontend, over which backends.
 */
import t from 'tap'
import { lbFixture, lbFixtureInput, lbFixtureSpec, LEG } from '../fixtures/lb-doc.ts'
import { lbSpec } from '../../lb/spec.ts'
import { parseIpv4 } from '../../netd/ipv4.ts'

const spec = lbFixtureSpec()
const vips = (netns: string): string[] => spec.tasks.get(netns)?.frontends.map((f) => `${f.vip} ${f.serviceName} ${f.scheduler}`) ?? []

t.test('every local task has a namespace entry, with the VIPs of its networks only', async (t) => {
  t.same([...spec.tasks.keys()], ['ns-c1', 'ns-b1', 'ns-web1'])
  t.same(vips('ns-c1'), ['10.0.1.100 web rr', '10.0.1.101 idle rr'])
  t.same(vips('ns-b1'), ['10.0.1.100 web rr', '10.0.1.101 idle rr', '10.0.2.100 api sh'], 'front and back, sorted by VIP')
  t.same(vips('ns-web1'), ['10.0.1.100 web rr', '10.0.1.101 idle rr', '10.255.0.100 web rr'])
  for (const task of spec.tasks.values()) {
    t.notOk(task.frontends.some((f) => f.vip === '10.0.3.100'), `${task.task} does not see db (network other)`)
    t.notOk(task.frontends.some((f) => f.service === 'dir'), 'a dnsrr service has no VIP')
  }
  t.same(spec.tasks.get('ns-b1')?.networks, ['back', 'front'])
})

t.test('tasks attached to the same networks share one frontends array', async (t) => {
  const input = lbFixtureInput()
  input.endpoints.push({ task: 'c2', network: 'front', ip: '10.0.1.12', mac: '02:42:0a:00:01:0c' })
  const shared = lbSpec(lbFixture(input), { taskNetns: (task) => task, ingressLeg: null })
  t.equal(shared.tasks.get('c1')?.frontends, shared.tasks.get('c2')?.frontends)
  t.not(shared.tasks.get('c1')?.frontends, shared.tasks.get('b1')?.frontends)
})

t.test('a VIP\'s backends: the service\'s tasks on that network, local and remote, healthy or not, by address', async (t) => {
  const web = spec.tasks.get('ns-b1')!.frontends[0]!
  t.same(web.backends.map((b) => `${b.ip} ${b.task} ${b.healthy ? 'healthy' : 'unhealthy'} ${b.local ? 'local' : 'remote'}`), [
    '10.0.1.20 web1 healthy local',
    '10.0.1.21 web2 healthy remote',
    '10.0.1.22 web3 unhealthy remote'
  ])
  const api = spec.tasks.get('ns-b1')!.frontends[2]!
  t.same(api.backends.map((b) => b.ip), ['10.0.2.30', '10.0.2.31'], 'sorted by address, not document order')
  t.same(spec.tasks.get('ns-c1')!.frontends[1]!.backends, [], 'idle: no task')
  t.ok(parseIpv4('10.0.2.9')! < parseIpv4('10.0.2.30')!, 'numeric, not textual, order')
  t.equal(parseIpv4('255.255.255.255'), 2 ** 32 - 1)
})

t.test('published ports: ingress mode over the ingress network, host mode over local tasks', async (t) => {
  t.same(spec.host.leg, LEG)
  t.same(spec.host.frontends.map((f) => `${f.key} ${f.kind} -> ${f.target} [${f.backends.map((b) => b.ip).join(' ')}]`), [
    'tcp . 8080 ingress -> 80 [10.255.0.20 10.255.0.21 10.255.0.22]',
    'tcp . 9090 ingress -> 9000 []',
    'udp . 5353 host -> 53 [10.255.0.20]'
  ])
  t.same(spec.problems, [])
})

t.test('without an ingress leg nothing is published, and each port says why', async (t) => {
  const noLeg = lbFixtureSpec(lbFixture(), null)
  t.same(noLeg.host.frontends, [])
  t.same(noLeg.problems, [
    'service web port 8080/tcp: this node has no ingress leg',
    'service web port 5353/udp: this node has no ingress leg',
    'service api port 9090/tcp: this node has no ingress leg'
  ])
})

t.test('host mode publishes nothing on a node without a task of the service', async (t) => {
  const input = lbFixtureInput()
  input.endpoints = input.endpoints.filter((e: { task: string }) => e.task !== 'web1')
  const noWeb = lbFixtureSpec(lbFixture(input))
  t.same(noWeb.host.frontends.map((f) => f.key), ['tcp . 8080', 'tcp . 9090'])
  t.same(noWeb.problems, [])
})
