/**
 * IPAM: Swarm's defaults (10.0.0.0/8 in /24s, VNIs from 4096), sequential
 * hand-out with freed things coming back last, explicit subnets checked for
 * overlap, and a property test against a model: random allocations and
 * releases never hand out an address twice and never lose one.
 */
import t from 'tap'
import {
  allocateAddress, allocateNetwork, freeAddresses, initIpam, ipToNumber, numberToIp, releaseAddress, releaseNetwork
} from '../../manager/store/ipam.ts'
import { StoreError } from '../../manager/store/errors.ts'
import type { IpamState } from '../../manager/store/state.ts'
import { prng } from '../helpers/prng.ts'

const swarmDefaults = (): IpamState => initIpam({ pools: ['10.0.0.0/8'], subnetSize: 24, avoid: [] })

function codeOf (fn: () => unknown): string {
  try {
    fn()
    return 'ok'
  } catch (error) {
    if (error instanceof StoreError) return error.code
    throw error
  }
}

t.test('default pool: /24s in order, gateway first, VNIs from 4096', async (t) => {
  let ipam = swarmDefaults()
  const made: string[] = []
  for (const id of ['ingress', 'a', 'b']) {
    const n = allocateNetwork(ipam, id, {})
    ipam = n.ipam
    made.push(`${id} ${n.subnet} ${n.gateway} ${n.vni}`)
  }
  t.same(made, ['ingress 10.0.0.0/24 10.0.0.1 4096', 'a 10.0.1.0/24 10.0.1.1 4097', 'b 10.0.2.0/24 10.0.2.1 4098'])
  const first = allocateAddress(ipam, 'a', 'task:t1')
  t.equal(first.ip, '10.0.1.2', 'the first address after the gateway')
})

t.test('subnets routed on the underlay are skipped', async (t) => {
  let ipam = initIpam({ pools: ['10.0.0.0/8'], subnetSize: 24, avoid: ['10.0.0.5/24', '10.0.1.0/23'] })
  t.same(ipam.avoid, ['10.0.0.0/24', '10.0.0.0/23'], 'interface addresses are taken as their networks')
  const n = allocateNetwork(ipam, 'ingress', {})
  t.equal(n.subnet, '10.0.2.0/24')
  ipam = initIpam({ pools: ['10.0.0.0/8'], subnetSize: 16, avoid: ['10.0.3.0/24'] })
  t.equal(allocateNetwork(ipam, 'x', {}).subnet, '10.1.0.0/16', 'a /16 that contains an underlay route is skipped whole')
})

t.test('several pools, and a pool exhausted', async (t) => {
  let ipam = initIpam({ pools: ['10.10.0.0/23', '192.168.100.0/24'], subnetSize: 24, avoid: [] })
  const subnets: string[] = []
  for (const id of ['a', 'b', 'c']) {
    const n = allocateNetwork(ipam, id, {})
    ipam = n.ipam
    subnets.push(n.subnet)
  }
  t.same(subnets, ['10.10.0.0/24', '10.10.1.0/24', '192.168.100.0/24'])
  t.equal(codeOf(() => allocateNetwork(ipam, 'd', {})), 'STORE_ERR_POOL_EXHAUSTED')
  ipam = releaseNetwork(ipam, 'b')
  t.equal(allocateNetwork(ipam, 'd', {}).subnet, '10.10.1.0/24', 'a released subnet can be handed out again')
})

t.test('a freed subnet comes back only after the rest of the pool', async (t) => {
  let ipam = swarmDefaults()
  for (const id of ['a', 'b']) ipam = allocateNetwork(ipam, id, {}).ipam
  ipam = releaseNetwork(ipam, 'a')
  const next = allocateNetwork(ipam, 'c', {})
  t.equal(next.subnet, '10.0.2.0/24', 'not 10.0.0.0/24, just freed')
  t.equal(next.vni, 4098, 'VNIs too are handed out in order, the freed 4096 last')
})

