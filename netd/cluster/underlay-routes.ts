/**
 * The subnets this node routes on its underlay, for `swarm init`: default
 * address-pool subnets that overlap them are skipped (the store's `avoid`),
 * so an overlay never shadows a network the hosts use to reach each other.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** `ip -j -4 route show` → the destinations that are subnets or hosts (`default` is not). */
export function routedSubnets (routes: ReadonlyArray<{ dst?: string }>): string[] {
  const out = new Set<string>()
  for (const { dst } of routes) {
    if (dst === undefined || !/^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(dst)) continue
    out.add(dst.includes('/') ? dst : `${dst}/32`)
  }
  return [...out].sort()
}

/** This node's routed subnets; none when `ip` cannot tell (the pools are then used as they are). */
export async function underlayRoutes (): Promise<string[]> {
  try {
    const { stdout } = await run('ip', ['-j', '-4', 'route', 'show'], { timeout: 5000 })
    return routedSubnets(JSON.parse(stdout) as Array<{ dst?: string }>)
  } catch {
    return []
  }
}
