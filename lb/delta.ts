/**
 * From one ruleset model to another: the minimal list of nft operations
 * (`diff`), their text as one `nft -f` transaction (`renderScript`), and their
 * effect on a model (`applyDelta`, which checks what the kernel would refuse).
 * Invariant, property-tested: applyDelta(a, diff(a, b)) equals b.
 *
 * Minimal means: a changed frontend costs the elements of that frontend, and
 * nothing else; the table is never flushed. Groups that are the same array
 * (the compiler's memo) are skipped without looking inside, so a diff of two
 * tables of 10,000 VIPs that differ in one VIP costs one Map walk.
 *
 * Order inside the transaction (one transaction, so order is only about what
 * the kernel checks while it applies): new sets and chains first (elements and
 * rules refer to them), then rule rewrites, then element deletions before
 * additions (a changed map element is delete + add: `add` of an existing key
 * fails with EEXIST), then chains and sets nobody refers to any more.
 */
import { FAMILY, TABLE, groupOf, setDeclaration, type BaseChain, type NftSetDecl } from './layout.ts'
import { compareElements, type NftChain, type NftElement, type NftTable } from './ruleset.ts'
import { LbError } from './errors.ts'

export type Op =
  | { readonly op: 'add table' }
  | { readonly op: 'delete table' }
  | { readonly op: 'add set', readonly name: string, readonly decl: NftSetDecl }
  | { readonly op: 'delete set', readonly name: string, readonly decl: NftSetDecl }
  | { readonly op: 'add chain', readonly name: string, readonly base: BaseChain | null }
  | { readonly op: 'delete chain', readonly name: string }
  | { readonly op: 'flush chain', readonly name: string }
  | { readonly op: 'add rule', readonly chain: string, readonly rule: string }
  | { readonly op: 'add element', readonly element: NftElement }
  | { readonly op: 'delete element', readonly element: NftElement }

export type Delta = readonly Op[]

const sameBase = (a: BaseChain | null, b: BaseChain | null): boolean =>
  a === b || (a !== null && b !== null && a.type === b.type && a.hook === b.hook && a.priority === b.priority)

const sameDecl = (a: NftSetDecl, b: NftSetDecl): boolean => a === b || (a.type === b.type && a.data === b.data && a.counter === b.counter)

const sameRules = (a: readonly string[], b: readonly string[]): boolean => a === b || (a.length === b.length && a.every((r, i) => r === b[i]))

function build (table: NftTable): Op[] {
  const ops: Op[] = [{ op: 'add table' }]
  for (const [name, decl] of table.sets) ops.push({ op: 'add set', name, decl })
  for (const [name, chain] of table.chains) ops.push({ op: 'add chain', name, base: chain.base })
  for (const [name, chain] of table.chains) for (const rule of chain.rules) ops.push({ op: 'add rule', chain: name, rule })
  const additions: Op[] = []
  for (const elements of table.groups.values()) for (const element of elements) additions.push({ op: 'add element', element })
  return ops.concat(bySet(additions))
}

export function diff (from: NftTable | null, to: NftTable | null): Delta {
  if (from === to) return []
  if (to === null) return [{ op: 'delete table' }]
  if (from === null) return build(to)
  // A set whose type changed, or a base chain moved to another hook, is a new layout (an upgrade):
  // the table is replaced, still in one transaction, so no connection is set up half-way.
  for (const [name, decl] of to.sets) {
    const old = from.sets.get(name)
    if (old !== undefined && !sameDecl(old, decl)) return [{ op: 'delete table' } as Op].concat(build(to))
  }
  for (const [name, chain] of to.chains) {
    const old = from.chains.get(name)
    if (old !== undefined && !sameBase(old.base, chain.base)) return [{ op: 'delete table' } as Op].concat(build(to))
  }

  const ops: Op[] = []
  for (const [name, decl] of to.sets) if (!from.sets.has(name)) ops.push({ op: 'add set', name, decl })
  for (const [name, chain] of to.chains) {
    if (!from.chains.has(name)) ops.push({ op: 'add chain', name, base: chain.base })
  }
  for (const [name, chain] of to.chains) {
    const old = from.chains.get(name)
    if (old !== undefined && sameRules(old.rules, chain.rules)) continue
    if (old !== undefined) ops.push({ op: 'flush chain', name })
    for (const rule of chain.rules) ops.push({ op: 'add rule', chain: name, rule })
  }

  const deletions: Op[] = []
  const additions: Op[] = []
  if (!diffInStep(from.groups, to.groups, deletions, additions)) {
    for (const [group, elements] of to.groups) {
      const old = from.groups.get(group)
      if (old !== elements) diffGroup(old ?? [], elements, deletions, additions)
    }
    for (const [group, elements] of from.groups) {
      if (!to.groups.has(group)) for (const element of elements) deletions.push({ op: 'delete element', element })
    }
  }
  for (const op of bySet(deletions)) ops.push(op)
  for (const op of bySet(additions)) ops.push(op)

  for (const name of from.chains.keys()) if (!to.chains.has(name)) ops.push({ op: 'delete chain', name })
  for (const [name, decl] of from.sets) if (!to.sets.has(name)) ops.push({ op: 'delete set', name, decl })
  return ops
}

