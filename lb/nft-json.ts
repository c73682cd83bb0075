/**
 * `nft -j list table ip weft_lb` → the ruleset model, plus the counters of
 * the counted sets' elements. This is how the programmer sees the kernel
 * after a restart, how `netd check` compares, and where `netd lb` reads its
 * numbers.
 *
 * Rules come back as JSON expressions; they are rendered to text in the form
 * `nft list` prints, for the vocabulary lb writes (layout.ts). Anything else
 * renders as `?{json}`, which never equals a compiled rule: drift, not a crash.
 *
 * Dependencies nft adds itself (`meta l4proto tcp` before `tcp dport` or
 * `reject with tcp reset`) are hidden in its JSON as in its listing; layout.ts
 * writes rules in the listed form, so they compare equal.
 */
import type { BaseChain, Hook, NftSetDecl } from './layout.ts'
import { FAMILY, TABLE, hex } from './layout.ts'
import type { NftChain, NftElement, NftTable } from './ruleset.ts'
import { tableOf } from './delta.ts'
import { LbError } from './errors.ts'

export interface ElementCounter {
  readonly packets: number
  readonly bytes: number
}

export interface ParsedTable {
  readonly table: NftTable | null
  /** set name → element key → counter, for sets declared with `counter`. */
  readonly counters: ReadonlyMap<string, ReadonlyMap<string, ElementCounter>>
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type JsonObject = { [key: string]: Json }

const isObject = (v: Json | undefined): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v)

function bad (why: string): never {
  throw new LbError('LB_ERR_NFT_JSON', `unexpected nft JSON: ${why}`)
}

/** Parses the output of `nft -j list table ip weft_lb` (a JSON text or the parsed value). */
export function parseNftJson (input: string | unknown): ParsedTable {
  const doc = (typeof input === 'string' ? JSON.parse(input) : input) as Json
  if (!isObject(doc) || !Array.isArray(doc.nftables)) bad('no "nftables" array')
  let found = false
  const chains = new Map<string, { base: BaseChain | null, rules: string[] }>()
  const sets = new Map<string, NftSetDecl>()
  const elements: NftElement[] = []
  const counters = new Map<string, Map<string, ElementCounter>>()
  const ours = (o: JsonObject): boolean => o.family === FAMILY && (o.table === TABLE || o.name === TABLE)

  for (const item of doc.nftables) {
    if (!isObject(item)) continue
    if (isObject(item.table) && ours(item.table)) found = true
    const set = isObject(item.set) ? item.set : isObject(item.map) ? item.map : null
    if (set !== null && set.family === FAMILY && set.table === TABLE) {
      const name = String(set.name)
      const decl: NftSetDecl = {
        type: Array.isArray(set.type) ? set.type.join(' . ') : String(set.type),
        data: typeof set.map === 'string' ? set.map : null,
        counter: Array.isArray(set.stmt) && set.stmt.some((s) => isObject(s) && 'counter' in s)
      }
      sets.set(name, decl)
      const perKey = new Map<string, ElementCounter>()
      if (decl.counter) counters.set(name, perKey)
      for (const raw of Array.isArray(set.elem) ? set.elem : []) {
        const [keyPart, valuePart] = decl.data === null ? [raw, undefined] : Array.isArray(raw) ? [raw[0], raw[1]] : bad(`map ${name}: element ${JSON.stringify(raw)}`)
        let keyJson = keyPart
        if (isObject(keyJson) && isObject(keyJson.elem)) {
          const counter = keyJson.elem.counter
          keyJson = keyJson.elem.val
          if (isObject(counter)) perKey.set(value(keyJson), { packets: Number(counter.packets), bytes: Number(counter.bytes) })
        }
        elements.push({ set: name, key: value(keyJson), value: valuePart === undefined ? null : verdictOrValue(valuePart) })
      }
    }
    if (isObject(item.chain) && item.chain.family === FAMILY && item.chain.table === TABLE) {
      const c = item.chain
      const base: BaseChain | null = typeof c.hook === 'string'
        ? { type: String(c.type) as BaseChain['type'], hook: c.hook as Hook, priority: Number(c.prio) }
        : null
      chains.set(String(c.name), { base, rules: chains.get(String(c.name))?.rules ?? [] })
    }
    if (isObject(item.rule) && item.rule.family === FAMILY && item.rule.table === TABLE) {
      const r = item.rule
      const name = String(r.chain)
      let chain = chains.get(name)
      if (chain === undefined) chains.set(name, chain = { base: null, rules: [] })
      chain.rules.push(ruleText(r))
    }
  }
  if (!found) return { table: null, counters: new Map() }
  const frozen = new Map<string, NftChain>([...chains].map(([name, c]) => [name, { base: c.base, rules: c.rules }]))
  return { table: tableOf(frozen, sets, elements), counters }
}

// ---------------------------------------------------------------------------
// Expressions → text.

function ruleText (rule: JsonObject): string {
  const exprs = Array.isArray(rule.expr) ? rule.expr : []
  const parts = exprs.map((e) => statement(e))
  if (typeof rule.comment === 'string') parts.push(`comment ${JSON.stringify(rule.comment)}`)
  return parts.join(' ')
}

const unknown = (e: Json | undefined): string => `?${JSON.stringify(e)}`

/** Which literal formatting an operand needs, decided by the other side of a match or mangle. */
type Context = 'plain' | 'ifname' | 'mark'

function contextOf (e: Json | undefined): Context {
  if (!isObject(e)) return 'plain'
  if (isObject(e.meta)) {
    if (e.meta.key === 'iifname' || e.meta.key === 'oifname') return 'ifname'
    if (e.meta.key === 'mark') return 'mark'
  }
  for (const op of ['&', '|', '^']) {
    const operands = e[op]
    if (Array.isArray(operands)) return contextOf(operands[0])
  }
  return 'plain'
}

