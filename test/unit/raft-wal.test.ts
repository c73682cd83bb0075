/**
 * The write-ahead log on a real directory: what comes back after a clean
 * close, after a torn write cut at every byte of the last batch, after
 * snapshots (local and received), after an interrupted compaction; and that
 * damage which is not a torn tail is reported, never skipped.
 */
import t, { type Test } from 'tap'
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile, appendFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Wal } from '../../manager/raft/wal.ts'
import type { Entry, HardState, Snapshot } from '../../manager/raft/types.ts'

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const entry = (index: number, term: number, text = `e${index}`): Entry => ({ index, term, kind: 'normal', data: encoder.encode(text) })
const hard = (term: number, commit: number, vote: string | null = 'a'): HardState => ({ term, vote, commit })
const summary = (entries: readonly Entry[]): string[] => entries.map((e) => `${e.index}:${e.term}:${e.kind}:${decoder.decode(e.data)}`)

async function scratch (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weft-raft-wal-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function segments (dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.wal')).sort()
}

t.test('entries and hard state come back after a clean close; a conflicting suffix is replaced', async (t) => {
  const dir = await scratch(t)
  const { wal } = await Wal.open(dir)
  await wal.save({ entries: [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)], hardState: hard(1, 2) })
  await wal.save({ entries: [entry(3, 2, 'new3')], hardState: hard(2, 2, null) }) // a follower overwriting 3..4
  await wal.save({ hardState: hard(3, 3, 'b') })
  await wal.close()
  const { wal: again, recovered } = await Wal.open(dir)
  t.same(summary(recovered.entries), ['1:1:normal:e1', '2:1:normal:e2', '3:2:normal:new3'])
  t.same(recovered.hardState, hard(3, 3, 'b'))
  t.equal(recovered.snapshot, null)
  t.equal(recovered.tornBytes, 0)
  await again.save({ entries: [entry(4, 3)] })
  await again.close()
  const third = await Wal.open(dir)
  t.same(summary(third.recovered.entries).at(-1), '4:3:normal:e4')
  await third.wal.close()
})

t.test('a torn last batch, cut at every byte, loses exactly the records it did not finish', async (t) => {
  const dir = await scratch(t)
  const { wal } = await Wal.open(dir)
  await wal.save({ entries: [entry(1, 1), entry(2, 1)], hardState: hard(1, 1) })
  const [segment] = await segments(dir)
  const path = join(dir, segment!)
  const before = (await stat(path)).size
  await wal.save({ entries: [entry(3, 2, 'x'.repeat(40))], hardState: hard(2, 3) })
  await wal.close()
  const full = await readFile(path)
  const entryRecordEnd = before + 12 + 18 + 40
  const failures: string[] = []
  for (let cut = before; cut <= full.length; cut++) {
    await writeFile(path, full.subarray(0, cut))
    const { wal: reopened, recovered } = await Wal.open(dir)
    const want = cut < entryRecordEnd
      ? { last: 2, hardState: hard(1, 1) }
      : { last: 3, hardState: cut < full.length ? hard(1, 1) : hard(2, 3) }
    const { term, vote, commit } = recovered.hardState
    const got = { last: recovered.entries.at(-1)!.index, hardState: hard(term, commit, vote) }
    if (JSON.stringify(got) !== JSON.stringify(want)) failures.push(`cut at ${cut}: ${JSON.stringify(got)}, want ${JSON.stringify(want)}`)
    const expectedTorn = cut === full.length ? 0 : cut < entryRecordEnd ? cut - before : cut - entryRecordEnd
    if (recovered.tornBytes !== expectedTorn) failures.push(`cut at ${cut}: ${recovered.tornBytes} torn bytes, want ${expectedTorn}`)
    // The log must go on from there: the torn bytes are cut off before the next record.
    await reopened.save({ entries: [entry(want.last + 1, 5)], hardState: hard(5, 1) })
    await reopened.close()
    const after = (await Wal.open(dir))
    if (after.recovered.entries.at(-1)!.index !== want.last + 1 || after.recovered.tornBytes !== 0) failures.push(`cut at ${cut}: appending after recovery failed`)
    await after.wal.close()
  }
  t.same(failures, [], `${full.length - before + 1} cut points`)
})

