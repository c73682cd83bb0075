/**
 * IPAM: subnets, VNIs and addresses, as pure functions from one IpamState to
 * the next. Called only from inside apply, so every replica hands out the same
 * addresses in the same order; refusals throw StoreError, which apply turns
 * into a command that changed nothing.
 *
 * Allocation is sequential, as Swarm's: each network (and the subnet pool and
 * the VNI range) keeps a cursor just past the last thing handed out, and a
 * search starts there and wraps around. A freed address, subnet or VNI is
 * therefore handed out again only after everything behind the cursor was
 * tried, which keeps a just-freed address from being reused while stale ARP,
 * FDB or conntrack entries for it may still exist somewhere.
 *
 * Never twice: an address is in `held` from allocation to release, and a
 * search only takes one that is not. The gateway is held from the network's
 * creation to its removal.
 *
 * Addresses are IPv4 and computed as unsigned 32-bit numbers; `ip-address`
 * parses and formats them.
 */
import { Address4 } from 'ip-address'
import { fail } from './errors.ts'
import type { AddressOwner, IpamState, NetworkPool } from './state.ts'

export const VNI_MIN = 4096
export const VNI_MAX = 16_777_215
/** A network's subnet, as the desired-state document accepts it. */
export const MIN_PREFIX = 8
export const MAX_PREFIX = 30

export interface Range { readonly start: number, readonly end: number }

export interface Cidr extends Range {
  readonly prefix: number
  readonly text: string
}

export function ipToNumber (ip: string): number {
  return Number(new Address4(ip).bigInt())
}

/** Formats by hand: allocation formats every address it probes, and this is its inner loop. */
export function numberToIp (n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

const parsedCidrs = new Map<string, Cidr>()

/** Parses a CIDR; with `strict`, host bits must be zero. Results are remembered (a few per network). */
export function parseCidr (text: string, strict: boolean): Cidr {
  const known = parsedCidrs.get(text)
  if (known !== undefined && (!strict || known.text === text)) return known
  const cidr = parseCidrUncached(text, strict)
  if (parsedCidrs.size > 10_000) parsedCidrs.clear()
  parsedCidrs.set(text, cidr)
  return cidr
}

function parseCidrUncached (text: string, strict: boolean): Cidr {
  if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(text) || !Address4.isValid(text)) fail('STORE_ERR_INVALID_ADDRESS', `${text} is not an IPv4 CIDR`)
  const address = new Address4(text)
  const start = Number(address.startAddress().bigInt())
  const end = Number(address.endAddress().bigInt())
  const canonical = `${numberToIp(start)}/${address.subnetMask}`
  if (strict && canonical !== text) fail('STORE_ERR_INVALID_ADDRESS', `${text} has host bits set (the network is ${canonical})`)
  return { start, end, prefix: address.subnetMask, text: canonical }
}

const overlaps = (a: Range, b: Range): boolean => a.start <= b.end && b.start <= a.end

export interface IpamOptions {
  pools: readonly string[]
  subnetSize: number
  avoid: readonly string[]
  vniStart?: number
}

export function initIpam (options: IpamOptions): IpamState {
  const { pools, subnetSize, avoid } = options
  if (!Number.isInteger(subnetSize) || subnetSize < MIN_PREFIX || subnetSize > MAX_PREFIX) {
    fail('STORE_ERR_INVALID_ADDRESS', `default address pool mask length ${subnetSize} is not between ${MIN_PREFIX} and ${MAX_PREFIX}`)
  }
  if (pools.length === 0) fail('STORE_ERR_INVALID_ADDRESS', 'at least one default address pool is needed')
  const parsed = pools.map((pool) => parseCidr(pool, true))
  for (const pool of parsed) {
    if (pool.prefix > subnetSize) fail('STORE_ERR_INVALID_ADDRESS', `default address pool ${pool.text} is smaller than its subnets (/${subnetSize})`)
  }
  const vniStart = options.vniStart ?? VNI_MIN
  return {
    pools: parsed.map((p) => p.text),
    subnetSize,
    avoid: avoid.map((a) => parseCidr(a, false).text),
    subnetCursor: 0,
    vniStart,
    vniCursor: vniStart,
    vnis: {},
    networks: {}
  }
}

