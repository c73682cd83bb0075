/**
 * Finds the underlay interface that carries the node's advertise address, to
 * size the overlay MTU: every VXLAN frame costs 50 bytes of outer headers.
 */
import type { IprouteRunner } from './iproute.ts'
import { NetdError } from './errors.ts'

export const VXLAN_OVERHEAD = 50

interface AddressedLink { ifname: string, mtu: number, addr_info?: Array<{ family: string, local: string }> }

export function findUnderlayLink (links: AddressedLink[], address: string): AddressedLink | undefined {
  return links.find((link) => link.addr_info?.some((info) => info.family === 'inet' && info.local === address))
}

export async function underlayMtu (runner: IprouteRunner, address: string): Promise<{ ifname: string, mtu: number }> {
  const [links] = await runner.dump('ip', null, ['addr show'])
  const link = findUnderlayLink(links as AddressedLink[], address)
  if (!link) throw new NetdError('NETD_ERR_UNDERLAY', `advertise address ${address} is not assigned to any interface of this host`)
  return { ifname: link.ifname, mtu: link.mtu }
}
