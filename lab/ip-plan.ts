/**
 * Pure iproute2 batch scripts that build a lab's network. One script runs in the root namespace
 * (namespaces and veth pairs, each end created directly in its target namespace so the root
 * namespace never holds a lab link), then one script per namespace configures it.
 */

import { UNDERLAY_MTU, UNDERLAY_PREFIX_LEN, type LabTopology } from './topology.ts'

const UNDERLAY_BRIDGE = 'br0'
const HOST_IFACE = 'eth0'

export interface NetnsScript {
  readonly netns: string
  readonly script: string
}

export function rootScript(topology: LabTopology): string {
  const lines = [`netns add ${topology.underlay.netns}`]
  for (const host of topology.hosts) lines.push(`netns add ${host.netns}`)
  // The underlay end is named after the host so `bridge link` in the underlay reads like a switch port map.
  for (const host of topology.hosts) {
    lines.push(
      `link add name ${HOST_IFACE} netns ${host.netns} mtu ${UNDERLAY_MTU} type veth peer name ${host.name} netns ${topology.underlay.netns} mtu ${UNDERLAY_MTU}`,
    )
  }
  return lines.join('\n') + '\n'
}

export function netnsScripts(topology: LabTopology): readonly NetnsScript[] {
  const underlay = ['link set lo up', `link add ${UNDERLAY_BRIDGE} type bridge`, `link set ${UNDERLAY_BRIDGE} up`]
  for (const host of topology.hosts) underlay.push(`link set ${host.name} master ${UNDERLAY_BRIDGE} up`)
  const scripts: NetnsScript[] = [{ netns: topology.underlay.netns, script: underlay.join('\n') + '\n' }]
  for (const host of topology.hosts) {
    const lines = ['link set lo up', `addr add ${host.address}/${UNDERLAY_PREFIX_LEN} dev ${HOST_IFACE}`, `link set ${HOST_IFACE} up`]
    scripts.push({ netns: host.netns, script: lines.join('\n') + '\n' })
  }
  return scripts
}

export function deleteNetnsScript(namespaces: readonly string[]): string {
  return namespaces.map((ns) => `netns del ${ns}\n`).join('')
}
