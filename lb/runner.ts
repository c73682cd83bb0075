/**
 * The narrow port between the lb programmer and the kernel. Three
 * implementations: the real one here, an in-memory fake and a faulty wrapper
 * (fake-runner.ts) for the programmer's unit tests.
 */
import type { Delta } from './delta.ts'
import type { ParsedTable } from './nft-json.ts'
import type { FlowFilter } from './conntrack.ts'
import type { Sysctls } from './sysctl.ts'
import { namespaceExists } from './exec.ts'
import { nftApply, nftDeleteTable, nftList } from './nft.ts'
import { deleteFlows } from './native-conntrack.ts'
import { readSysctls, writeSysctls } from './sysctl.ts'

/** Every method takes a namespace name, or null for netd's own (the host) namespace. */
export interface LbRunner {
  exists (netns: string): Promise<boolean>
  list (netns: string | null): Promise<ParsedTable>
  /** One transaction: the delta is applied whole or not at all. `script` is the delta's text. */
  apply (netns: string | null, delta: Delta, script: string): Promise<void>
  /** A table that is not there is success. */
  deleteTable (netns: string | null): Promise<void>
  /** Deletes the conntrack entries matching any filter, in one walk of the table; how many each filter deleted. */
  deleteFlows (netns: string | null, filters: readonly FlowFilter[]): Promise<number[]>
  writeSysctls (netns: string | null, values: Sysctls): Promise<void>
  readSysctls (netns: string | null, names: readonly string[]): Promise<Record<string, string>>
}

export const realRunner: LbRunner = {
  exists: namespaceExists,
  list: nftList,
  apply: async (netns, _delta, script) => await nftApply(netns, script),
  deleteTable: nftDeleteTable,
  deleteFlows,
  writeSysctls,
  readSysctls
}
