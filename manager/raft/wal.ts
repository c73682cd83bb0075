/**
 * The write-ahead log: what makes "acknowledged" mean durable. Every save()
 * writes its records in one write and fdatasyncs before it resolves, so a
 * member never sends a vote or an acknowledgement, nor applies an entry, that
 * a crash could take back.
 *
 * On disk, in one directory:
 *   <seq, 16 hex>.wal                  segments, replayed in order
 *   snap-<index>-<term>.snap           snapshots (16 hex each), written atomically
 *
 * A segment is a sequence of records, each
 *   u32 length | u32 crc32(length) | u32 crc32(payload) | payload
 * and a payload is one of (integers big-endian, u64 as two u32)
 *   1 entry      index u64, term u64, kind u8 (0 normal, 1 config, 2 noop), data
 *   2 hard state term u64, commit u64, vote (UTF-8, empty for none)
 *   3 snapshot   index u64, term u64: the log restarts after this snapshot
 * Replay rules: an entry at an index the log already holds truncates the log
 * there (a follower overwriting a conflicting suffix writes just the new
 * entries); the last hard state wins; a snapshot record empties the log.
 *
 * A snapshot (received, or taken by compaction) is written to its own file
 * (tmp, fsync, rename, fsync directory), then a new segment is started with
 * the snapshot record, the hard state and the entries kept after it, so the
 * new segment alone rebuilds the state and every older segment and snapshot
 * can be deleted. A crash anywhere in between leaves either the old state or
 * the new one.
 *
 * Recovery tolerates a torn tail, which is what a crash (SIGKILL, power loss)
 * mid-write leaves in the last segment: a record cut short, a zero-filled
 * tail, or a last record whose payload checksum fails. It is dropped and the
 * file truncated (nothing in it was acknowledged: save() had not returned).
 * Any other damage (a bad checksum with good records after it, a gap in the
 * indexes, a missing snapshot file) is RAFT_ERR_WAL_CORRUPT: that is lost
 * data, not an interrupted write, and is not papered over.
 */