t.test('explicit subnets and gateways', async (t) => {
  let ipam = swarmDefaults()
  ipam = allocateNetwork(ipam, 'ingress', {}).ipam
  const mine = allocateNetwork(ipam, 'mine', { subnet: '10.0.1.0/24', gateway: '10.0.1.254' })
  t.equal(mine.gateway, '10.0.1.254')
  ipam = mine.ipam
  t.equal(allocateAddress(ipam, 'mine', 'x').ip, '10.0.1.1', 'addresses wrap around past a gateway at the end')
  t.equal(codeOf(() => allocateNetwork(ipam, 'clash', { subnet: '10.0.0.0/16' })), 'STORE_ERR_SUBNET_OVERLAP')
  t.equal(codeOf(() => allocateNetwork(ipam, 'clash', { subnet: '10.0.1.128/25' })), 'STORE_ERR_SUBNET_OVERLAP')
  t.equal(codeOf(() => allocateNetwork(ipam, 'bad', { subnet: '10.9.0.1/24' })), 'STORE_ERR_INVALID_ADDRESS', 'host bits set')
  t.equal(codeOf(() => allocateNetwork(ipam, 'bad', { subnet: '10.9.0.0/31' })), 'STORE_ERR_INVALID_ADDRESS', 'too small for the document')
  t.equal(codeOf(() => allocateNetwork(ipam, 'bad', { subnet: '10.9.0.0/24', gateway: '10.8.0.1' })), 'STORE_ERR_INVALID_ADDRESS', 'gateway outside')
  t.equal(codeOf(() => allocateNetwork(ipam, 'bad', { subnet: '10.9.0.0/24', gateway: '10.9.0.255' })), 'STORE_ERR_INVALID_ADDRESS', 'broadcast gateway')
  t.equal(codeOf(() => allocateNetwork(ipam, 'bad', { gateway: '10.9.0.1' })), 'STORE_ERR_INVALID_ADDRESS', 'a gateway without a subnet')
  const auto = allocateNetwork(ipam, 'auto', {})
  t.equal(auto.subnet, '10.0.2.0/24', 'the default pool steps around explicit subnets')
  try {
    allocateNetwork(ipam, 'clash', { subnet: '10.0.0.0/16' }, )
  } catch (error) {
    t.match((error as Error).message, /subnet 10.0.0.0\/16 overlaps network ingress \(10.0.0.0\/24\)/)
  }
})

t.test('pool options are checked', async (t) => {
  t.equal(codeOf(() => initIpam({ pools: ['10.0.0.0/25'], subnetSize: 24, avoid: [] })), 'STORE_ERR_INVALID_ADDRESS')
  t.equal(codeOf(() => initIpam({ pools: ['10.0.0.0/8'], subnetSize: 31, avoid: [] })), 'STORE_ERR_INVALID_ADDRESS')
  t.equal(codeOf(() => initIpam({ pools: [], subnetSize: 24, avoid: [] })), 'STORE_ERR_INVALID_ADDRESS')
})