/** Element operations of one set next to each other (a stable sort), so the script joins them into one command. */
function bySet (ops: Op[]): Op[] {
  const setOf = (op: Op): string => (op.op === 'add element' || op.op === 'delete element' ? op.element.set : '')
  return ops.length < 2 ? ops : ops.sort((a, b) => { const x = setOf(a); const y = setOf(b); return x < y ? -1 : x > y ? 1 : 0 })
}

/**
 * The fast path: both tables list the same groups in the same order (the
 * compiler follows the spec's sorted frontends), so one walk of both, without
 * hashing, finds the changed groups. Returns false, having added nothing, when
 * the groups differ in name or order; the caller then matches them by name.
 */
function diffInStep (
  from: ReadonlyMap<string, readonly NftElement[]>, to: ReadonlyMap<string, readonly NftElement[]>, deletions: Op[], additions: Op[]
): boolean {
  if (from.size !== to.size) return false
  const changed: Array<[readonly NftElement[], readonly NftElement[]]> = []
  const walk = from.entries()
  for (const [group, elements] of to) {
    const [oldGroup, oldElements] = walk.next().value!
    if (oldGroup !== group) return false
    if (oldElements !== elements) changed.push([oldElements, elements])
  }
  for (const [a, b] of changed) diffGroup(a, b, deletions, additions)
  return true
}

/** Both sorted by compareElements: one merge pass. */
function diffGroup (from: readonly NftElement[], to: readonly NftElement[], deletions: Op[], additions: Op[]): void {
  let i = 0
  let j = 0
  while (i < from.length || j < to.length) {
    const a = from[i]
    const b = to[j]
    const order = a === undefined ? 1 : b === undefined ? -1 : compareElements(a, b)
    if (order < 0) {
      deletions.push({ op: 'delete element', element: a! })
      i++
    } else if (order > 0) {
      additions.push({ op: 'add element', element: b! })
      j++
    } else {
      if (a!.value !== b!.value) {
        deletions.push({ op: 'delete element', element: a! })
        additions.push({ op: 'add element', element: b! })
      }
      i++
      j++
    }
  }
}

// ---------------------------------------------------------------------------
// Script text.

const PREFIX = `${FAMILY} ${TABLE}`
/** Elements per `add element` line: long lines parse fast, but keep each under nft's buffer comfortably. */
const ELEMENTS_PER_LINE = 500

function elementText (e: NftElement, withValue: boolean): string {
  return withValue && e.value !== null ? `${e.key} : ${e.value}` : e.key
}

function opText (op: Exclude<Op, { op: 'add element' | 'delete element' }>): string {
  switch (op.op) {
    case 'add table': return `add table ${PREFIX}`
    case 'delete table': return `delete table ${PREFIX}`
    case 'add set': return `add ${op.decl.data === null ? 'set' : 'map'} ${PREFIX} ${op.name} { ${setDeclaration(op.name, op.decl)} }`
    case 'delete set': return `delete ${op.decl.data === null ? 'set' : 'map'} ${PREFIX} ${op.name}`
    case 'add chain': return op.base === null
      ? `add chain ${PREFIX} ${op.name}`
      : `add chain ${PREFIX} ${op.name} { type ${op.base.type} hook ${op.base.hook} priority ${op.base.priority}; policy accept; }`
    case 'delete chain': return `delete chain ${PREFIX} ${op.name}`
    case 'flush chain': return `flush chain ${PREFIX} ${op.name}`
    case 'add rule': return `add rule ${PREFIX} ${op.chain} ${op.rule}`
  }
}

