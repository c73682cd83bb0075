/**
 * The desired-state document: one test per rule. Each asserts the error code
 * and the field path the detail names, never the wording after it.
 */
import t, { type Test } from 'tap'
import { parseDesiredState } from '../../netd/desired-state.ts'
import { NetdError } from '../../netd/errors.ts'

function valid (): Record<string, any> {
  return {
    version: 1,
    revision: 7,
    networks: [
      { id: 'blue', name: 'blue', subnet: '10.0.1.0/24', gateway: '10.0.1.1', vni: 4097 },
      { id: 'red', name: 'red', subnet: '10.0.2.0/24', gateway: '10.0.2.1', vni: 4098 }
    ],
    endpoints: [
      { task: 't1', network: 'blue', ip: '10.0.1.2', mac: '02:42:0A:00:01:02' },
      { task: 't1', network: 'red', ip: '10.0.2.2', mac: '02:42:0a:00:02:02' }
    ],
    remoteEndpoints: [
      { network: 'blue', ip: '10.0.1.3', mac: '02:42:0a:00:01:03', node: '192.168.5.2' }
    ]
  }
}

/** The field paths of the details of the NETD_ERR_INVALID_DOCUMENT that `input` raises. */
function rejectedPaths (t: Test, input: unknown): string[] {
  try {
    parseDesiredState(input)
  } catch (error) {
    t.ok(error instanceof NetdError, 'throws a NetdError')
    t.equal((error as NetdError).code, 'NETD_ERR_INVALID_DOCUMENT')
    return (error as NetdError).details.map((detail) => detail.slice(0, detail.indexOf(':')))
  }
  t.fail('the document was accepted')
  return []
}

t.test('a valid document parses: MACs lowercased, result deeply frozen', async (t) => {
  const doc = parseDesiredState(valid())
  t.equal(doc.endpoints[0]!.mac, '02:42:0a:00:01:02')
  t.equal(doc.revision, 7)
  t.ok(Object.isFrozen(doc), 'document frozen')
  t.ok(Object.isFrozen(doc.networks) && Object.isFrozen(doc.networks[0]), 'arrays and entries frozen')
  t.ok(Object.isFrozen(doc.endpoints[1]) && Object.isFrozen(doc.remoteEndpoints[0]))
  t.throws(() => { (doc.networks as unknown as unknown[]).push({}) })
})

t.test('two networks with the same subnet and different VNIs are valid (isolated by VNI)', async (t) => {
  const input = valid()
  input.networks[1].subnet = '10.0.1.0/24'
  input.networks[1].gateway = '10.0.1.1'
  input.endpoints[1].ip = '10.0.1.2'
  const doc = parseDesiredState(input)
  t.equal(doc.networks[1]!.subnet, doc.networks[0]!.subnet)
})

const cases: Array<[string, (doc: Record<string, any>) => void, string[]]> = [
  ['bad CIDR', (d) => { d.networks[0].subnet = '10.0.1.0/33' }, ['networks[0].subnet']],
  ['CIDR without prefix', (d) => { d.networks[0].subnet = '10.0.1.0' }, ['networks[0].subnet']],
  ['host bits set', (d) => { d.networks[0].subnet = '10.0.1.5/24' }, ['networks[0].subnet']],
  ['duplicate VNI', (d) => { d.networks[1].vni = 4097 }, ['networks[1].vni']],
  ['duplicate network id', (d) => { d.networks[1].id = 'blue'; d.endpoints.pop() }, ['networks[1].id']],
  ['gateway outside the subnet', (d) => { d.networks[0].gateway = '10.0.9.1' }, ['networks[0].gateway']],
  ['endpoint IP outside the subnet', (d) => { d.endpoints[0].ip = '10.0.2.9' }, ['endpoints[0].ip']],
  ['remote IP outside the subnet', (d) => { d.remoteEndpoints[0].ip = '10.9.1.3' }, ['remoteEndpoints[0].ip']],
  ['network address', (d) => { d.endpoints[0].ip = '10.0.1.0' }, ['endpoints[0].ip']],
  ['broadcast address', (d) => { d.remoteEndpoints[0].ip = '10.0.1.255' }, ['remoteEndpoints[0].ip']],
  ['duplicate IP, local vs remote', (d) => { d.remoteEndpoints[0].ip = '10.0.1.2' }, ['remoteEndpoints[0].ip']],
  ['duplicate IP, vs the gateway', (d) => { d.endpoints[0].ip = '10.0.1.1' }, ['endpoints[0].ip']],
  ['duplicate MAC in a network', (d) => { d.remoteEndpoints[0].mac = '02:42:0a:00:01:02' }, ['remoteEndpoints[0].mac']],
  ['duplicate MAC in a network, different case', (d) => { d.remoteEndpoints[0].mac = '02:42:0A:00:01:02' }, ['remoteEndpoints[0].mac']],
  ['unknown network reference', (d) => { d.endpoints[1].network = 'green' }, ['endpoints[1].network']],
  ['unknown network reference, remote', (d) => { d.remoteEndpoints[0].network = 'green' }, ['remoteEndpoints[0].network']],
  ['task attached twice to a network', (d) => { d.endpoints[1] = { task: 't1', network: 'blue', ip: '10.0.1.9', mac: '02:42:0a:00:01:09' } }, ['endpoints[1]']],
  ['multicast MAC', (d) => { d.endpoints[0].mac = '03:42:0a:00:01:02' }, ['endpoints[0].mac']],
  ['malformed MAC', (d) => { d.endpoints[0].mac = '02:42:0a:00:01' }, ['endpoints[0].mac']],
  ['unknown extra field on the document', (d) => { d.extra = true }, ['(document)']],
  ['unknown extra field on an entry', (d) => { d.networks[1].mtu = 9000 }, ['networks[1]']],
  ['wrong version', (d) => { d.version = 2 }, ['version']],
  ['VNI out of range', (d) => { d.networks[0].vni = 16_777_216 }, ['networks[0].vni']],
  ['bad id', (d) => { d.endpoints[0].task = 'T1/../x' }, ['endpoints[0].task']],
  ['duplicate network name', (d) => { d.networks[1].name = 'blue' }, ['networks[1].name']]
]

for (const [rule, mutate, paths] of cases) {
  t.test(`rejects: ${rule}`, async (t) => {
    const input = valid()
    mutate(input)
    t.same(rejectedPaths(t, input), paths)
  })
}

t.test('every problem is reported at once, with its own path', async (t) => {
  const input = valid()
  input.networks[1].vni = 4097
  input.endpoints[0].ip = '10.0.1.1'
  input.remoteEndpoints[0].network = 'green'
  t.same(rejectedPaths(t, input), ['networks[1].vni', 'endpoints[0].ip', 'remoteEndpoints[0].network'])
})

t.test('the same IP and MAC on two different networks is fine', async (t) => {
  const input = valid()
  input.networks[1].subnet = '10.0.1.0/24'
  input.networks[1].gateway = '10.0.1.1'
  input.endpoints[1].ip = '10.0.1.2'
  input.endpoints[1].mac = input.endpoints[0].mac
  t.equal(parseDesiredState(input).endpoints[1]!.mac, '02:42:0a:00:01:02')
})