t.test('addresses: in order, freed ones last, exhaustion is an error', async (t) => {
  let ipam = initIpam({ pools: ['10.0.0.0/8'], subnetSize: 29, avoid: [] })
  ipam = allocateNetwork(ipam, 'n', {}).ipam // 10.0.0.0/29: hosts .1-.6, gateway .1
  t.equal(freeAddresses(ipam, 'n'), 5)
  const got: string[] = []
  for (let i = 0; i < 5; i++) {
    const a = allocateAddress(ipam, 'n', `task:${i}`)
    ipam = a.ipam
    got.push(a.ip)
  }
  t.same(got, ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6'])
  t.equal(freeAddresses(ipam, 'n'), 0)
  t.equal(codeOf(() => allocateAddress(ipam, 'n', 'task:x')), 'STORE_ERR_POOL_EXHAUSTED')
  t.equal(releaseAddress(ipam, 'n', '10.0.0.3', 'task:2'), ipam, 'only the holder can release')
  ipam = releaseAddress(ipam, 'n', '10.0.0.3', 'task:1')
  ipam = releaseAddress(ipam, 'n', '10.0.0.5', 'task:3')
  const again = allocateAddress(ipam, 'n', 'task:y')
  t.equal(again.ip, '10.0.0.3', 'after wrapping, the first freed address')
  t.equal(allocateAddress(again.ipam, 'n', 'task:z').ip, '10.0.0.5')
  t.equal(codeOf(() => releaseNetwork(ipam, 'n')), 'STORE_ERR_NETWORK_IN_USE', 'a network is released only when empty')
})

t.test('property: random allocations and releases against a model', async (t) => {
  const random = prng(0x1ba3)
  const failures: string[] = []
  for (let run = 0; run < 30 && failures.length === 0; run++) {
    let ipam = initIpam({ pools: ['10.0.0.0/22', '172.20.0.0/23'], subnetSize: 28, avoid: random() < 0.5 ? ['10.0.1.0/24'] : [] })
    const networks = new Map<string, { subnet: string, held: Map<string, string> }>()
    const usedSubnets = new Map<string, string>()
    let counter = 0
    for (let step = 0; step < 300 && failures.length === 0; step++) {
      const roll = random()
      const ids = [...networks.keys()]
      const pick = <T>(list: readonly T[]): T | undefined => list[Math.floor(random() * list.length)]
      try {
        if (roll < 0.1 || ids.length === 0) {
          const id = `n${counter++}`
          const made = allocateNetwork(ipam, id, {})
          ipam = made.ipam
          const range = [ipToNumber(made.subnet.split('/')[0]!), ipToNumber(made.subnet.split('/')[0]!) + 15]
          for (const [other, subnet] of usedSubnets) {
            const start = ipToNumber(subnet.split('/')[0]!)
            if (start <= range[1]! && range[0]! <= start + 15) failures.push(`${id} ${made.subnet} overlaps ${other} ${subnet}`)
          }
          if (made.subnet.startsWith('10.0.1.') && ipam.avoid.length > 0) failures.push(`${made.subnet} is routed on the underlay`)
          usedSubnets.set(id, made.subnet)
          networks.set(id, { subnet: made.subnet, held: new Map([[made.gateway, 'gateway']]) })
        } else if (roll < 0.15) {
          const id = pick(ids)!
          const model = networks.get(id)!
          for (const [ip, owner] of model.held) if (owner !== 'gateway') ipam = releaseAddress(ipam, id, ip, owner)
          ipam = releaseNetwork(ipam, id)
          networks.delete(id)
          usedSubnets.delete(id)
        } else if (roll < 0.65) {
          const id = pick(ids)!
          const model = networks.get(id)!
          const owner = `task:${counter++}`
          if (model.held.size >= 14) {
            const code = codeOf(() => allocateAddress(ipam, id, owner))
            if (code !== 'STORE_ERR_POOL_EXHAUSTED') failures.push(`full ${id}: ${code}`)
            continue
          }
          const got = allocateAddress(ipam, id, owner)
          ipam = got.ipam
          if (model.held.has(got.ip)) failures.push(`${got.ip} on ${id} handed out twice (held by ${model.held.get(got.ip)})`)
          const offset = ipToNumber(got.ip) - ipToNumber(model.subnet.split('/')[0]!)
          if (offset < 1 || offset > 14) failures.push(`${got.ip} is not a host address of ${model.subnet}`)
          model.held.set(got.ip, owner)
        } else {
          const id = pick(ids)!
          const model = networks.get(id)!
          const entry = pick([...model.held].filter(([, owner]) => owner !== 'gateway'))
          if (entry === undefined) continue
          ipam = releaseAddress(ipam, id, entry[0], entry[1])
          model.held.delete(entry[0])
        }
      } catch (error) {
        if (error instanceof StoreError && error.code === 'STORE_ERR_POOL_EXHAUSTED' && roll < 0.1) continue
        failures.push(`run ${run} step ${step}: ${(error as Error).message}`)
      }
      // The state agrees with the model: nothing leaked, nothing invented.
      for (const [id, model] of networks) {
        const held = ipam.networks[id]?.held ?? {}
        const want = Object.fromEntries([...model.held].sort())
        const have = Object.fromEntries(Object.entries(held).sort())
        if (JSON.stringify(want) !== JSON.stringify(have)) failures.push(`run ${run} step ${step}: ${id} holds ${JSON.stringify(have)}, model ${JSON.stringify(want)}`)
        if (freeAddresses(ipam, id) !== 14 - model.held.size) failures.push(`${id}: free count ${freeAddresses(ipam, id)}`)
      }
      if (Object.keys(ipam.networks).length !== networks.size) failures.push('networks leaked')
      if (Object.keys(ipam.vnis).length !== networks.size) failures.push('VNIs leaked')
      if (new Set(Object.values(ipam.vnis)).size !== networks.size) failures.push('a network holds two VNIs')
    }
  }
  t.same(failures.slice(0, 5), [])
})

t.test('address arithmetic round-trips', async (t) => {
  t.equal(numberToIp(ipToNumber('10.255.0.1')), '10.255.0.1')
  t.equal(ipToNumber('0.0.1.0'), 256)
})