/** The transaction as `nft -f` input: one command per line, consecutive element operations on one set joined. */
export function renderScript (delta: Delta): string {
  const lines: string[] = []
  let i = 0
  while (i < delta.length) {
    const op = delta[i]!
    if (op.op !== 'add element' && op.op !== 'delete element') {
      lines.push(opText(op))
      i++
      continue
    }
    const batch: string[] = []
    const set = op.element.set
    const add = op.op === 'add element'
    while (i < delta.length && batch.length < ELEMENTS_PER_LINE) {
      const next = delta[i]!
      if (next.op !== op.op || next.element.set !== set) break
      batch.push(elementText(next.element, add))
      i++
    }
    lines.push(`${op.op} ${PREFIX} ${set} { ${batch.join(', ')} }`)
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n'
}

/** One line per difference, for logs and `netd check` (`from` = the kernel, `to` = the spec). */
export function describeDrift (delta: Delta): string[] {
  // A delta that creates or replaces the table says everything in its first operation.
  if (delta[0]?.op === 'add table') return [`table ${PREFIX} missing`]
  if (delta[0]?.op === 'delete table') return [delta.length === 1 ? `table ${PREFIX} present, not wanted` : `table ${PREFIX} has another layout`]
  const out: string[] = []
  const rewritten = new Set<string>()
  for (const op of delta) {
    switch (op.op) {
      case 'add set': out.push(`set ${op.name} missing`); break
      case 'delete set': out.push(`set ${op.name} not wanted`); break
      case 'add chain': out.push(`chain ${op.name} missing`); rewritten.add(op.name); break
      case 'delete chain': out.push(`chain ${op.name} not wanted`); break
      case 'flush chain': out.push(`chain ${op.name}: rules differ`); rewritten.add(op.name); break
      case 'add rule': if (!rewritten.has(op.chain)) out.push(`chain ${op.chain}: rule missing: ${op.rule}`); break
      case 'add element': out.push(`${op.element.set}: element missing: ${elementText(op.element, true)}`); break
      case 'delete element': out.push(`${op.element.set}: element not wanted: ${elementText(op.element, true)}`); break
      default: break
    }
  }
  return out
}

// ---------------------------------------------------------------------------
// applyDelta: the kernel's view of a transaction, on the model.

interface MutableTable {
  chains: Map<string, { base: BaseChain | null, rules: string[] }>
  sets: Map<string, NftSetDecl>
  elements: Map<string, Map<string, string | null>>
}

const SET_REFERENCE = /@([A-Za-z0-9_.-]+)/g
const CHAIN_REFERENCE = /\b(?:jump|goto) ([A-Za-z0-9_.-]+)/g

function references (text: string, pattern: RegExp): string[] {
  return [...text.matchAll(pattern)].map((m) => m[1]!)
}

function fail (op: Op, why: string): never {
  throw new LbError('LB_ERR_DELTA', `${renderScript([op]).trim()}: ${why}`)
}

/**
 * Applies a delta to a model as the kernel would, refusing what the kernel
 * refuses: adding what exists, deleting what does not, deleting a chain or
 * set still referred to, referring to what does not exist.
 */
export function applyDelta (table: NftTable | null, delta: Delta): NftTable | null {
  let t: MutableTable | null = table === null ? null : thaw(table)
  const need = (op: Op): MutableTable => t ?? fail(op, 'no such table')
  for (const op of delta) {
    switch (op.op) {
      case 'add table':
        t ??= { chains: new Map(), sets: new Map(), elements: new Map() }
        break
      case 'delete table':
        need(op)
        t = null
        break
      case 'add set': {
        const m = need(op)
        if (m.sets.has(op.name)) fail(op, 'set exists')
        m.sets.set(op.name, op.decl)
        m.elements.set(op.name, new Map())
        break
      }
      case 'delete set': {
        const m = need(op)
        if (!m.sets.has(op.name)) fail(op, 'no such set')
        for (const chain of m.chains.values()) {
          if (chain.rules.some((r) => references(r, SET_REFERENCE).includes(op.name))) fail(op, 'set in use')
        }
        m.sets.delete(op.name)
        m.elements.delete(op.name)
        break
      }
      case 'add chain': {
        const m = need(op)
        if (m.chains.has(op.name)) fail(op, 'chain exists')
        m.chains.set(op.name, { base: op.base, rules: [] })
        break
      }
      case 'delete chain': {
        const m = need(op)
        if (!m.chains.has(op.name)) fail(op, 'no such chain')
        for (const [name, chain] of m.chains) {
          if (name !== op.name && chain.rules.some((r) => references(r, CHAIN_REFERENCE).includes(op.name))) fail(op, 'chain in use')
        }
        for (const elements of m.elements.values()) {
          for (const value of elements.values()) if (value !== null && references(value, CHAIN_REFERENCE).includes(op.name)) fail(op, 'chain in use')
        }
        m.chains.delete(op.name)
        break
      }
      case 'flush chain': {
        const chain = need(op).chains.get(op.name) ?? fail(op, 'no such chain')
        chain.rules = []
        break
      }
      case 'add rule': {
        const m = need(op)
        const chain = m.chains.get(op.chain) ?? fail(op, 'no such chain')
        for (const set of references(op.rule, SET_REFERENCE)) if (!m.sets.has(set)) fail(op, `no such set ${set}`)
        for (const target of references(op.rule, CHAIN_REFERENCE)) if (!m.chains.has(target)) fail(op, `no such chain ${target}`)
        chain.rules.push(op.rule)
        break
      }
      case 'add element': {
        const m = need(op)
        const decl = m.sets.get(op.element.set) ?? fail(op, 'no such set')
        const elements = m.elements.get(op.element.set)!
        if (elements.has(op.element.key)) fail(op, 'element exists')
        if ((decl.data === null) !== (op.element.value === null)) fail(op, 'element does not fit the set')
        if (op.element.value !== null) {
          for (const target of references(op.element.value, CHAIN_REFERENCE)) if (!m.chains.has(target)) fail(op, `no such chain ${target}`)
        }
        elements.set(op.element.key, op.element.value)
        break
      }
      case 'delete element': {
        const elements = need(op).elements.get(op.element.set) ?? fail(op, 'no such set')
        if (!elements.delete(op.element.key)) fail(op, 'no such element')
        break
      }
    }
  }
  return t === null ? null : freeze(t)
}

function thaw (table: NftTable): MutableTable {
  const chains = new Map<string, { base: BaseChain | null, rules: string[] }>()
  for (const [name, chain] of table.chains) chains.set(name, { base: chain.base, rules: [...chain.rules] })
  const elements = new Map<string, Map<string, string | null>>()
  for (const name of table.sets.keys()) elements.set(name, new Map())
  for (const group of table.groups.values()) {
    for (const e of group) {
      let set = elements.get(e.set)
      if (set === undefined) elements.set(e.set, set = new Map())
      set.set(e.key, e.value)
    }
  }
  return { chains, sets: new Map(table.sets), elements }
}

/** Builds a model from chains, sets and elements, grouping the elements as the compiler does. */
export function tableOf (
  chains: ReadonlyMap<string, NftChain>, sets: ReadonlyMap<string, NftSetDecl>, elements: Iterable<NftElement>
): NftTable {
  const groups = new Map<string, NftElement[]>()
  for (const e of elements) {
    const group = groupOf(e.set, e.key)
    let list = groups.get(group)
    if (list === undefined) groups.set(group, list = [])
    list.push(e)
  }
  for (const list of groups.values()) list.sort(compareElements)
  return { chains, sets, groups }
}

function freeze (t: MutableTable): NftTable {
  const chains = new Map<string, NftChain>()
  for (const [name, chain] of t.chains) chains.set(name, { base: chain.base, rules: chain.rules })
  const elements: NftElement[] = []
  for (const [set, map] of t.elements) for (const [key, value] of map) elements.push({ set, key, value })
  return tableOf(chains, t.sets, elements)
}
