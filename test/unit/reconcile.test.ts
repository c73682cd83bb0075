/**
 * The reconciler end to end over the in-memory fake kernel: observe → plan →
 * execute, with the fake failing lines where the kernel would. Assertions on
 * the kernel read the fake's own model, not observe.ts, so a parser bug and a
 * plan bug cannot hide each other.
 */
import t from 'tap'
import { pino } from 'pino'
import { parseDesiredState, type DesiredState } from '../../netd/desired-state.ts'
import { Reconciler } from '../../netd/reconciler.ts'
import { NetdError } from '../../netd/errors.ts'
import { BRIDGE_NETFILTER_SYSCTLS, INGRESS_LEG, INGRESS_PORT_KEY, networkNamespaceName, portName, taskNamespaceName } from '../../netd/kernel-state.ts'
import type { NodeIdentity } from '../../netd/desired-kernel.ts'
import type { IprouteRunner } from '../../netd/iproute.ts'
import { FakeKernel, faultyRunner } from '../fixtures/fake-kernel.ts'
import { prng } from '../helpers/prng.ts'

const NODE: NodeIdentity = { prefix: 'wt-', underlayAddress: '192.168.5.1', overlayMtu: 1450 }
const silent = pino({ level: 'silent' })
const lines = (commands: ReadonlyArray<{ tool: string, netns: string | null, line: string }>): string[] =>
  commands.map((c) => `${c.netns ?? '-'} ${c.tool} ${c.line}`)

function setup (runner?: IprouteRunner): { kernel: FakeKernel, reconciler: Reconciler } {
  const kernel = new FakeKernel()
  return { kernel, reconciler: new Reconciler(runner ?? kernel, NODE, silent) }
}

const BASE = {
  version: 1,
  revision: 1,
  networks: [
    { id: 'blue', name: 'blue', subnet: '10.0.1.0/24', gateway: '10.0.1.1', vni: 4097 },
    { id: 'red', name: 'red', subnet: '10.0.2.0/24', gateway: '10.0.2.1', vni: 4098 }
  ],
  endpoints: [
    { task: 't1', network: 'blue', ip: '10.0.1.2', mac: '02:42:0a:00:01:02' },
    { task: 't1', network: 'red', ip: '10.0.2.2', mac: '02:42:0a:00:02:02' },
    { task: 't2', network: 'blue', ip: '10.0.1.4', mac: '02:42:0a:00:01:04' }
  ],
  remoteEndpoints: [
    { network: 'blue', ip: '10.0.1.3', mac: '02:42:0a:00:01:03', node: '192.168.5.2' },
    { network: 'blue', ip: '10.0.1.5', mac: '02:42:0a:00:01:05', node: '192.168.5.3' },
    { network: 'red', ip: '10.0.2.3', mac: '02:42:0a:00:02:03', node: '192.168.5.2' }
  ]
}
const doc = (patch: Partial<typeof BASE> = {}): DesiredState => parseDesiredState({ ...BASE, ...patch })

