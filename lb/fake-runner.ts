/**
 * Stand-ins for the kernel port: an in-memory kernel that applies deltas with
 * applyDelta (so it refuses what nft refuses), and a faulty wrapper that
 * fails chosen calls. The real kernel is checked against the same model by
 * test/e2e/lb-kernel.test.ts.
 */
import type { LbRunner } from './runner.ts'
import type { Delta } from './delta.ts'
import type { ElementCounter, ParsedTable } from './nft-json.ts'
import type { NftTable } from './ruleset.ts'
import type { Sysctls } from './sysctl.ts'
import type { FlowFilter } from './conntrack.ts'
import { applyDelta } from './delta.ts'
import { LbError } from './errors.ts'

export class FakeLbRunner implements LbRunner {
  readonly namespaces = new Set<string>()
  /** Absent: no table. The host namespace is the key null. */
  readonly tables = new Map<string | null, NftTable>()
  readonly counters = new Map<string | null, Map<string, Map<string, ElementCounter>>>()
  readonly sysctls = new Map<string | null, Record<string, string>>()
  /** Every call, as `method netns`, in order. */
  readonly calls: string[] = []
  readonly transactions: Array<{ netns: string | null, delta: Delta, script: string }> = []
  readonly conntrack: Array<{ netns: string | null, filter: FlowFilter }> = []

  constructor (namespaces: Iterable<string> = []) {
    for (const ns of namespaces) this.namespaces.add(ns)
  }

  #need (method: string, netns: string | null): void {
    this.calls.push(`${method} ${netns ?? '(host)'}`)
    if (netns !== null && !this.namespaces.has(netns)) throw new LbError('LB_ERR_NFT', `${method}: no namespace ${netns}`)
  }

  async exists (netns: string): Promise<boolean> {
    return this.namespaces.has(netns)
  }

  async list (netns: string | null): Promise<ParsedTable> {
    this.#need('list', netns)
    return { table: this.tables.get(netns) ?? null, counters: this.counters.get(netns) ?? new Map() }
  }

  async apply (netns: string | null, delta: Delta, script: string): Promise<void> {
    this.#need('apply', netns)
    const next = applyDelta(this.tables.get(netns) ?? null, delta)
    if (next === null) this.tables.delete(netns)
    else this.tables.set(netns, next)
    this.transactions.push({ netns, delta, script })
  }

  async deleteTable (netns: string | null): Promise<void> {
    this.#need('deleteTable', netns)
    this.tables.delete(netns)
  }

  async deleteFlows (netns: string | null, filters: readonly FlowFilter[]): Promise<number[]> {
    this.#need('conntrack', netns)
    for (const filter of filters) this.conntrack.push({ netns, filter })
    return filters.map(() => 0)
  }

  async writeSysctls (netns: string | null, values: Sysctls): Promise<void> {
    this.#need('writeSysctls', netns)
    this.sysctls.set(netns, { ...this.sysctls.get(netns), ...values })
  }

  async readSysctls (netns: string | null, names: readonly string[]): Promise<Record<string, string>> {
    this.#need('readSysctls', netns)
    const values = this.sysctls.get(netns) ?? {}
    return Object.fromEntries(names.map((n) => [n, values[n] ?? '']))
  }
}

type Method = Exclude<keyof LbRunner, 'exists'>

/** Fails the next `count` calls of a method (optionally only in one namespace), then behaves. */
export class FaultyLbRunner implements LbRunner {
  readonly #inner: LbRunner
  readonly #faults: Array<{ method: Method, netns: string | null | undefined, count: number }> = []

  constructor (inner: LbRunner) {
    this.#inner = inner
  }

  fail (method: Method, count = 1, netns?: string | null): this {
    this.#faults.push({ method, netns, count })
    return this
  }

  #check (method: Method, netns: string | null): void {
    const fault = this.#faults.find((f) => f.method === method && f.count > 0 && (f.netns === undefined || f.netns === netns))
    if (fault === undefined) return
    fault.count--
    const code = method === 'deleteFlows' ? 'LB_ERR_CONNTRACK' : method.endsWith('Sysctls') ? 'LB_ERR_SYSCTL' : 'LB_ERR_NFT'
    throw new LbError(code, `injected failure: ${method} in ${netns ?? 'host namespace'}`)
  }

  exists (netns: string): Promise<boolean> { return this.#inner.exists(netns) }
  async list (netns: string | null): Promise<ParsedTable> { this.#check('list', netns); return await this.#inner.list(netns) }
  async apply (netns: string | null, delta: Delta, script: string): Promise<void> { this.#check('apply', netns); await this.#inner.apply(netns, delta, script) }
  async deleteTable (netns: string | null): Promise<void> { this.#check('deleteTable', netns); await this.#inner.deleteTable(netns) }
  async deleteFlows (netns: string | null, filters: readonly FlowFilter[]): Promise<number[]> { this.#check('deleteFlows', netns); return await this.#inner.deleteFlows(netns, filters) }
  async writeSysctls (netns: string | null, values: Sysctls): Promise<void> { this.#check('writeSysctls', netns); await this.#inner.writeSysctls(netns, values) }
  async readSysctls (netns: string | null, names: readonly string[]): Promise<Record<string, string>> { this.#check('readSysctls', netns); return await this.#inner.readSysctls(netns, names) }
}
