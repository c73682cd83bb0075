/**
 * The ruleset model and its compiler: a frontend spec in, the nft table that
 * implements it out, as plain data. The same model describes what the kernel
 * has (nft-json.ts parses it back), so programming is a diff of two values
 * (delta.ts).
 *
 * A model is one table (`ip weft_lb`) or null (no table). Chains carry their
 * rules as text; set elements are grouped by the frontend or backend they
 * belong to (layout.ts `groupOf`), each group sorted, so equal content is
 * equal data.
 *
 * Speed: the compiler keeps each frontend's group from one sync to the next
 * and hands out the same array while the frontend is unchanged, so the diff
 * skips unchanged groups by identity; when only endpoints changed it patches
 * its previous table instead of rebuilding it. Tasks attached to the same
 * networks share one compiled table (and the programmer one diff).
 */
import {
  HOST_SETS, TASK_FILTER_CHAINS, TASK_SETS, VIP_DISPATCH_SET, compareDispatch, hostBaseChains, portDispatchChain, portDispatchRules,
  taskNatChain, vipDispatchSet, type BaseChain, type NftSetDecl
} from './layout.ts'
import type { Backend, HostLbSpec, PortFrontend, TaskLbSpec, VipFrontend } from './spec.ts'

export interface NftChain {
  /** null: a regular chain, entered by jump/goto only. */
  readonly base: BaseChain | null
  readonly rules: readonly string[]
}

export interface NftElement {
  readonly set: string
  /** Key as nft writes it: `10.0.1.100`, `10.0.1.100 . 2`, `tcp . 8080`. */
  readonly key: string
  /** Map data as nft writes it (`jump vip_rr_2`, `10.0.1.5`, `10.255.0.5 . 80`); null in a plain set. */
  readonly value: string | null
}

export interface NftTable {
  readonly chains: ReadonlyMap<string, NftChain>
  readonly sets: ReadonlyMap<string, NftSetDecl>
  /** Group (layout.ts `groupOf`) → its elements, sorted by set, then key. */
  readonly groups: ReadonlyMap<string, readonly NftElement[]>
}

export function compareElements (a: NftElement, b: NftElement): number {
  if (a.set !== b.set) return a.set < b.set ? -1 : 1
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0
}

/** A backend takes part in balancing only while healthy; its counters stay while the task exists. */
function healthyOf (backends: readonly Backend[]): Backend[] {
  return backends.filter((b) => b.healthy)
}

/** Same content, compared field by field (cheaper than building a signature string per frontend). */
function sameFrontend (a: VipFrontend | PortFrontend, b: VipFrontend | PortFrontend): boolean {
  if (a === b) return true
  if (a.kind !== b.kind || a.key !== b.key || a.scheduler !== b.scheduler || a.backends.length !== b.backends.length) return false
  if (a.kind !== 'vip' && b.kind !== 'vip' && a.target !== b.target) return false
  for (let i = 0; i < a.backends.length; i++) {
    const x = a.backends[i]!
    const y = b.backends[i]!
    if (x.ip !== y.ip || x.healthy !== y.healthy) return false
  }
  return true
}

interface Compiled {
  frontend: VipFrontend | PortFrontend
  readonly group: readonly NftElement[]
  /** Where it is dispatched: the VIP's dispatch set, the port's dispatch chain; null when idle. */
  readonly dispatch: string | null
  readonly healthy: number
  /** The last sweep generation that used it. */
  generation: number
}

function compiled (f: VipFrontend | PortFrontend, generation: number): Compiled {
  const healthy = healthyOf(f.backends).length
  const dispatch = healthy === 0 ? null : f.kind === 'vip' ? vipDispatchSet(f.scheduler, healthy) : portDispatchChain(f.kind, f.protocol, f.scheduler, healthy)
  const elements = f.kind === 'vip' ? vipElements(f) : portElements(f)
  return { frontend: f, group: Object.freeze(elements.sort(compareElements)), dispatch, healthy, generation }
}

interface Dispatch { readonly scheduler: 'rr' | 'sh', readonly backends: number, readonly count: number }

/** The last compile of one set of networks' VIPs. */
interface TaskMemo {
  frontends: readonly VipFrontend[]
  entries: readonly Compiled[]
  /** Dispatch set → how many VIPs are in it. */
  dispatch: ReadonlyMap<string, Dispatch>
  table: NftTable
  generation: number
}