/** Everything in the fake that should match `doc`; returns the mismatches, empty when converged. */
async function kernelMismatches (kernel: FakeKernel, want: DesiredState): Promise<string[]> {
  const problems: string[] = []
  const expectNamespaces = [...new Set([
    ...want.networks.map((n) => networkNamespaceName(NODE.prefix, n.id)),
    ...want.endpoints.map((e) => taskNamespaceName(NODE.prefix, e.task))
  ])].sort()
  const namespaces = await kernel.namespaces()
  if (JSON.stringify(namespaces) !== JSON.stringify(expectNamespaces)) problems.push(`namespaces ${namespaces.join(',')}, want ${expectNamespaces.join(',')}`)
  for (const ns of namespaces) if (!kernel.links(ns).find((l) => l.name === 'lo')?.up) problems.push(`${ns}: lo is down`)
  for (const network of want.networks) {
    const ns = networkNamespaceName(NODE.prefix, network.id)
    const on = [...await kernel.sysctls(ns, BRIDGE_NETFILTER_SYSCTLS)].filter(([, value]) => value !== '0')
    if (on.length > 0) problems.push(`${ns}: bridged frames handed to netfilter (${on.map(([name]) => name).join(', ')})`)
  }
  const hostVxlans = kernel.links(null).filter((l) => l.kind === 'vxlan').map((l) => l.name)
  if (hostVxlans.length > 0) problems.push(`VXLAN devices left in the host namespace: ${hostVxlans.join(',')}`)

  for (const network of want.networks) {
    const ns = networkNamespaceName(NODE.prefix, network.id)
    const vx0 = kernel.links(ns).find((l) => l.name === 'vx0')
    const br0 = kernel.links(ns).find((l) => l.name === 'br0')
    if (!vx0?.vxlan || !br0) { problems.push(`${ns}: no vx0 or br0`); continue }
    if (vx0.vxlan.id !== network.vni || !vx0.up || vx0.master !== br0.index || !br0.up) problems.push(`${ns}: vx0 VNI ${vx0.vxlan.id} up ${vx0.up} on br0 ${vx0.master === br0.index}`)
    const remotes = want.remoteEndpoints.filter((r) => r.network === network.id)
    const fdb = [...vx0.fdb].map(([mac, dst]) => `${mac}>${dst}`).sort()
    const wantFdb = remotes.map((r) => `${r.mac}>${r.node}`).sort()
    if (JSON.stringify(fdb) !== JSON.stringify(wantFdb)) problems.push(`${ns}: FDB ${fdb.join(',')}, want ${wantFdb.join(',')}`)
    const neigh = [...vx0.neigh].map(([ip, mac]) => `${ip}>${mac}`).sort()
    const wantNeigh = remotes.map((r) => `${r.ip}>${r.mac}`).sort()
    if (JSON.stringify(neigh) !== JSON.stringify(wantNeigh)) problems.push(`${ns}: neighbours ${neigh.join(',')}, want ${wantNeigh.join(',')}`)
    const ports = kernel.links(ns).filter((l) => l.kind === 'veth').map((l) => l.name).sort()
    const wantPorts = [
      ...want.endpoints.filter((e) => e.network === network.id).map((e) => portName(e.task)),
      ...(want.ingress?.network === network.id ? [portName(INGRESS_PORT_KEY)] : [])
    ].sort()
    if (JSON.stringify(ports) !== JSON.stringify(wantPorts)) problems.push(`${ns}: ports ${ports.join(',')}, want ${wantPorts.join(',')}`)
  }

  for (const endpoint of want.endpoints) {
    const ns = taskNamespaceName(NODE.prefix, endpoint.task)
    const network = want.networks.find((n) => n.id === endpoint.network)!
    const iface = kernel.links(ns).filter((l) => l.alias === `weft:net=${endpoint.network}`)
    const port = kernel.links(networkNamespaceName(NODE.prefix, endpoint.network)).find((l) => l.name === portName(endpoint.task))
    const address = `${endpoint.ip}/${network.subnet.split('/')[1]}`
    if (iface.length !== 1 || !port) { problems.push(`${ns}: ${iface.length} interfaces on ${endpoint.network}, port ${port?.name}`); continue }
    const [link] = iface
    if (link!.address !== endpoint.mac || JSON.stringify(link!.addrs) !== JSON.stringify([address]) || !link!.up || link!.peer !== port.index || !port.up || port.master === null) {
      problems.push(`${ns}: interface ${link!.name} on ${endpoint.network} is ${link!.address} ${link!.addrs.join(',')} up ${link!.up}, want ${endpoint.mac} ${address}`)
    }
  }
  const tasks = new Set(want.endpoints.map((e) => e.task))
  for (const task of tasks) {
    const ns = taskNamespaceName(NODE.prefix, task)
    const onIngress = want.ingress !== undefined && want.endpoints.some((e) => e.task === task && e.network === want.ingress!.network)
    const gateway = kernel.defaultGatewayOf(ns)
    if (gateway !== (onIngress ? want.ingress!.ip : undefined)) problems.push(`${ns}: default route via ${gateway}, want ${onIngress ? want.ingress!.ip : 'none'}`)
  }
  const leg = kernel.links(null).find((l) => l.name === INGRESS_LEG)
  if (want.ingress === undefined) {
    if (leg) problems.push('an ingress leg without an ingress endpoint')
  } else {
    const network = want.networks.find((n) => n.id === want.ingress!.network)!
    const port = kernel.links(networkNamespaceName(NODE.prefix, network.id)).find((l) => l.name === portName(INGRESS_PORT_KEY))
    const address = `${want.ingress.ip}/${network.subnet.split('/')[1]}`
    if (!leg || !port || leg.peer !== port.index || !leg.up || leg.address !== want.ingress.mac || JSON.stringify(leg.addrs) !== JSON.stringify([address]) || port.master === null || !port.up) {
      problems.push(`ingress leg ${leg ? `${leg.address} ${leg.addrs.join(',')} up ${leg.up}` : 'missing'}, port ${port?.name ?? 'missing'}; want ${want.ingress.mac} ${address}`)
    }
  }
  return problems
}

