/**
 * resolv.conf, read the way glibc's resolver reads it (resolv.conf(5),
 * glibc resolv/res_init.c), and written for tasks.
 *
 * Reading rules kept from glibc, because tasks and the node must agree with it:
 * - a keyword counts only at the start of a line and followed by a space or
 *   tab; lines starting with `#` or `;` are comments; unknown keywords
 *   (sortlist, lookup, ...) are ignored;
 * - `nameserver` takes the first word of its line; invalid addresses are
 *   skipped; IPv6 may carry a zone (`fe80::1%eth0`);
 * - `search` and `domain` replace each other, the last one wins; `domain`
 *   takes one word; at most 6 search domains;
 * - `options` lines accumulate, a later value overrides an earlier one;
 *   ndots is capped at 15, timeout at 30, attempts at 5 (RES_MAXNDOTS,
 *   RES_MAXRETRANS, RES_MAXRETRY).
 * Departures, both on the safe side: words starting with `#` or `;` end a
 * `search`/`options` line (trailing comments; glibc would take them as
 * domains), and an option value without digits is ignored rather than read as
 * 0 the way atoi would.
 */
import { isIP } from 'node:net'

export interface ResolvConfOptions {
  readonly ndots?: number
  readonly timeout?: number
  readonly attempts?: number
  /** Every other option word, as written, first occurrence order, no duplicates. */
  readonly other: readonly string[]
}

export interface ResolvConf {
  readonly nameservers: readonly string[]
  readonly search: readonly string[]
  readonly options: ResolvConfOptions
}

export interface UpstreamAddress {
  readonly address: string
  readonly port: number
}

/** Where tasks reach dnsd. */
export const DNSD_ADDRESS = '127.0.0.11'
export const MAX_SEARCH_DOMAINS = 6
/** glibc's MAXNS: a resolver uses at most the first three name servers. */
export const MAX_NAMESERVERS = 3
const LIMITS = { ndots: 15, timeout: 30, attempts: 5 } as const

function words (text: string): string[] {
  const out: string[] = []
  for (const word of text.split(/[ \t]+/)) {
    if (word === '') continue
    if (word.startsWith('#') || word.startsWith(';')) break
    out.push(word)
  }
  return out
}

function keywordRest (line: string, keyword: string): string | null {
  if (!line.startsWith(keyword)) return null
  const next = line[keyword.length]
  return next === ' ' || next === '\t' ? line.slice(keyword.length + 1) : null
}

export function parseResolvConf (text: string): ResolvConf {
  const nameservers: string[] = []
  let search: string[] = []
  const numeric: { ndots?: number, timeout?: number, attempts?: number } = {}
  const other: string[] = []
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw
    if (line.startsWith('#') || line.startsWith(';')) continue
    let rest: string | null
    if ((rest = keywordRest(line, 'nameserver')) !== null) {
      const address = words(rest)[0]
      if (address !== undefined && isIP(address) !== 0) nameservers.push(address)
    } else if ((rest = keywordRest(line, 'domain')) !== null) {
      const domain = words(rest)[0]
      if (domain !== undefined) search = [domain]
    } else if ((rest = keywordRest(line, 'search')) !== null) {
      const domains = words(rest)
      if (domains.length > 0) search = domains.slice(0, MAX_SEARCH_DOMAINS)
    } else if ((rest = keywordRest(line, 'options')) !== null) {
      for (const option of words(rest)) {
        const match = /^(ndots|timeout|attempts):(\d+)/.exec(option)
        if (match !== null) {
          const name = match[1] as keyof typeof LIMITS
          numeric[name] = Math.min(Number(match[2]), LIMITS[name])
        } else if (!/^(ndots|timeout|attempts):/.test(option) && !other.includes(option)) {
          other.push(option)
        }
      }
    }
  }
  return Object.freeze({
    nameservers: Object.freeze(nameservers),
    search: Object.freeze(search),
    options: Object.freeze({ ...numeric, other: Object.freeze(other) })
  })
}

/**
 * The upstream resolvers dnsd forwards to: the node's name servers without
 * dnsd's own address (a loop otherwise) and duplicates, the first three as
 * glibc would use. Loopback resolvers such as systemd-resolved's 127.0.0.53
 * stay: dnsd forwards from the node's namespace, where they are reachable.
 */
export function upstreamsOf (conf: ResolvConf, self: string = DNSD_ADDRESS): UpstreamAddress[] {
  const seen = new Set<string>()
  const out: UpstreamAddress[] = []
  for (const address of conf.nameservers) {
    if (address === self || seen.has(address)) continue
    seen.add(address)
    out.push({ address, port: 53 })
    if (out.length === MAX_NAMESERVERS) break
  }
  return out
}

/**
 * The resolv.conf netd writes into every task: dnsd as the only name server,
 * and the node's search list and options, normalised to what glibc read from
 * them, so a task resolves short names exactly as a process on the node does.
 */
export function taskResolvConf (host: ResolvConf, dnsdAddress: string = DNSD_ADDRESS): string {
  const lines = [
    '# Written by weft netd. dnsd answers cluster names here and forwards the rest',
    '# to the node\'s resolvers.',
    `nameserver ${dnsdAddress}`
  ]
  if (host.search.length > 0) lines.push(`search ${host.search.join(' ')}`)
  const options: string[] = []
  if (host.options.ndots !== undefined) options.push(`ndots:${host.options.ndots}`)
  if (host.options.timeout !== undefined) options.push(`timeout:${host.options.timeout}`)
  if (host.options.attempts !== undefined) options.push(`attempts:${host.options.attempts}`)
  options.push(...host.options.other)
  if (options.length > 0) lines.push(`options ${options.join(' ')}`)
  return lines.join('\n') + '\n'
}
