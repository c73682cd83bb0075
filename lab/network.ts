/**
 * Kernel side of a lab: creates its namespaces, veths and bridge with batched iproute2 (one
 * spawn for the root namespace, one per namespace), makes the underlay bridge a plain switch,
 * writes the per-namespace resolv.conf that `ip netns exec` bind-mounts, and finds or deletes
 * namespaces by prefix.
 */

import fs from 'node:fs/promises'
import path from 'node:path'
import { BRIDGE_NETFILTER_SYSCTLS } from '../netd/kernel-state.ts'
import { LabError, LabErrorCode } from './errors.ts'
import { deleteNetnsScript, netnsScripts, rootScript } from './ip-plan.ts'
import { runChecked, runCommand } from './run-command.ts'
import { ETC_NETNS_DIR } from './state.ts'
import { resolvConf, resolverClients, type LabTopology } from './topology.ts'

const NETNS_RUN_DIR = '/run/netns'

export async function createNetwork(topology: LabTopology): Promise<void> {
  for (const host of resolverClients(topology)) {
    const dir = path.join(ETC_NETNS_DIR, host.netns)
    await fs.mkdir(dir, { recursive: true })
    await fs.writeFile(path.join(dir, 'resolv.conf'), resolvConf())
  }
  await runChecked(['ip', '-batch', '-'], { input: rootScript(topology) })
  await Promise.all(netnsScripts(topology).map(({ netns, script }) => runChecked(['ip', '-n', netns, '-batch', '-'], { input: script })))
  // The underlay stands for a physical switch, which hands no frame to the hosts' netfilter; -e: a kernel
  // without br_netfilter has nothing to turn off.
  await runChecked(['ip', 'netns', 'exec', topology.underlay.netns, 'sysctl', '-e', '-q', '-w', ...BRIDGE_NETFILTER_SYSCTLS.map((name) => `${name}=0`)])
}

/** Every named namespace starting with prefix, including ones netd made under its own sub-prefix. */
export async function namespacesWithPrefix(prefix: string): Promise<string[]> {
  try {
    return (await fs.readdir(NETNS_RUN_DIR)).filter((n) => n.startsWith(prefix)).sort()
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw e
  }
}

export async function deleteNamespaces(namespaces: readonly string[]): Promise<void> {
  if (namespaces.length === 0) return
  // -force: keep going past a namespace that vanished meanwhile; what is left is checked below.
  const result = await runCommand(['ip', '-force', '-batch', '-'], { input: deleteNetnsScript(namespaces) })
  const existing = new Set(await namespacesWithPrefix(''))
  const left = namespaces.filter((ns) => existing.has(ns))
  if (left.length > 0) {
    throw new LabError(LabErrorCode.teardown, `could not delete namespaces ${left.join(', ')}: ${result.stderr.trim()}`)
  }
}

export async function removeEtcNetns(prefix: string): Promise<void> {
  let entries: string[]
  try {
    entries = await fs.readdir(ETC_NETNS_DIR)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
    throw e
  }
  await Promise.all(entries.filter((n) => n.startsWith(prefix)).map((n) => fs.rm(path.join(ETC_NETNS_DIR, n), { recursive: true, force: true })))
}