t.test('applying a document to an empty kernel converges, and a second plan is empty', async (t) => {
  const { kernel, reconciler } = setup()
  const first = await reconciler.reconcile(doc())
  t.ok(first.commands.length > 0, 'the first reconcile builds something')
  t.same(await kernelMismatches(kernel, doc()), [])
  t.same(lines(await reconciler.drift(doc())), [], 're-plan is empty')
  const applied = kernel.applied.length
  const second = await reconciler.reconcile(doc())
  t.same(second.commands, [], 'a second reconcile changes nothing')
  t.equal(kernel.applied.length, applied, 'and runs no line')
})

t.test('bridged frames: off in every network namespace, turned off again after an operator turns them on, not written without br_netfilter', async (t) => {
  const { kernel, reconciler } = setup()
  await reconciler.reconcile(doc())
  kernel.setSysctl('wt-n-red', 'net.bridge.bridge-nf-call-iptables', '1')
  const repair = await reconciler.reconcile(doc())
  t.same(lines(repair.commands), BRIDGE_NETFILTER_SYSCTLS.map((name) => `wt-n-red sysctl ${name}=0`))
  t.same(await kernelMismatches(kernel, doc()), [])

  const bare = new FakeKernel({ brNetfilter: false })
  const onBare = new Reconciler(bare, NODE, silent)
  await onBare.reconcile(doc())
  t.same([...await bare.sysctls('wt-n-blue', BRIDGE_NETFILTER_SYSCTLS)], [], 'nothing to turn off')
  t.same(lines(await onBare.drift(doc())), [], 'and no drift: a missing br_netfilter is not retried')
})

t.test('removing one remote endpoint emits exactly one fdb del and one neigh del', async (t) => {
  const { reconciler } = setup()
  await reconciler.reconcile(doc())
  const fewer = doc({ remoteEndpoints: BASE.remoteEndpoints.filter((r) => r.ip !== '10.0.1.5') })
  const result = await reconciler.reconcile(fewer)
  t.same(lines(result.commands), [
    'wt-n-blue bridge fdb del 02:42:0a:00:01:05 dev vx0 dst 192.168.5.3 self',
    'wt-n-blue ip neigh flush to 10.0.1.5 dev vx0 nud permanent'
  ])
  t.same(lines(await reconciler.drift(fewer)), [])
})

