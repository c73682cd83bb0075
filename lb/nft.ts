/**
 * nft, run in a namespace: a transaction is one nft batch (all of it or none
 * of it is applied), a listing is `nft -j list table ip weft_lb`.
 */
import { FAMILY, TABLE } from './layout.ts'
import { inNamespace, run } from './exec.ts'
import { parseNftJson, type ParsedTable } from './nft-json.ts'
import { LbError } from './errors.ts'

const where = (netns: string | null): string => netns ?? 'host namespace'
const NO_TABLE = /No such file or directory/

/**
 * A small transaction is run through `nft -i` (interactive: one input line is
 * one transaction), followed by a barrier command with a fixed answer; the
 * call resolves at the barrier, without waiting for nft to exit. Why: after a
 * transaction that deleted anything, the kernel makes the closing of nft's
 * netlink socket wait for an RCU grace period (nf_tables_trans_destroy_flush_work,
 * run from the NETLINK_URELEASE notifier), and process exit is slow on a busy
 * machine anyway. Measured, one element added / deleted, medians: `nft -f`
 * 13 / 20 ms, `nft -i` + barrier 8 / 12 ms; both the same at 10 and 10,000
 * services. stderr is merged into stdout (by sh) so an error comes before the
 * barrier's answer. Large scripts go through `nft -f`: nft -i reads its input
 * a byte at a time.
 */
const INTERACTIVE_MAX = 16 * 1024
const BARRIER = 'describe meta mark'
const BARRIER_ANSWER = 'datatype mark'

export async function nftApply (netns: string | null, script: string): Promise<void> {
  if (script === '') return
  let result: { code: number, stdout: string, stderr: string }
  if (script.length <= INTERACTIVE_MAX) {
    const line = script.trimEnd().split('\n').join('; ')
    const out = await run(inNamespace(netns, ['sh', '-c', 'exec nft -i 2>&1']), {
      input: `${line}\n${BARRIER}\n`,
      // Interactive nft keeps a history file in $HOME; it has no business there.
      env: { HOME: '/nonexistent' },
      doneWhen: (stdout) => stdout.includes(BARRIER_ANSWER)
    })
    const at = out.stdout.indexOf(BARRIER_ANSWER)
    const before = at < 0 ? out.stdout : out.stdout.slice(0, out.stdout.lastIndexOf('\n', at) + 1)
    result = { code: at < 0 || /Error/.test(before) ? 1 : 0, stdout: '', stderr: before || out.stderr || `nft -i ended without answering (exit ${out.code})` }
  } else {
    result = await run(inNamespace(netns, ['nft', '-f', '-']), { input: script })
  }
  if (result.code !== 0) {
    const lines = result.stderr.split('\n').filter((l) => l.trim() !== '')
    throw new LbError('LB_ERR_NFT', `nft in ${where(netns)}: ${lines[0] ?? `exit ${result.code}`}`, lines)
  }
}

export async function nftList (netns: string | null): Promise<ParsedTable> {
  const result = await run(inNamespace(netns, ['nft', '-j', 'list', 'table', FAMILY, TABLE]))
  if (result.code !== 0) {
    if (NO_TABLE.test(result.stderr)) return { table: null, counters: new Map() }
    throw new LbError('LB_ERR_NFT', `nft list table in ${where(netns)}: ${result.stderr.trim() || `exit ${result.code}`}`)
  }
  return parseNftJson(result.stdout)
}

/** Deletes the table; a table that is not there is success. */
export async function nftDeleteTable (netns: string | null): Promise<void> {
  const result = await run(inNamespace(netns, ['nft', 'delete', 'table', FAMILY, TABLE]))
  if (result.code !== 0 && !NO_TABLE.test(result.stderr)) {
    throw new LbError('LB_ERR_NFT', `nft delete table in ${where(netns)}: ${result.stderr.trim() || `exit ${result.code}`}`)
  }
}