function value (e: Json | undefined, context: Context = 'plain'): string {
  if (typeof e === 'string') return context === 'ifname' ? JSON.stringify(e) : e
  if (typeof e === 'number') return context === 'mark' ? hex(e) : String(e)
  if (Array.isArray(e)) return e.map((x) => value(x, context)).join(', ')
  return expression(e)
}

function expression (e: Json | undefined): string {
  if (!isObject(e)) return typeof e === 'string' || typeof e === 'number' ? value(e) : unknown(e)
  if (isObject(e.payload)) {
    return `${String(e.payload.protocol)} ${String(e.payload.field)}`
  }
  if (isObject(e.meta)) {
    const key = String(e.meta.key)
    return key === 'iifname' || key === 'oifname' ? key : `meta ${key}`
  }
  if (isObject(e.ct)) {
    const { key, dir, family } = e.ct
    return ['ct', dir, family, key].filter((p) => typeof p === 'string').join(' ')
  }
  if (isObject(e.fib)) {
    const flags = Array.isArray(e.fib.flags) ? e.fib.flags.map(String).join(' . ') : ''
    return `fib ${flags} ${String(e.fib.result)}`
  }
  if (isObject(e.numgen)) {
    const { mode, mod, offset } = e.numgen
    return `numgen ${String(mode)} mod ${String(mod)}${typeof offset === 'number' && offset !== 0 ? ` offset ${offset}` : ''}`
  }
  if (isObject(e.jhash)) {
    const { expr, mod, seed, offset } = e.jhash
    return `jhash ${expression(expr)} mod ${String(mod)}${typeof seed === 'number' ? ` seed ${hex(seed)}` : ''}${typeof offset === 'number' && offset !== 0 ? ` offset ${offset}` : ''}`
  }
  if (Array.isArray(e.concat)) return e.concat.map((x) => value(x)).join(' . ')
  if (isObject(e.prefix)) return `${String(e.prefix.addr)}/${String(e.prefix.len)}`
  for (const op of ['&', '|', '^']) {
    const operands = e[op]
    if (Array.isArray(operands) && operands.length === 2) {
      const context = contextOf(operands[0])
      return `${value(operands[0], context)} ${op} ${value(operands[1], context)}`
    }
  }
  if (Array.isArray(e.set)) return `{ ${e.set.map((x) => Array.isArray(x) ? `${value(x[0])} : ${verdictOrValue(x[1])}` : value(x)).join(', ')} }`
  return unknown(e)
}

function verdictOrValue (e: Json | undefined): string {
  if (isObject(e)) {
    for (const v of ['jump', 'goto']) {
      const target = e[v]
      if (isObject(target)) return `${v} ${String(target.target)}`
    }
    for (const v of ['accept', 'drop', 'return', 'continue']) if (v in e) return v
  }
  return value(e)
}

function statement (s: Json): string {
  if (!isObject(s)) return unknown(s)
  if (isObject(s.match)) {
    const { op, left, right } = s.match
    const context = contextOf(left)
    const l = expression(left)
    const r = value(right, context)
    // nft spells out `==` only after a binary operation (`meta mark & 0x.. == 0x..`).
    const binop = isObject(left) && (Array.isArray(left['&']) || Array.isArray(left['|']) || Array.isArray(left['^']))
    if ((op === '==' && !binop) || op === 'in') return `${l} ${r}`
    return `${l} ${String(op)} ${r}`
  }
  if ('counter' in s) {
    const c = s.counter
    if (isObject(c) && isObject(c.map)) return `counter name ${expression(c.map.key)} map ${value(c.map.data)}`
    if (typeof c === 'string') return `counter name ${JSON.stringify(c)}`
    return 'counter'
  }
  if (isObject(s.vmap)) return `${expression(s.vmap.key)} vmap ${mapData(s.vmap.data)}`
  if (isObject(s.dnat) || isObject(s.snat)) {
    const kind = isObject(s.dnat) ? 'dnat' : 'snat'
    const n = (s.dnat ?? s.snat) as JsonObject
    const family = typeof n.family === 'string' ? ` ${n.family}` : ''
    const addr = isObject(n.addr) && isObject(n.addr.map) ? `${expression(n.addr.map.key)} map ${mapData(n.addr.map.data)}` : value(n.addr)
    const port = n.port === undefined ? '' : `:${value(n.port)}`
    return `${kind}${family} to ${addr}${port}`
  }
  if ('masquerade' in s) return 'masquerade'
  if ('reject' in s) {
    const r = s.reject
    if (!isObject(r)) return 'reject'
    if (r.type === 'tcp reset') return 'reject with tcp reset'
    if (r.type === 'icmp' && (r.expr === 'port-unreachable' || r.expr === undefined)) return 'reject'
    return `reject with ${String(r.type)} ${String(r.expr)}`
  }
  if (isObject(s.mangle)) {
    const context = contextOf(s.mangle.key)
    return `${expression(s.mangle.key)} set ${value(s.mangle.value, context)}`
  }
  for (const v of ['jump', 'goto']) if (isObject(s[v])) return `${v} ${String((s[v] as JsonObject).target)}`
  for (const v of ['accept', 'drop', 'return', 'continue']) if (v in s) return v
  return unknown(s)
}

function mapData (data: Json | undefined): string {
  if (typeof data === 'string') return data
  if (isObject(data) && Array.isArray(data.set)) return expression(data)
  return unknown(data)
}