// Regression: plan() deletes the network namespace in stage 0 and then, in stage 1, the task-side end
// of the veth on that network; the kernel already removed it with its peer, so the line fails.
t.test('removing a network removes exactly its namespace and its tasks\' interfaces on it', async (t) => {
  const { kernel, reconciler } = setup()
  await reconciler.reconcile(doc())
  const blueBefore = kernel.links('wt-n-blue').map((l) => `${l.index} ${l.name}`)
  const t1Blue = kernel.links('wt-t-t1').find((l) => l.alias === 'weft:net=blue')!
  const withoutRed = doc({
    networks: BASE.networks.filter((n) => n.id !== 'red'),
    endpoints: BASE.endpoints.filter((e) => e.network !== 'red'),
    remoteEndpoints: BASE.remoteEndpoints.filter((r) => r.network !== 'red')
  })
  const result = await reconciler.reconcile(withoutRed).catch((error: unknown) => error)
  t.notOk(result instanceof Error, `reconcile succeeds (got: ${result instanceof NetdError ? result.details.join('; ') : 'no error'})`)
  t.same(await kernel.namespaces(), ['wt-n-blue', 'wt-t-t1', 'wt-t-t2'])
  t.same(kernel.links('wt-n-blue').map((l) => `${l.index} ${l.name}`), blueBefore, 'the other network is untouched')
  t.same(kernel.links('wt-t-t1').filter((l) => l.kind === 'veth').map((l) => `${l.index} ${l.alias}`), [`${t1Blue.index} weft:net=blue`], 'only the interface on blue is left')
  t.same(await kernelMismatches(kernel, withoutRed), [])
})

// Regression, the same shape: the task namespace goes in stage 0, the port (its veth peer) is deleted again in stage 1.
t.test('removing a task removes its namespace and its bridge ports in one reconcile', async (t) => {
  const { kernel, reconciler } = setup()
  await reconciler.reconcile(doc())
  const withoutT2 = doc({ endpoints: BASE.endpoints.filter((e) => e.task !== 't2') })
  const result = await reconciler.reconcile(withoutT2).catch((error: unknown) => error)
  t.notOk(result instanceof Error, `reconcile succeeds (got: ${result instanceof NetdError ? result.details.join('; ') : 'no error'})`)
  t.same(await kernelMismatches(kernel, withoutT2), [])
})

t.test('a stray wvx host link and a stray namespace with the prefix are removed; others are left alone', async (t) => {
  const { kernel, reconciler } = setup()
  await reconciler.reconcile(doc())
  const injected = await kernel.batch('ip', null, [
    'link add wvx77 mtu 1450 type vxlan id 77 local 192.168.5.1 dstport 4789 nolearning proxy',
    'link add other0 mtu 1450 type vxlan id 78 local 192.168.5.1 dstport 4789 nolearning proxy',
    'netns add wt-junk',
    'netns add wt-n-',
    'netns add someone-else'
  ])
  t.same(injected, { failures: [] })
  const result = await reconciler.reconcile(doc())
  t.same(lines(result.commands).sort(), ['- ip link del dev wvx77', '- ip netns del wt-junk', '- ip netns del wt-n-'])
  t.same(kernel.links(null).map((l) => l.name), ['lo', 'eth0', 'other0'])
  t.same(await kernel.namespaces(), ['someone-else', 'wt-n-blue', 'wt-n-red', 'wt-t-t1', 'wt-t-t2'])
})

t.test('a stray link inside a network or task namespace is removed', async (t) => {
  const { kernel, reconciler } = setup()
  await reconciler.reconcile(doc())
  t.same(await kernel.batch('ip', 'wt-t-t1', ['link add br9 type bridge']), { failures: [] })
  t.same(await kernel.batch('ip', 'wt-n-red', ['link add br9 type bridge']), { failures: [] })
  const result = await reconciler.reconcile(doc())
  t.same(lines(result.commands).sort(), ['wt-n-red ip link del dev br9', 'wt-t-t1 ip link del dev br9'])
  t.same(await kernelMismatches(kernel, doc()), [])
})