export interface NetworkAllocation {
  ipam: IpamState
  subnet: string
  gateway: string
  vni: number
}

export interface NetworkRequest {
  subnet?: string | undefined
  gateway?: string | undefined
  /** For messages: a network id → how people know it. */
  describe?: (networkId: string) => string
}

/**
 * A network's subnet (explicit, or the next free one of the default pools),
 * its gateway (held from now on) and its VNI.
 */
export function allocateNetwork (ipam: IpamState, networkId: string, request: NetworkRequest): NetworkAllocation {
  if (ipam.networks[networkId] !== undefined) fail('STORE_ERR_EXISTS', `network ${networkId} already has a subnet`)
  const describe = request.describe ?? ((id: string) => id)
  const existing = Object.entries(ipam.networks).map(([id, pool]) => ({ id, range: parseCidr(pool.subnet, false) }))

  let subnet: Cidr
  let subnetCursor = ipam.subnetCursor
  if (request.subnet !== undefined) {
    subnet = parseCidr(request.subnet, true)
    if (subnet.prefix < MIN_PREFIX || subnet.prefix > MAX_PREFIX) {
      fail('STORE_ERR_INVALID_ADDRESS', `subnet ${subnet.text}: the prefix length must be from /${MIN_PREFIX} to /${MAX_PREFIX}`)
    }
    const clash = existing.find((e) => overlaps(e.range, subnet))
    if (clash) fail('STORE_ERR_SUBNET_OVERLAP', `subnet ${subnet.text} overlaps network ${describe(clash.id)} (${clash.range.text})`)
  } else {
    if (request.gateway !== undefined) fail('STORE_ERR_INVALID_ADDRESS', 'a gateway can only be given with a subnet')
    const blockers = [...existing.map((e) => e.range), ...ipam.avoid.map((a) => parseCidr(a, false))]
    const found = searchPools(ipam, blockers)
    if (found === null) fail('STORE_ERR_POOL_EXHAUSTED', `no free /${ipam.subnetSize} subnet left in the default address pools (${ipam.pools.join(', ')})`)
    subnet = found.subnet
    subnetCursor = found.next
  }

  const size = subnet.end - subnet.start + 1
  let gatewayOffset = 1
  if (request.gateway !== undefined) {
    if (!/^\d+\.\d+\.\d+\.\d+$/.test(request.gateway) || !Address4.isValid(request.gateway)) fail('STORE_ERR_INVALID_ADDRESS', `gateway ${request.gateway} is not an IPv4 address`)
    gatewayOffset = ipToNumber(request.gateway) - subnet.start
    if (gatewayOffset < 1 || gatewayOffset > size - 2) fail('STORE_ERR_INVALID_ADDRESS', `gateway ${request.gateway} is not a host address of subnet ${subnet.text}`)
  }
  const gateway = numberToIp(subnet.start + gatewayOffset)
  const vni = searchVni(ipam)
  const pool: NetworkPool = {
    subnet: subnet.text,
    gateway,
    fromPool: request.subnet === undefined,
    held: { [gateway]: 'gateway' },
    cursor: gatewayOffset + 1 > size - 2 ? 1 : gatewayOffset + 1
  }
  return {
    ipam: {
      ...ipam,
      subnetCursor,
      vniCursor: vni + 1 > VNI_MAX ? ipam.vniStart : vni + 1,
      vnis: { ...ipam.vnis, [String(vni)]: networkId },
      networks: { ...ipam.networks, [networkId]: pool }
    },
    subnet: subnet.text,
    gateway,
    vni
  }
}

/**
 * The first subnet of the pools, from the cursor on and wrapping around, that
 * overlaps no blocker. A candidate that overlaps one jumps past it, so the
 * search costs a step per blocker, not per candidate.
 */
