/**
 * Prints what a member's raft directory holds, read-only (a torn tail is
 * reported, not cut; leftovers are listed, not removed):
 *
 *   node manager/raft/inspect.ts DIR [--entries N]
 *
 * Safe to run next to a live member: it reads files and changes none.
 */
import { parseArgs } from 'node:util'
import { decodeConf } from './conf.ts'
import { Wal } from './wal.ts'

const { values, positionals } = parseArgs({ allowPositionals: true, options: { entries: { type: 'string', default: '20' } } })
const dir = positionals[0]
if (dir === undefined) {
  process.stderr.write('usage: node manager/raft/inspect.ts DIR [--entries N]\n')
  process.exit(2)
}
const state = await Wal.inspect(dir)
const decoder = new TextDecoder()
const show = Number(values.entries)
const first = state.entries[0]?.index
const last = state.entries.at(-1)?.index
console.log(`segments   ${state.segments.join(' ')}`)
console.log(`hard state term ${state.hardState.term}, vote ${state.hardState.vote ?? '-'}, commit ${state.hardState.commit}`)
console.log(state.snapshot === null
  ? 'snapshot   none'
  : `snapshot   index ${state.snapshot.index}, term ${state.snapshot.term}, voters ${state.snapshot.conf.voters.join(',')}, ${state.snapshot.data.length} bytes`)
console.log(`entries    ${state.entries.length === 0 ? 'none' : `${first}..${last}`}`)
if (state.tornBytes > 0) console.log(`torn tail  ${state.tornBytes} bytes (open() will drop them)`)
if (state.removedFiles.length > 0) console.log(`leftovers  ${state.removedFiles.join(' ')} (open() will remove them)`)
for (const entry of state.entries.slice(-show)) {
  const text = entry.kind === 'config' ? `voters ${decodeConf(entry).conf.voters.join(',')}` : decoder.decode(entry.data)
  console.log(`  ${String(entry.index).padStart(8)} t${entry.term} ${entry.kind.padEnd(6)} ${text.length > 100 ? `${text.slice(0, 100)}…` : text}`)
}