// Regression: when a line of stage 3 fails, the port is left without its alias and reads as a stray link,
// while the task side reads as an interface that lost its port. Both ends are deleted in stage 1, in parallel
// batches; the second finds nothing to delete, which must count as done rather than as a failed reconcile.
t.test('after a failed line, the next healthy reconcile repairs without error', async (t) => {
  const kernel = new FakeKernel()
  const faulty = faultyRunner(kernel, (_tool, _netns, line) => line.startsWith(`link set dev ${portName('t2')} alias`))
  await t.rejects(new Reconciler(faulty, NODE, silent).reconcile(doc()), { code: 'NETD_ERR_KERNEL' })
  const healthy = new Reconciler(kernel, NODE, silent)
  const result = await healthy.reconcile(doc()).catch((error: unknown) => error)
  t.notOk(result instanceof Error, `reconcile succeeds (got: ${result instanceof NetdError ? result.details.join('; ') : 'no error'})`)
  t.same(await kernelMismatches(kernel, doc()), [])
})

t.test('cleanup() leaves nothing with the prefix', async (t) => {
  const { kernel, reconciler } = setup()
  await reconciler.reconcile(doc())
  await kernel.batch('ip', null, ['netns add someone-else', 'link add wvx9 type vxlan id 9 local 192.168.5.1 dstport 4789'])
  await reconciler.cleanup()
  t.same(await kernel.namespaces(), ['someone-else'])
  t.same(kernel.links(null).map((l) => l.name), ['lo', 'eth0'])
  t.same(lines(await reconciler.drift(parseDesiredState({ ...BASE, networks: [], endpoints: [], remoteEndpoints: [] }))), [])
})

t.test('a failed line makes reconcile throw NETD_ERR_KERNEL with that line; the next reconcile converges', async (t) => {
  const kernel = new FakeKernel()
  const failing = 'fdb replace 02:42:0a:00:01:05 dev vx0 dst 192.168.5.3 self permanent'
  const faulty = faultyRunner(kernel, (tool, netns, line) => tool === 'bridge' && netns === 'wt-n-blue' && line === failing)
  const error = await new Reconciler(faulty, NODE, silent).reconcile(doc()).then(() => null, (e: unknown) => e)
  t.ok(error instanceof NetdError, 'reconcile rejects with a NetdError')
  t.match(error, { code: 'NETD_ERR_KERNEL', details: [`bridge in wt-n-blue: injected failure: ${failing} (${failing})`] })
  t.equal((error as NetdError).details.length, 1, 'and only that line failed')
  const healthy = new Reconciler(kernel, NODE, silent)
  const repair = await healthy.reconcile(doc())
  t.same(lines(repair.commands), [`wt-n-blue bridge ${failing}`], 'only the failed line is retried')
  t.same(await kernelMismatches(kernel, doc()), [])
  t.same(lines(await healthy.drift(doc())), [])
})

t.test('the fake kernel fails what the kernel would', async (t) => {
  const kernel = new FakeKernel()
  const result = await kernel.batch('ip', null, [
    'netns add a',
    'link add name x netns a type veth peer name y',
    'link add name x netns a type veth peer name z',
    'link set dev nope up'
  ])
  t.match(result.failures, [{ index: 2, message: /File exists/ }, { index: 3, message: /Cannot find device "nope"/ }])
  t.same(kernel.links(null).map((l) => l.name), ['lo', 'eth0', 'y'])
  t.same((await kernel.batch('ip', null, ['netns del a'])).failures, [])
  t.same(kernel.links(null).map((l) => l.name), ['lo', 'eth0'], 'deleting a namespace deletes veth peers outside it')
  t.same(await kernel.batch('ip', null, ['link add wvx1 type vxlan id 1 local 192.168.5.1 dstport 4789', 'link set dev wvx1 up', 'link set dev wvx1 name vx1']),
    { failures: [{ index: 2, message: 'RTNETLINK answers: Device or resource busy' }] })
})