function searchPools (ipam: IpamState, blockers: readonly Range[]): { subnet: Cidr, next: number } | null {
  const block = 2 ** (32 - ipam.subnetSize)
  const pools = ipam.pools.map((p) => parseCidr(p, true))
  const counts = pools.map((p) => (p.end - p.start + 1) / block)
  const total = counts.reduce((a, b) => a + b, 0)
  const first = total === 0 ? 0 : ipam.subnetCursor % total

  const scan = (from: number, to: number): { subnet: Cidr, next: number } | null => {
    let g = from
    while (g < to) {
      let poolIndex = 0
      let offset = 0
      while (g >= offset + counts[poolIndex]!) offset += counts[poolIndex++]!
      const pool = pools[poolIndex]!
      const start = pool.start + (g - offset) * block
      const candidate = { start, end: start + block - 1 }
      const clash = blockers.find((b) => overlaps(b, candidate))
      if (clash === undefined) {
        return { subnet: { ...candidate, prefix: ipam.subnetSize, text: `${numberToIp(start)}/${ipam.subnetSize}` }, next: g + 1 }
      }
      // Next candidate of this pool that starts after the blocker (or the next pool).
      const past = Math.ceil((clash.end + 1 - pool.start) / block)
      g = Math.max(g + 1, offset + Math.min(past, counts[poolIndex]!))
    }
    return null
  }
  return scan(first, total) ?? scan(0, first)
}

function searchVni (ipam: IpamState): number {
  const span = VNI_MAX - ipam.vniStart + 1
  for (let i = 0; i < span; i++) {
    const vni = ipam.vniStart + ((ipam.vniCursor - ipam.vniStart + i) % span)
    if (ipam.vnis[String(vni)] === undefined) return vni
  }
  return fail('STORE_ERR_POOL_EXHAUSTED', 'no free VNI left')
}

/** Gives back a network's subnet and VNI. Everything but the gateway must have been released first. */
export function releaseNetwork (ipam: IpamState, networkId: string): IpamState {
  const pool = ipam.networks[networkId]
  if (pool === undefined) return ipam
  const holders = Object.values(pool.held).filter((owner) => owner !== 'gateway')
  if (holders.length > 0) fail('STORE_ERR_NETWORK_IN_USE', `network ${networkId} still has addresses held by ${holders.slice(0, 5).join(', ')}`)
  const networks = { ...ipam.networks }
  delete networks[networkId]
  const vnis = Object.fromEntries(Object.entries(ipam.vnis).filter(([, id]) => id !== networkId))
  return { ...ipam, networks, vnis }
}

function usable (pool: NetworkPool): { start: number, size: number } {
  const subnet = parseCidr(pool.subnet, false)
  return { start: subnet.start, size: subnet.end - subnet.start + 1 }
}

/** The next free host address of the network, from its cursor on; it is held by `owner` until released. */
export function allocateAddress (ipam: IpamState, networkId: string, owner: AddressOwner, describe?: string): { ipam: IpamState, ip: string } {
  const pool = ipam.networks[networkId]
  if (pool === undefined) return fail('STORE_ERR_NOT_FOUND', `network ${networkId} has no subnet`)
  const { start, size } = usable(pool)
  const hosts = size - 2
  for (let i = 0; i < hosts; i++) {
    const offset = 1 + ((pool.cursor - 1 + i) % hosts)
    const ip = numberToIp(start + offset)
    if (pool.held[ip] !== undefined) continue
    const next = offset + 1 > hosts ? 1 : offset + 1
    return {
      ip,
      ipam: { ...ipam, networks: { ...ipam.networks, [networkId]: { ...pool, held: { ...pool.held, [ip]: owner }, cursor: next } } }
    }
  }
  return fail('STORE_ERR_POOL_EXHAUSTED', `no free address left on network ${describe ?? networkId} (${pool.subnet})`)
}

/** Gives an address back; a no-op unless `owner` holds it, so a release can never free someone else's address. */
export function releaseAddress (ipam: IpamState, networkId: string, ip: string, owner: AddressOwner): IpamState {
  const pool = ipam.networks[networkId]
  if (pool === undefined || pool.held[ip] !== owner) return ipam
  const held = { ...pool.held }
  delete held[ip]
  return { ...ipam, networks: { ...ipam.networks, [networkId]: { ...pool, held } } }
}

/** Host addresses of the network that nobody holds. */
export function freeAddresses (ipam: IpamState, networkId: string): number {
  const pool = ipam.networks[networkId]
  if (pool === undefined) return 0
  return usable(pool).size - 2 - Object.keys(pool.held).length
}