t.test('a zero-filled tail (preallocation, power loss) and a last record failing its checksum are torn writes', async (t) => {
  const dir = await scratch(t)
  const { wal } = await Wal.open(dir)
  await wal.save({ entries: [entry(1, 1), entry(2, 1)], hardState: hard(1, 2) })
  await wal.close()
  const path = join(dir, (await segments(dir))[0]!)
  await appendFile(path, Buffer.alloc(4096))
  let reopened = await Wal.open(dir)
  t.equal(reopened.recovered.tornBytes, 4096)
  t.equal(reopened.recovered.entries.length, 2)
  await reopened.wal.save({ entries: [entry(3, 1, 'last')] })
  await reopened.wal.close()
  const bytes = await readFile(path)
  bytes[bytes.length - 1]! ^= 0xff // the final byte of entry 3's data
  await writeFile(path, bytes)
  reopened = await Wal.open(dir)
  t.same(summary(reopened.recovered.entries), ['1:1:normal:e1', '2:1:normal:e2'], 'the damaged last record is dropped')
  t.ok(reopened.recovered.tornBytes > 0)
  await reopened.wal.close()
})

t.test('a checksum mismatch with good records after it is corruption, reported, not skipped', async (t) => {
  const dir = await scratch(t)
  const { wal } = await Wal.open(dir)
  for (let i = 1; i <= 3; i++) await wal.save({ entries: [entry(i, 1, 'payload')] })
  await wal.close()
  const path = join(dir, (await segments(dir))[0]!)
  const good = await readFile(path)
  const recordLength = good.length / 3
  const payloadByte = Buffer.from(good)
  payloadByte[recordLength + 12 + 20]! ^= 0x01 // inside the second record's data
  await writeFile(path, payloadByte)
  await t.rejects(Wal.open(dir), { code: 'RAFT_ERR_WAL_CORRUPT', message: /checksum mismatch.*records after it/ })
  const headerByte = Buffer.from(good)
  headerByte[recordLength + 1]! ^= 0x40 // the second record's length
  await writeFile(path, headerByte)
  await t.rejects(Wal.open(dir), { code: 'RAFT_ERR_WAL_CORRUPT', message: /bad record header/ })
})

t.test('a damaged segment that is not the last one is corruption even at its end', async (t) => {
  const dir = await scratch(t)
  const { wal } = await Wal.open(dir, { segmentBytes: 4096 })
  for (let i = 1; i <= 100; i++) await wal.save({ entries: [entry(i, 1, 'y'.repeat(100))] })
  await wal.close()
  const names = await segments(dir)
  t.ok(names.length >= 3, `${names.length} segments`)
  const reopened = await Wal.open(dir)
  t.same(reopened.recovered.entries.length, 100, 'all entries across the segments')
  await reopened.wal.close()
  const first = join(dir, names[0]!)
  await truncate(first, (await stat(first)).size - 3)
  await t.rejects(Wal.open(dir), { code: 'RAFT_ERR_WAL_CORRUPT', message: /not the last/ })
  await rm(join(dir, names[1]!))
  await writeFile(first, Buffer.alloc(0))
  await t.rejects(Wal.open(dir), { code: 'RAFT_ERR_WAL_CORRUPT', message: /does not follow the log/ })
})

t.test('compaction: a snapshot replaces the entries it covers; older segments and snapshots are deleted', async (t) => {
  const dir = await scratch(t)
  const { wal } = await Wal.open(dir, { segmentBytes: 4096 })
  for (let i = 1; i <= 60; i++) await wal.save({ entries: [entry(i, 1, 'z'.repeat(100))], hardState: hard(1, i) })
  const snapshot = (index: number): Snapshot => ({ index, term: 1, conf: { voters: ['a', 'b'] }, data: encoder.encode(`state@${index}`) })
  await wal.compact(snapshot(40), Array.from({ length: 20 }, (_, k) => entry(41 + k, 1, 'z'.repeat(100))))
  await wal.compact(snapshot(50), Array.from({ length: 10 }, (_, k) => entry(51 + k, 1, 'z'.repeat(100))))
  await wal.save({ entries: [entry(61, 2)], hardState: hard(2, 61) })
  await wal.close()
  const files = (await readdir(dir)).sort()
  t.same(files.filter((f) => f.endsWith('.snap')), ['snap-0000000000000032-0000000000000001.snap'], 'only the latest snapshot is kept')
  t.equal(files.filter((f) => f.endsWith('.wal')).length, 1, 'and the segments written since')
  const { wal: again, recovered } = await Wal.open(dir)
  t.same(recovered.snapshot && { ...recovered.snapshot, data: decoder.decode(recovered.snapshot.data) }, { index: 50, term: 1, conf: { voters: ['a', 'b'] }, data: 'state@50' })
  t.same(recovered.entries.map((e) => e.index), Array.from({ length: 11 }, (_, k) => 51 + k))
  t.same(recovered.hardState, hard(2, 61))
  await t.rejects(again.compact(snapshot(45), []), { code: 'RAFT_ERR_COMPACT' })
  await again.close()
})