import { mkdir, open, readdir, readFile, rename, rm, type FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { crc32 } from 'node:zlib'
import { RaftError } from './errors.ts'
import type { Entry, HardState, PersistedState, Snapshot } from './types.ts'

export interface WalOptions {
  /** A segment that has grown past this many bytes is closed and a new one started. Default 64 MiB. */
  readonly segmentBytes?: number
}

export interface WalRecovery extends PersistedState {
  /** Bytes of a torn tail dropped from the last segment (0 when it ended cleanly), for the log. */
  readonly tornBytes: number
  /** Segments and snapshots left behind by an interrupted compaction, deleted now. */
  readonly removedFiles: readonly string[]
}

export interface WalBatch {
  /** Received from the leader: replaces the log. Written before `entries`. */
  readonly snapshot?: Snapshot | null
  readonly entries?: readonly Entry[]
  readonly hardState?: HardState | null
}

const HEADER = 12
const MAX_RECORD = 1 << 30
const KINDS = ['normal', 'config', 'noop'] as const
const RECORD_ENTRY = 1
const RECORD_HARD_STATE = 2
const RECORD_SNAPSHOT = 3
const SNAPSHOT_MAGIC = Buffer.from('WEFTSNP1')
const SEGMENT = /^([0-9a-f]{16})\.wal$/
const SNAPSHOT_FILE = /^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$/
const EMPTY_HARD_STATE: HardState = { term: 0, vote: null, commit: 0 }

export class Wal {
  readonly #dir: string
  readonly #segmentBytes: number
  #file: FileHandle
  #seq: number
  #size: number
  #snapshotIndex: number
  #lastIndex: number
  #hardState: HardState
  #failed: Error | null = null
  #queue: Promise<unknown> = Promise.resolve()

  private constructor (dir: string, segmentBytes: number, file: FileHandle, seq: number, size: number, state: PersistedState) {
    this.#dir = dir
    this.#segmentBytes = segmentBytes
    this.#file = file
    this.#seq = seq
    this.#size = size
    this.#snapshotIndex = state.snapshot?.index ?? 0
    this.#lastIndex = state.entries.at(-1)?.index ?? this.#snapshotIndex
    this.#hardState = state.hardState
  }

  /** Opens (creating if need be) the log in `dir` and reads back what it holds. */
  static async open (dir: string, options: WalOptions = {}): Promise<{ wal: Wal, recovered: WalRecovery }> {
    const segmentBytes = options.segmentBytes ?? 64 << 20
    if (!(Number.isInteger(segmentBytes) && segmentBytes >= 4096)) throw new RaftError('RAFT_ERR_CONFIG', 'segmentBytes: must be an integer ≥ 4096')
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const { state, segments, tornBytes, validLength, obsolete } = await replay(dir)
    // Finish whatever an interrupted compaction left: older segments, other snapshots, temporary files.
    for (const name of obsolete) await rm(join(dir, name), { force: true })
    const live = segments.filter((name) => !obsolete.includes(name))
    let file: FileHandle
    let seq: number
    let size: number
    if (live.length === 0) {
      seq = 1
      file = await open(join(dir, segmentName(seq)), 'w', 0o600)
      size = 0
      await syncDirectory(dir)
    } else {
      const name = live.at(-1)!
      seq = parseInt(SEGMENT.exec(name)![1]!, 16)
      file = await open(join(dir, name), 'r+')
      size = validLength
      if (tornBytes > 0) {
        // Cut the torn tail now, so the next record follows the last good one.
        await file.truncate(validLength)
        await file.sync()
      }
    }
    const wal = new Wal(dir, segmentBytes, file, seq, size, state)
    return { wal, recovered: { ...state, tornBytes, removedFiles: obsolete } }
  }

  /** Reads the log in `dir` as open() would, changing nothing on disk (for inspection). */
  static async inspect (dir: string): Promise<WalRecovery & { readonly segments: readonly string[] }> {
    const { state, segments, tornBytes, obsolete } = await replay(dir)
    return { ...state, tornBytes, removedFiles: obsolete, segments }
  }

  get lastIndex (): number { return this.#lastIndex }
  get snapshotIndex (): number { return this.#snapshotIndex }

  /**
   * Persists a ready()'s snapshot, entries and hard state, in that order, and
   * returns once they are on disk. Entries whose index the log already holds
   * replace the log from there on.
   */
  save (batch: WalBatch): Promise<void> {
    return this.#serialized(async () => {
      const snapshot = batch.snapshot ?? null
      const entries = batch.entries ?? []
      const hardState = batch.hardState ?? null
      if (snapshot !== null) {
        await this.#restartAfter(snapshot, [], hardState ?? this.#hardState)
      }
      if (entries.length === 0 && (hardState === null || snapshot !== null)) return
      const first = entries[0]?.index
      if (first !== undefined && (first <= this.#snapshotIndex || first > this.#lastIndex + 1)) {
        throw new RaftError('RAFT_ERR_STATE', `entries from ${first} do not follow the log (${this.#snapshotIndex + 1}..${this.#lastIndex})`)
      }
      const records = entries.map(encodeEntry)
      if (hardState !== null) records.push(encodeHardState(hardState))
      await this.#append(records)
      if (entries.length > 0) this.#lastIndex = entries.at(-1)!.index
      if (hardState !== null) this.#hardState = hardState
      if (this.#size >= this.#segmentBytes) await this.#rotate()
    })
  }

  /**
   * Records a snapshot taken locally at `snapshot.index` (applied already) and
   * drops what it covers: `kept` are the log's entries after it, rewritten into
   * the new segment.
   */
  compact (snapshot: Snapshot, kept: readonly Entry[]): Promise<void> {
    return this.#serialized(async () => {
      if (snapshot.index <= this.#snapshotIndex || snapshot.index > this.#lastIndex) {
        throw new RaftError('RAFT_ERR_COMPACT', `cannot compact at ${snapshot.index}: the log holds ${this.#snapshotIndex + 1}..${this.#lastIndex}`)
      }
      const expectedLast = kept.at(-1)?.index ?? snapshot.index
      if ((kept.length > 0 && kept[0]!.index !== snapshot.index + 1) || expectedLast !== this.#lastIndex) {
        throw new RaftError('RAFT_ERR_COMPACT', `the entries kept after ${snapshot.index} must run to the last index ${this.#lastIndex}`)
      }
      await this.#restartAfter(snapshot, kept, this.#hardState)
    })
  }

  async close (): Promise<void> {
    await this.#queue.catch(() => {})
    await this.#file.close().catch(() => {})
    this.#failed ??= new RaftError('RAFT_ERR_CLOSED', 'the write-ahead log is closed')
  }

  // Writes and fsyncs one batch of records at the end of the current segment.
  async #append (records: Buffer[]): Promise<void> {
    const buffer = Buffer.concat(records)
    let written = 0
    while (written < buffer.length) {
      const { bytesWritten } = await this.#file.write(buffer, written, buffer.length - written, this.#size + written)
      written += bytesWritten
    }
    await this.#file.datasync()
    this.#size += buffer.length
  }

  async #rotate (): Promise<void> {
    const next = await open(join(this.#dir, segmentName(this.#seq + 1)), 'wx', 0o600)
    await syncDirectory(this.#dir)
    await this.#file.close()
    this.#file = next
    this.#seq++
    this.#size = 0
  }

  /**
   * Snapshot file, then a self-contained segment opening with it, then the old
   * files go. The new segment is written under a temporary name and renamed
   * once complete: a segment that opens with a snapshot record makes every
   * older one obsolete, so it must never exist half-written.
   */
  async #restartAfter (snapshot: Snapshot, kept: readonly Entry[], hardState: HardState): Promise<void> {
    await writeSnapshot(this.#dir, snapshot)
    const buffer = Buffer.concat([encodeSnapshotMark(snapshot), encodeHardState(hardState), ...kept.map(encodeEntry)])
    const oldSeq = this.#seq
    const target = join(this.#dir, segmentName(oldSeq + 1))
    await writeDurably(target, buffer)
    const next = await open(target, 'r+')
    await this.#file.close()
    this.#file = next
    this.#seq = oldSeq + 1
    this.#size = buffer.length
    this.#snapshotIndex = snapshot.index
    this.#lastIndex = kept.at(-1)?.index ?? snapshot.index
    this.#hardState = hardState
    const keep = snapshotName(snapshot.index, snapshot.term)
    for (const name of await readdir(this.#dir)) {
      const segment = SEGMENT.exec(name)
      const obsoleteSegment = segment !== null && parseInt(segment[1]!, 16) <= oldSeq
      if (obsoleteSegment || (SNAPSHOT_FILE.test(name) && name !== keep)) await rm(join(this.#dir, name), { force: true })
    }
  }

  /** One operation at a time, in call order; after a failure nothing more is written (an fsync error cannot be retried safely). */
  #serialized (operation: () => Promise<void>): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.#failed !== null) throw this.#failed
      try {
        await operation()
      } catch (error) {
        if (error instanceof RaftError && (error.code === 'RAFT_ERR_STATE' || error.code === 'RAFT_ERR_COMPACT')) throw error
        this.#failed = new RaftError('RAFT_ERR_STORAGE', `write-ahead log failed: ${(error as Error).message}`)
        this.#failed.cause = error
        throw this.#failed
      }
    }
    const result = this.#queue.then(run)
    this.#queue = result.catch(() => {})
    return result
  }
}

interface Replay {
  readonly state: PersistedState
  readonly segments: readonly string[]
  readonly tornBytes: number
  /** Length of the last segment up to its last whole record. */
  readonly validLength: number
  /** Files an interrupted compaction left behind: segments before the newest self-contained one, other snapshots, temporary files. */
  readonly obsolete: readonly string[]
}

/** Replays every segment in order (see the replay rules at the top), then reads the snapshot the log restarts after. */
async function replay (dir: string): Promise<Replay> {
  const names = await readdir(dir)
  const segments = names.filter((n) => SEGMENT.test(n)).sort()
  let hardState = EMPTY_HARD_STATE
  let mark: { index: number, term: number } | null = null
  let entries: Entry[] = []
  let tornBytes = 0
  let validLength = 0
  let firstNeeded = 0
  for (const [k, name] of segments.entries()) {
    const buffer = await readFile(join(dir, name))
    const scan = scanRecords(buffer, name, k === segments.length - 1)
    tornBytes = scan.tornBytes
    validLength = scan.validLength
    for (const [r, record] of scan.records.entries()) {
      if (record.type === RECORD_SNAPSHOT) {
        if (r === 0) firstNeeded = k // this segment rebuilds everything: the ones before it are obsolete
        mark = { index: record.index, term: record.term }
        entries = []
      } else if (record.type === RECORD_HARD_STATE) {
        hardState = record.hardState
      } else {
        const base = mark?.index ?? 0
        const entry = record.entry
        if (entry.index <= base || entry.index > base + entries.length + 1) {
          throw new RaftError('RAFT_ERR_WAL_CORRUPT', `${name}: entry ${entry.index} does not follow the log (${base + 1}..${base + entries.length})`)
        }
        entries.length = entry.index - base - 1
        entries.push(entry)
      }
    }
  }
  const snapshot = mark === null ? null : await readSnapshot(dir, mark.index, mark.term)
  const keepSnapshot = mark === null ? null : snapshotName(mark.index, mark.term)
  const obsolete = [
    ...segments.slice(0, firstNeeded),
    ...names.filter((name) => (SNAPSHOT_FILE.test(name) && name !== keepSnapshot) || name.endsWith('.tmp'))
  ]
  return { state: { hardState, snapshot, entries }, segments, tornBytes, validLength, obsolete }
}

// ── Records ────────────────────────────────────────────────────────────────

type WalRecord =
  | { type: typeof RECORD_ENTRY, entry: Entry }
  | { type: typeof RECORD_HARD_STATE, hardState: HardState }
  | { type: typeof RECORD_SNAPSHOT, index: number, term: number }

function frame (payload: Buffer): Buffer {
  const record = Buffer.allocUnsafe(HEADER + payload.length)
  record.writeUInt32BE(payload.length, 0)
  record.writeUInt32BE(crc32(record.subarray(0, 4)), 4)
  record.writeUInt32BE(crc32(payload), 8)
  payload.copy(record, HEADER)
  return record
}

function encodeEntry (entry: Entry): Buffer {
  const payload = Buffer.allocUnsafe(18 + entry.data.length)
  payload.writeUInt8(RECORD_ENTRY, 0)
  writeU64(payload, 1, entry.index)
  writeU64(payload, 9, entry.term)
  payload.writeUInt8(KINDS.indexOf(entry.kind), 17)
  payload.set(entry.data, 18)
  return frame(payload)
}

function encodeHardState (hardState: HardState): Buffer {
  const vote = Buffer.from(hardState.vote ?? '', 'utf8')
  const payload = Buffer.allocUnsafe(17 + vote.length)
  payload.writeUInt8(RECORD_HARD_STATE, 0)
  writeU64(payload, 1, hardState.term)
  writeU64(payload, 9, hardState.commit)
  vote.copy(payload, 17)
  return frame(payload)
}

function encodeSnapshotMark (snapshot: Snapshot): Buffer {
  const payload = Buffer.allocUnsafe(17)
  payload.writeUInt8(RECORD_SNAPSHOT, 0)
  writeU64(payload, 1, snapshot.index)
  writeU64(payload, 9, snapshot.term)
  return frame(payload)
}

function decodePayload (payload: Buffer, where: string): WalRecord {
  const type = payload[0]
  if (type === RECORD_ENTRY && payload.length >= 18) {
    const kind = KINDS[payload[17]!]
    if (kind === undefined) throw new RaftError('RAFT_ERR_WAL_CORRUPT', `${where}: unknown entry kind ${payload[17]}`)
    // Copy the data out: the segment buffer is large and should not be kept alive by one entry.
    const data = new Uint8Array(payload.length - 18)
    data.set(payload.subarray(18))
    return { type, entry: { index: readU64(payload, 1), term: readU64(payload, 9), kind, data } }
  }
  if (type === RECORD_HARD_STATE && payload.length >= 17) {
    const vote = payload.toString('utf8', 17)
    return { type, hardState: { term: readU64(payload, 1), commit: readU64(payload, 9), vote: vote === '' ? null : vote } }
  }
  if (type === RECORD_SNAPSHOT && payload.length === 17) {
    return { type, index: readU64(payload, 1), term: readU64(payload, 9) }
  }
  throw new RaftError('RAFT_ERR_WAL_CORRUPT', `${where}: unknown record type ${type} of ${payload.length} bytes`)
}

/**
 * Reads a segment's records. In the last segment, a torn tail (a record cut
 * short, zeros to the end, or a final record failing its payload checksum) ends
 * the scan; anywhere else, damage is corruption.
 */
function scanRecords (buffer: Buffer, name: string, last: boolean): { records: WalRecord[], validLength: number, tornBytes: number } {
  const records: WalRecord[] = []
  let position = 0
  const torn = (): { records: WalRecord[], validLength: number, tornBytes: number } => {
    if (!last) throw new RaftError('RAFT_ERR_WAL_CORRUPT', `${name}: truncated record at byte ${position} in a segment that is not the last`)
    return { records, validLength: position, tornBytes: buffer.length - position }
  }
  while (position < buffer.length) {
    if (buffer.length - position < HEADER) return torn()
    const length = buffer.readUInt32BE(position)
    if (buffer.readUInt32BE(position + 4) !== crc32(buffer.subarray(position, position + 4)) || length > MAX_RECORD || length === 0) {
      if (allZero(buffer, position)) return torn()
      throw new RaftError('RAFT_ERR_WAL_CORRUPT', `${name}: bad record header at byte ${position}`)
    }
    const end = position + HEADER + length
    if (end > buffer.length) return torn()
    const payload = buffer.subarray(position + HEADER, end)
    if (buffer.readUInt32BE(position + 8) !== crc32(payload)) {
      if (end === buffer.length || allZero(buffer, end)) return torn()
      throw new RaftError('RAFT_ERR_WAL_CORRUPT', `${name}: checksum mismatch in the record at byte ${position}, with records after it`)
    }
    records.push(decodePayload(payload, `${name} byte ${position}`))
    position = end
  }
  return { records, validLength: position, tornBytes: 0 }
}

function allZero (buffer: Buffer, from: number): boolean {
  for (let i = from; i < buffer.length; i++) if (buffer[i] !== 0) return false
  return true
}

function writeU64 (buffer: Buffer, offset: number, value: number): void {
  buffer.writeUInt32BE(Math.floor(value / 0x1_0000_0000), offset)
  buffer.writeUInt32BE(value >>> 0, offset + 4)
}

function readU64 (buffer: Buffer, offset: number): number {
  return buffer.readUInt32BE(offset) * 0x1_0000_0000 + buffer.readUInt32BE(offset + 4)
}

// ── Files ──────────────────────────────────────────────────────────────────

function segmentName (seq: number): string {
  return `${seq.toString(16).padStart(16, '0')}.wal`
}

function snapshotName (index: number, term: number): string {
  return `snap-${index.toString(16).padStart(16, '0')}-${term.toString(16).padStart(16, '0')}.snap`
}

/** magic | u32 crc32(body) | body = u32 meta length | meta JSON {index, term, conf} | data */
async function writeSnapshot (dir: string, snapshot: Snapshot): Promise<void> {
  const meta = Buffer.from(JSON.stringify({ index: snapshot.index, term: snapshot.term, conf: snapshot.conf }), 'utf8')
  const body = Buffer.allocUnsafe(4 + meta.length + snapshot.data.length)
  body.writeUInt32BE(meta.length, 0)
  meta.copy(body, 4)
  body.set(snapshot.data, 4 + meta.length)
  const head = Buffer.allocUnsafe(SNAPSHOT_MAGIC.length + 4)
  SNAPSHOT_MAGIC.copy(head, 0)
  head.writeUInt32BE(crc32(body), SNAPSHOT_MAGIC.length)
  await writeDurably(join(dir, snapshotName(snapshot.index, snapshot.term)), Buffer.concat([head, body]))
}

async function readSnapshot (dir: string, index: number, term: number): Promise<Snapshot> {
  const name = snapshotName(index, term)
  let buffer: Buffer
  try {
    buffer = await readFile(join(dir, name))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new RaftError('RAFT_ERR_WAL_CORRUPT', `the log restarts after snapshot ${index} (term ${term}) but ${name} is missing`)
    throw error
  }
  const bodyAt = SNAPSHOT_MAGIC.length + 4
  if (buffer.length < bodyAt + 4 || !buffer.subarray(0, SNAPSHOT_MAGIC.length).equals(SNAPSHOT_MAGIC)) throw new RaftError('RAFT_ERR_WAL_CORRUPT', `${name} is not a snapshot`)
  const body = buffer.subarray(bodyAt)
  if (buffer.readUInt32BE(SNAPSHOT_MAGIC.length) !== crc32(body)) throw new RaftError('RAFT_ERR_WAL_CORRUPT', `${name}: checksum mismatch`)
  const metaLength = body.readUInt32BE(0)
  let meta: Omit<Snapshot, 'data'>
  try {
    meta = JSON.parse(body.toString('utf8', 4, 4 + metaLength)) as Omit<Snapshot, 'data'>
  } catch {
    throw new RaftError('RAFT_ERR_WAL_CORRUPT', `${name}: unreadable header`)
  }
  if (meta.index !== index || meta.term !== term) throw new RaftError('RAFT_ERR_WAL_CORRUPT', `${name} holds snapshot ${meta.index} (term ${meta.term})`)
  const data = new Uint8Array(body.length - 4 - metaLength)
  data.set(body.subarray(4 + metaLength))
  return { index, term, conf: { voters: [...meta.conf.voters] }, data }
}

/** Writes a whole file so that it appears complete or not at all: tmp, fsync, rename, fsync the directory. */
async function writeDurably (target: string, buffer: Buffer): Promise<void> {
  const temporary = `${target}.tmp`
  const file = await open(temporary, 'w', 0o600)
  try {
    await file.writeFile(buffer)
    await file.sync()
  } finally {
    await file.close()
  }
  await rename(temporary, target)
  await syncDirectory(dirname(target))
}

/** Makes a file's creation, rename or removal in `dir` durable. */
async function syncDirectory (dir: string): Promise<void> {
  const directory = await open(dir, 'r')
  try { await directory.sync() } finally { await directory.close() }
}
