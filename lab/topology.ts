/**
 * Pure description of a lab: validated name, namespace names, addresses and the host list.
 * Everything that creates kernel objects reads its names from here, so "what belongs to lab X"
 * is answered in one place: a namespace belongs to X iff its name starts with `labPrefix(X)`.
 */

import { LabError, LabErrorCode } from './errors.ts'

export const NAMESPACE_PREFIX = 'weftlab-'
export const DEFAULT_LAB_NAME = 'lab'
export const DEFAULT_NODES = 3
export const MAX_NODES = 20
export const UNDERLAY_SUBNET = '192.168.99.0/24'
export const UNDERLAY_PREFIX_LEN = 24
export const UNDERLAY_MTU = 1500
export const DNS_ADDRESS = '192.168.99.2'
export const OUTSIDE_ADDRESS = '192.168.99.200'
export const DNS_ZONE = 'lab.test'
export const NETD_METRICS_ADDR = '127.0.0.1:9324'

// No '-' in a name: the prefix `weftlab-NAME-` of one lab can then never be a prefix of another's.
const LAB_NAME_RE = /^[a-z][a-z0-9]{0,7}$/

export type HostRole = 'node' | 'outside' | 'dns' | 'underlay'

export interface LabHost {
  readonly name: string
  readonly role: HostRole
  readonly netns: string
  /** Underlay address; the underlay namespace itself has none (its bridge is a pure switch). */
  readonly address: string | null
}

export interface LabTopology {
  readonly name: string
  readonly prefix: string
  readonly nodes: number
  readonly underlay: LabHost
  readonly hosts: readonly LabHost[]
}

export function validateLabName(name: string): string {
  if (!LAB_NAME_RE.test(name)) {
    throw new LabError(
      LabErrorCode.name,
      `invalid lab name ${JSON.stringify(name)}: use 1-8 lowercase letters or digits, starting with a letter`,
    )
  }
  return name
}

export function validateNodeCount(nodes: number): number {
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > MAX_NODES) {
    throw new LabError(LabErrorCode.nodes, `invalid node count ${String(nodes)}: must be an integer from 1 to ${MAX_NODES}`)
  }
  return nodes
}

export function labPrefix(name: string): string {
  return `${NAMESPACE_PREFIX}${validateLabName(name)}-`
}

export function hostNetns(labName: string, host: string): string {
  return `${labPrefix(labName)}${host}`
}

export function nodeAddress(index: number): string {
  return `192.168.99.${10 + index}`
}

/** The lab name a namespace belongs to, or null when it is not a lab namespace. */
export function labNameOfNetns(netns: string): string | null {
  if (!netns.startsWith(NAMESPACE_PREFIX)) return null
  const rest = netns.slice(NAMESPACE_PREFIX.length)
  const dash = rest.indexOf('-')
  if (dash <= 0) return null
  const name = rest.slice(0, dash)
  return LAB_NAME_RE.test(name) ? name : null
}

export function buildTopology(name: string, nodes: number): LabTopology {
  const prefix = labPrefix(name)
  validateNodeCount(nodes)
  const host = (hostName: string, role: HostRole, address: string | null): LabHost =>
    Object.freeze({ name: hostName, role, netns: `${prefix}${hostName}`, address })
  const hosts: LabHost[] = []
  for (let i = 1; i <= nodes; i++) hosts.push(host(`h${i}`, 'node', nodeAddress(i)))
  hosts.push(host('outside', 'outside', OUTSIDE_ADDRESS))
  hosts.push(host('dns', 'dns', DNS_ADDRESS))
  return Object.freeze({
    name,
    prefix,
    nodes,
    underlay: host('ul', 'underlay', null),
    hosts: Object.freeze(hosts),
  })
}

/** Every host, the underlay included, in the order they are created. */
export function allHosts(topology: LabTopology): readonly LabHost[] {
  return [topology.underlay, ...topology.hosts]
}

export function findHost(topology: LabTopology, hostName: string): LabHost {
  const found = allHosts(topology).find((h) => h.name === hostName)
  if (!found) {
    const known = allHosts(topology).map((h) => h.name).join(', ')
    throw new LabError(LabErrorCode.host, `lab ${topology.name} has no host ${JSON.stringify(hostName)} (hosts: ${known})`)
  }
  return found
}

export function nodeHosts(topology: LabTopology): readonly LabHost[] {
  return topology.hosts.filter((h) => h.role === 'node')
}

/** Hosts that get a resolv.conf pointing at the lab's DNS (the resolver itself does not need one). */
export function resolverClients(topology: LabTopology): readonly LabHost[] {
  return topology.hosts.filter((h) => h.role === 'node' || h.role === 'outside')
}

export function resolvConf(): string {
  return `nameserver ${DNS_ADDRESS}\nsearch ${DNS_ZONE}\n`
}