function randomDocument (random: () => number, revision: number): DesiredState {
  const int = (low: number, high: number): number => low + Math.floor(random() * (high - low + 1))
  const pick = <T>(items: readonly T[], count: number): T[] => {
    const pool = [...items]
    for (let i = pool.length - 1; i > 0; i--) { const j = int(0, i); [pool[i], pool[j]] = [pool[j]!, pool[i]!] }
    return pool.slice(0, count)
  }
  const hex = (n: number): string => n.toString(16).padStart(2, '0')
  // Small pools, so consecutive documents share ids and exercise changes rather than only creation.
  const vnis = pick([100, 101, 102, 103, 104, 105], 4)
  const networks = pick(['a', 'b', 'c', 'd', 'e'], int(1, 4)).map((id, index) => {
    const prefix = pick([24, 25], 1)[0]!
    const subnet = `10.${int(0, 2)}.0.0/${prefix}`
    return { id, name: `net-${id}`, subnet, gateway: subnet.replace(/0\/\d+$/, '1'), vni: vnis[index]!, hosts: 2 ** (32 - prefix) - 2 }
  })
  const used = new Map(networks.map((n) => [n.id, { hosts: new Set([1]), macs: new Set<string>() }]))
  const claim = (network: typeof networks[number]): { ip: string, mac: string } => {
    const taken = used.get(network.id)!
    let host: number
    do host = int(2, Math.min(network.hosts, 20)); while (taken.hosts.has(host))
    let mac: string
    do mac = `02:00:00:00:${hex(int(0, 3))}:${hex(int(0, 15))}`; while (taken.macs.has(mac))
    taken.hosts.add(host)
    taken.macs.add(mac)
    return { ip: network.subnet.replace(/0\/\d+$/, String(host)), mac }
  }
  const endpoints = pick(['t0', 't1', 't2', 't3', 't4'], int(0, 4)).flatMap((task) =>
    pick(networks, int(1, Math.min(3, networks.length))).map((network) => ({ task, network: network.id, ...claim(network) })))
  const remoteEndpoints = networks.flatMap((network) => Array.from({ length: int(0, 3) }, () =>
    ({ network: network.id, ...claim(network), node: `192.168.5.${int(2, 4)}` })))
  // Half the documents route a mesh through the first network: a leg into it, default routes for its tasks.
  const ingress = random() < 0.5 ? networks[0]! : undefined
  return parseDesiredState({
    version: 1,
    revision,
    networks: networks.map(({ hosts, ...network }) => ({ ...network, ingress: network.id === ingress?.id })),
    endpoints,
    remoteEndpoints,
    ...(ingress === undefined ? {} : { ingress: { network: ingress.id, ...claim(ingress) } })
  })
}

t.test('property: any sequence of valid documents converges after each reconcile', async (t) => {
  const ITERATIONS = 200
  const failures: string[] = []
  const random = prng(0x5eed)
  let kernel = new FakeKernel()
  let reconciler = new Reconciler(kernel, NODE, silent)
  for (let step = 0; step < ITERATIONS && failures.length === 0; step++) {
    // A fresh kernel now and then, so creation from empty is exercised as much as change.
    if (random() < 0.15) {
      kernel = new FakeKernel()
      reconciler = new Reconciler(kernel, NODE, silent)
    }
    const want = randomDocument(random, step)
    const problems: string[] = []
    try {
      await reconciler.reconcile(want)
      const replan = lines(await reconciler.drift(want))
      if (replan.length > 0) problems.push(`re-plan not empty: ${replan.join(' | ')}`)
      problems.push(...await kernelMismatches(kernel, want))
    } catch (error) {
      problems.push(`reconcile threw: ${error instanceof NetdError ? `${error.code} ${error.details.join('; ')}` : String(error)}`)
    }
    if (problems.length > 0) failures.push(`step ${step}: ${problems.join('; ')}\n  document: ${JSON.stringify(want)}`)
  }
  t.same(failures, [], `${ITERATIONS} random documents reconciled`)
})
