/**
 * Every task's /etc/resolv.conf names dnsd (127.0.0.11). Task processes run
 * under `ip netns exec`, which bind-mounts /etc/netns/<namespace>/resolv.conf
 * over /etc/resolv.conf, so that is the file netd keeps for each task, and
 * removes with the task.
 */
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export const NETNS_ETC = '/etc/netns'

/** Writes the file of every task in `namespaces` (only where it differs) and removes those of other tasks under `prefix`. */
export async function syncTaskResolvFiles (namespaces: ReadonlySet<string>, taskPrefix: string, content: string, root = NETNS_ETC): Promise<void> {
  for (const netns of namespaces) {
    const dir = join(root, netns)
    const file = join(dir, 'resolv.conf')
    const current = await readFile(file, 'utf8').catch(() => null)
    if (current === content) continue
    await mkdir(dir, { recursive: true })
    await writeFile(`${file}.tmp`, content)
    await rename(`${file}.tmp`, file)
  }
  const existing = await readdir(root).catch(() => [] as string[])
  for (const entry of existing) {
    if (entry.startsWith(taskPrefix) && !namespaces.has(entry)) await rm(join(root, entry), { recursive: true, force: true })
  }
}
