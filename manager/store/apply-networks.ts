/**
 * apply for overlay networks: create (subnet explicit or from the default
 * pools, gateway, VNI) and remove (refused while a service or task uses it;
 * the ingress network stays as long as the cluster).
 */
import type { CommandOf } from './commands.ts'
import { fail } from './errors.ts'
import { allocateNetwork, releaseNetwork } from './ipam.ts'
import { findNetwork } from './queries.ts'
import type { Tx } from './tx.ts'
import type { CommandResult } from './apply.ts'

export function networkCreate (tx: Tx, cmd: CommandOf<'network.create'>): CommandResult {
  if (tx.networks.get(cmd.id) !== undefined) fail('STORE_ERR_EXISTS', `network id ${cmd.id} is taken`)
  const clash = tx.networks.values().find((n) => n.name === cmd.name)
  if (clash) fail('STORE_ERR_NAME_IN_USE', `network with name ${cmd.name} already exists (${clash.id})`)
  const describe = (id: string): string => tx.networks.get(id)?.name ?? id
  const allocation = allocateNetwork(tx.ipam, cmd.id, { subnet: cmd.subnet, gateway: cmd.gateway, describe })
  tx.ipam = allocation.ipam
  tx.networks.put({
    id: cmd.id,
    name: cmd.name,
    driver: cmd.driver,
    subnet: allocation.subnet,
    gateway: allocation.gateway,
    vni: allocation.vni,
    ingress: false,
    attachable: cmd.attachable,
    labels: cmd.labels,
    createdAt: tx.now,
    updatedAt: tx.now,
    version: 1
  })
  return { id: cmd.id, detail: { subnet: allocation.subnet, gateway: allocation.gateway, vni: allocation.vni } }
}

export function networkRemove (tx: Tx, cmd: CommandOf<'network.remove'>): CommandResult {
  const network = findNetwork(tx.view(), cmd.network)
  if (network.ingress) fail('STORE_ERR_NETWORK_IN_USE', `${network.name} is the routing mesh's network, on every node, and cannot be removed`)
  const services = tx.services.values().filter((s) => s.spec.networks.some((n) => n.network === network.id)).map((s) => s.spec.name).sort()
  if (services.length > 0) fail('STORE_ERR_NETWORK_IN_USE', `network ${network.name} is in use by service ${services.join(', ')}`)
  const tasks = tx.tasks.values().filter((t) => t.attachments.some((a) => a.network === network.id)).map((t) => t.id).sort()
  if (tasks.length > 0) fail('STORE_ERR_NETWORK_IN_USE', `network ${network.name} is in use by task ${tasks.slice(0, 5).join(', ')}${tasks.length > 5 ? ', …' : ''} (still shutting down)`)
  tx.ipam = releaseNetwork(tx.ipam, network.id)
  tx.networks.remove(network.id)
  return { id: network.id }
}
