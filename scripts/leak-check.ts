/**
 * Fails (exit 1) when anything of weft outlived its tests: namespaces, root-namespace links, nft
 * tables, /etc/netns directories, or daemon processes. Reports only; `weft lab down` cleans up.
 * Run after the test suite, not during it: labs of running tests are, rightly, not leaks yet.
 */

import { execFile } from 'node:child_process'
import fs from 'node:fs/promises'
import { promisify } from 'node:util'

const run = promisify(execFile)
const PREFIX = 'weft'
const LINK_PREFIXES = ['weft', 'wvx']
const PROCESS_MARKERS = ['/netd/main.ts run', 'lab/upstream-dns.ts']

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir)
  } catch {
    return []
  }
}

async function namespaces(): Promise<string[]> {
  return (await readdirOrEmpty('/run/netns')).filter((n) => n.startsWith(PREFIX)).map((n) => `network namespace ${n}`)
}

async function rootLinks(): Promise<string[]> {
  const { stdout } = await run('ip', ['-j', 'link', 'show'])
  const links = JSON.parse(stdout) as { ifname: string }[]
  return links.filter((l) => LINK_PREFIXES.some((p) => l.ifname.startsWith(p))).map((l) => `root namespace link ${l.ifname}`)
}

async function nftTables(): Promise<string[]> {
  const { stdout } = await run('nft', ['-j', 'list', 'tables'])
  const items = (JSON.parse(stdout) as { nftables: { table?: { family: string; name: string } }[] }).nftables
  return items.flatMap((i) => (i.table && i.table.name.startsWith(PREFIX) ? [`nft table ${i.table.family} ${i.table.name}`] : []))
}

async function etcNetns(): Promise<string[]> {
  return (await readdirOrEmpty('/etc/netns')).filter((n) => n.startsWith(PREFIX)).map((n) => `directory /etc/netns/${n}`)
}

async function processes(): Promise<string[]> {
  const found: string[] = []
  for (const pid of (await readdirOrEmpty('/proc')).filter((e) => /^\d+$/.test(e))) {
    if (Number(pid) === process.pid) continue
    const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').then((s) => s.split('\0').join(' ').trim(), () => '')
    if (PROCESS_MARKERS.some((m) => cmdline.includes(m))) found.push(`process ${pid}: ${cmdline}`)
  }
  return found
}

const leaks = (await Promise.all([namespaces(), rootLinks(), nftTables(), etcNetns(), processes()])).flat()
if (leaks.length > 0) {
  for (const leak of leaks) process.stdout.write(`leak: ${leak}\n`)
  process.exitCode = 1
} else {
  process.stdout.write('leak check: clean\n')
}