t.test('a snapshot received from the leader empties the log, whatever it held after the snapshot index', async (t) => {
  const dir = await scratch(t)
  const { wal } = await Wal.open(dir)
  await wal.save({ entries: [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 1)], hardState: hard(1, 1) })
  await wal.save({ snapshot: { index: 3, term: 2, conf: { voters: ['a'] }, data: encoder.encode('s') }, entries: [entry(4, 2, 'after')], hardState: hard(2, 3) })
  await wal.close()
  const { wal: again, recovered } = await Wal.open(dir)
  await again.close()
  t.equal(recovered.snapshot?.index, 3)
  t.same(summary(recovered.entries), ['4:2:normal:after'], 'the old entry 4 of term 1 is gone')
  t.same(recovered.hardState, hard(2, 3))
})

t.test('an interrupted compaction leaves the old state, and its leftovers are removed', async (t) => {
  const dir = await scratch(t)
  const { wal } = await Wal.open(dir)
  await wal.save({ entries: [entry(1, 1), entry(2, 1)], hardState: hard(1, 2) })
  await wal.close()
  // A snapshot file renamed into place, and the next segment still under its temporary name, when the process died.
  await writeFile(join(dir, 'snap-0000000000000002-0000000000000001.snap'), 'whatever')
  await writeFile(join(dir, '0000000000000002.wal.tmp'), 'half a segment')
  const { wal: again, recovered } = await Wal.open(dir)
  t.same(recovered.entries.map((e) => e.index), [1, 2])
  t.equal(recovered.snapshot, null)
  t.same([...recovered.removedFiles].sort(), ['0000000000000002.wal.tmp', 'snap-0000000000000002-0000000000000001.snap'])
  t.same(await readdir(dir), ['0000000000000001.wal'])
  await again.close()
})

t.test('a missing or damaged snapshot file is corruption', async (t) => {
  const dir = await scratch(t)
  const { wal } = await Wal.open(dir)
  await wal.save({ entries: [entry(1, 1), entry(2, 1)], hardState: hard(1, 2) })
  await wal.compact({ index: 2, term: 1, conf: { voters: ['a'] }, data: encoder.encode('state') }, [])
  await wal.close()
  const snap = join(dir, (await readdir(dir)).find((f) => f.endsWith('.snap'))!)
  const bytes = await readFile(snap)
  bytes[bytes.length - 1]! ^= 1
  await writeFile(snap, bytes)
  await t.rejects(Wal.open(dir), { code: 'RAFT_ERR_WAL_CORRUPT', message: /checksum/ })
  await rm(snap)
  await t.rejects(Wal.open(dir), { code: 'RAFT_ERR_WAL_CORRUPT', message: /missing/ })
})

t.test('entries that do not follow the log are refused; a closed log refuses every write', async (t) => {
  const dir = await scratch(t)
  const { wal } = await Wal.open(dir)
  await wal.save({ entries: [entry(1, 1)] })
  await t.rejects(wal.save({ entries: [entry(3, 1)] }), { code: 'RAFT_ERR_STATE' })
  await wal.save({ entries: [entry(2, 1)] })
  await wal.close()
  await t.rejects(wal.save({ entries: [entry(3, 1)] }), { code: 'RAFT_ERR_CLOSED' })
  await t.rejects(Wal.open(dir, { segmentBytes: 10 }), { code: 'RAFT_ERR_CONFIG' })
})