export class RulesetCompiler {
  /** Per set of networks (TaskLbSpec.networks): the previous compile, patched when only some frontends changed. */
  readonly #taskMemos = new Map<string, TaskMemo>()
  /** Host: frontend key → its compiled group; reused only after the frontend compares equal. */
  readonly #ports = new Map<string, Compiled>()
  readonly #counters = new Map<string, { group: readonly NftElement[], generation: number }>()
  /** Dispatch chains (host) by name, nat chains (tasks) by the dispatch sets they serve: one object each. */
  readonly #dispatch = new Map<string, NftChain>()
  readonly #natChains = new Map<string, NftChain>()
  #generation = 0

  /**
   * A task namespace's table; null when the task has no VIP to balance.
   * Costs one comparison per frontend when the VIPs are the same ones as last
   * time (the usual case: an endpoint changed), plus the changed frontends.
   */
  task (spec: TaskLbSpec): NftTable | null {
    if (spec.frontends.length === 0) return null
    const memoKey = spec.networks.join('\u0000')
    const memo = this.#taskMemos.get(memoKey)
    const next = (memo !== undefined && this.#patch(memo, spec.frontends)) || this.#compileTask(spec.frontends, memo)
    next.generation = this.#generation
    this.#taskMemos.set(memoKey, next)
    return next.table
  }

  /** The host namespace's table; null without an ingress leg or without a published port. */
  host (spec: HostLbSpec): NftTable | null {
    if (spec.leg === null || spec.frontends.length === 0) return null
    const chains = new Map<string, NftChain>(hostBaseChains(spec.leg.ifname))
    const groups = new Map<string, readonly NftElement[]>()
    for (const f of spec.frontends) {
      let entry = this.#ports.get(f.key)
      if (entry !== undefined && sameFrontend(entry.frontend, f)) entry.generation = this.#generation
      else this.#ports.set(f.key, entry = compiled(f, this.#generation))
      groups.set(f.key, entry.group)
      const { dispatch, healthy } = entry
      if (dispatch !== null && !chains.has(dispatch)) chains.set(dispatch, this.#chain(dispatch, () => portDispatchRules(f.kind, f.protocol, f.scheduler, healthy)))
    }
    // Counters per backend (not per frontend): two published ports of one target share them.
    for (const f of spec.frontends) {
      for (const b of f.backends) {
        const key = `${f.protocol} . ${b.ip} . ${f.target}`
        if (groups.has(key)) continue
        let entry = this.#counters.get(key)
        if (entry === undefined) {
          const group = Object.freeze(['port_conns', 'port_orig', 'port_reply'].map((set) => ({ set, key, value: null })))
          this.#counters.set(key, entry = { group, generation: this.#generation })
        }
        entry.generation = this.#generation
        groups.set(key, entry.group)
      }
    }
    return { chains, sets: HOST_SETS, groups }
  }

  /** Forgets what no compile used in the last two syncs: call once per sync. */
  sweep (): void {
    const stale = this.#generation - 1
    for (const [key, memo] of this.#taskMemos) if (memo.generation < stale) this.#taskMemos.delete(key)
    for (const [key, entry] of this.#ports) if (entry.generation < stale) this.#ports.delete(key)
    for (const [key, entry] of this.#counters) if (entry.generation < stale) this.#counters.delete(key)
    this.#generation++
  }

  /**
   * Same VIPs in the same order as the memo: copy its groups and replace the
   * changed ones. Keeps the order, which the diff's in-step walk relies on.
   * Returns null when the VIPs themselves differ.
   */
  #patch (memo: TaskMemo, frontends: readonly VipFrontend[]): TaskMemo | null {
    if (memo.frontends === frontends) return memo
    if (memo.frontends.length !== frontends.length) return null
    const changed: number[] = []
    for (let i = 0; i < frontends.length; i++) {
      const a = memo.entries[i]!.frontend
      const b = frontends[i]!
      if (a.key !== b.key) return null
      if (!sameFrontend(a, b)) changed.push(i)
    }
    if (changed.length === 0) return { ...memo, frontends }
    const entries = [...memo.entries]
    const groups = new Map(memo.table.groups)
    const dispatch = new Map(memo.dispatch)
    for (const i of changed) {
      const before = entries[i]!
      const after = compiled(frontends[i]!, this.#generation)
      entries[i] = after
      groups.set(after.frontend.key, after.group)
      count(dispatch, before, -1)
      count(dispatch, after, 1)
    }
    return { frontends, entries, dispatch, table: this.#taskTable(dispatch, groups), generation: this.#generation }
  }

  #compileTask (frontends: readonly VipFrontend[], memo: TaskMemo | undefined): TaskMemo {
    const known = new Map<string, Compiled>()
    for (const entry of memo?.entries ?? []) known.set(entry.frontend.key, entry)
    const entries: Compiled[] = []
    const groups = new Map<string, readonly NftElement[]>()
    const dispatch = new Map<string, Dispatch>()
    for (const f of frontends) {
      const old = known.get(f.key)
      const entry = old !== undefined && sameFrontend(old.frontend, f) ? old : compiled(f, this.#generation)
      entries.push(entry)
      groups.set(f.key, entry.group)
      count(dispatch, entry, 1)
    }
    return { frontends, entries, dispatch, table: this.#taskTable(dispatch, groups), generation: this.#generation }
  }

  /** Sets and chains follow the dispatch sets in use; the nat chain object is shared while they stay the same. */
  #taskTable (dispatch: TaskMemo['dispatch'], groups: Map<string, readonly NftElement[]>): NftTable {
    const order = [...dispatch.values()].sort(compareDispatch)
    const key = order.map((d) => `${d.scheduler}${d.backends}`).join(',')
    let nat = this.#natChains.get(key)
    if (nat === undefined) this.#natChains.set(key, nat = Object.freeze(taskNatChain(order)))
    const chains = new Map<string, NftChain>([['nat_output', nat], ...TASK_FILTER_CHAINS])
    const sets = new Map<string, NftSetDecl>(TASK_SETS)
    for (const d of order) sets.set(vipDispatchSet(d.scheduler, d.backends), VIP_DISPATCH_SET)
    return { chains, sets, groups }
  }

  #chain (name: string, rules: () => string[]): NftChain {
    let chain = this.#dispatch.get(name)
    if (chain === undefined) this.#dispatch.set(name, chain = Object.freeze({ base: null, rules: Object.freeze(rules()) }))
    return chain
  }
}

/** Counts a VIP in (or out of) its dispatch set; a set nobody is in any more goes. */
function count (dispatch: Map<string, Dispatch>, entry: Compiled, by: 1 | -1): void {
  if (entry.dispatch === null) return
  const now = (dispatch.get(entry.dispatch)?.count ?? 0) + by
  if (now === 0) dispatch.delete(entry.dispatch)
  else dispatch.set(entry.dispatch, { scheduler: entry.frontend.scheduler, backends: entry.healthy, count: now })
}

function vipElements (f: VipFrontend): NftElement[] {
  const healthy = healthyOf(f.backends)
  const out: NftElement[] = []
  if (healthy.length === 0) {
    out.push({ set: 'idle_vips', key: f.vip, value: null })
  } else {
    out.push({ set: vipDispatchSet(f.scheduler, healthy.length), key: f.vip, value: null })
    healthy.forEach((b, slot) => out.push({ set: 'vip_slots', key: `${f.vip} . ${slot}`, value: b.ip }))
  }
  for (const b of f.backends) {
    for (const set of ['vip_conns', 'vip_orig', 'vip_reply']) out.push({ set, key: `${f.vip} . ${b.ip}`, value: null })
  }
  return out
}

function portElements (f: PortFrontend): NftElement[] {
  const healthy = healthyOf(f.backends)
  if (healthy.length === 0) return [{ set: 'idle_ports', key: f.key, value: null }]
  return [
    { set: 'ports', key: f.key, value: `jump ${portDispatchChain(f.kind, f.protocol, f.scheduler, healthy.length)}` },
    ...healthy.map((b, slot) => ({ set: `${f.protocol}_slots`, key: `${f.published} . ${slot}`, value: `${b.ip} . ${f.target}` }))
  ]
}

/** Pure one-shot forms, for tests and tools. */
export function compileTask (spec: TaskLbSpec): NftTable | null {
  return new RulesetCompiler().task(spec)
}

export function compileHost (spec: HostLbSpec): NftTable | null {
  return new RulesetCompiler().host(spec)
}

/** Canonical plain form of a model: sorted, no Maps; equal models give deep-equal values. */
export function canonical (table: NftTable | null): unknown {
  if (table === null) return null
  const sorted = <V>(map: ReadonlyMap<string, V>): Array<[string, V]> => [...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return {
    chains: sorted(table.chains).map(([name, c]) => [name, c.base, [...c.rules]]),
    sets: sorted(table.sets),
    groups: sorted(table.groups).map(([name, elements]) => [name, elements.map((e) => [e.set, e.key, e.value])])
  }
}
