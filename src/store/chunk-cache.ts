import { readdirSync, rmSync, statSync } from 'node:fs'
import { mkdir, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Database } from 'better-sqlite3'
import { EdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import { ChunkHandles } from './chunk-handles.js'
import { ChunkPacks, syncDirectory } from './chunk-packs.js'
import { ChunkRows, type Eviction, type PackHole } from './chunk-rows.js'
import type { IndexWorker } from './index-worker.js'
import { isChunkKey } from './names.js'
import { isProcessAlive } from './pins.js'
import type { StateUsers } from './state-users.js'
import type { ChunkCommit, ChunkSlot, UnitDecoded } from './types.js'

const log = moduleLogger('store')

/** Chunk files kept open for reading. */
const MAX_OPEN_FILES = 64
/** Uses are recorded in memory and written to SQLite at most this often (and at close). */
const USE_FLUSH_INTERVAL_MS = 5000
/** Holes punched per round (the rest wait for the next round). */
const HOLES_PER_ROUND = 4096
/**
 * A freed slot is punched only after this long: a reader, in this process or another,
 * may have located the object just before it was evicted (a read plan lives at most
 * `READ_PLAN_TTL_MS` in the scheduler) and still read it. Until then the slot keeps the
 * object's verified bytes, and slots are never handed out twice. Only `cache gc` with no
 * other edgestar process running punches at once.
 */
export const HOLE_GRACE_MS = 60_000
// TODO(store): while another process keeps the cache open, space freed faster than the
// grace lets it go is held: a gc every 0.3 s beside a pull loop held 3.5 GB of holes over
// 157 MB present (H31), and the cache limit counts present chunks only. A pack's apparent
// size only grows (slots are never reused): sparse, but `ls` and plain copies show it.
/**
 * How often an open cache punches the slots whose grace ran out, whoever freed them (this
 * process, or a `cache gc` run beside it, which leaves its slots to whoever still runs).
 */
const HOLE_SWEEP_MS = HOLE_GRACE_MS / 2

/** Result of `reconcile`: what start-up found and fixed. */
export interface ReconcileReport {
  /** Rows marked present whose file was missing or of the wrong size (now missing). */
  rowsMarkedMissing: number
  /** Files in the cache directory with no present row (removed). */
  strayFilesRemoved: number
  /** Leftover temporary files of interrupted writes (removed). */
  tmpFilesRemoved: number
  /** Present rows whose pack file was missing or too short (now missing). */
  packRowsMarkedMissing?: number
  /** Slots reserved by processes killed before they committed them (now freed). */
  deadReservationsFreed?: number
}

/** Cache usage, for `edgestar cache status`. */
export interface CacheStatus {
  presentChunks: number
  presentBytes: number
  pinnedBytes: number
  limitBytes: number
  /** Disk space the pack files take (their allocated blocks, holes not counted). */
  packDiskBytes?: number
  /** Space of freed slots still to be punched out of the packs. */
  holeBytes?: number
}

/** Result of a garbage collection. */
export interface GcReport {
  evictedChunks: number
  evictedBytes: number
  presentBytes: number
  limitBytes: number
  /**
   * Disk space of evicted objects not yet returned (`gc` only): another edgestar process
   * is running and may still be reading them; an open cache punches them once their grace
   * (`HOLE_GRACE_MS`) ran out, within two minutes.
   */
  spaceReturnedLaterBytes?: number
}

/** One chunk for `ChunkCache.writeMany`: verified bytes and what its unit taught. */
export interface ChunkWrite {
  key: string
  data: Buffer
  /** Recorded in the same durable transaction that marks the chunk present. */
  unit?: UnitDecoded
}

/** A chunk object's row as `ChunkCache.locate` finds it. */
interface Located {
  slot: ChunkSlot
}

/** Bookkeeping `ChunkCache.adopt` commits with the object (see `ChunkCommit`). */
export type ChunkBookkeeping = Pick<ChunkCommit, 'units' | 'layerStates'>

/**
 * The content-addressed chunk cache, indexed by the `chunks` table. Decoded chunk objects
 * live in slots of a pack file per layer (`ChunkPacks`): a batch reserves fresh slots
 * (a durable transaction), is written and fdatasynced, and only then are its rows marked
 * present with their slots in another durable (synchronous=FULL) transaction, so a crash
 * at any point leaves either no present row or a complete object. A slot is never reused;
 * a freed one is punched out of its file. Objects too big for memory (whole plain layers,
 * `adopt`) and those of older caches are files of their own, `STATE/chunks/XX/KEY`, whose
 * rows have no slot. Keys come from `chunkKey` and are checked again before use as a path.
 * The writes made while serving (commits, uses, a file found gone) go to the store's
 * writer thread: its fsync of the WAL never holds up the event loop that serves FUSE.
 */
export class ChunkCache {
  readonly dir: string
  private readonly tmpDir: string
  private tmpCounter = 0
  private readonly handles = new ChunkHandles(MAX_OPEN_FILES)
  private readonly pendingUses = new Map<string, number>()
  private readonly rows: ChunkRows
  private readonly packs: ChunkPacks
  private punching: Promise<void> | undefined
  private readonly sweepTimer: NodeJS.Timeout
  private readonly freedListeners = new Set<() => void>()
  private useFlushTimer: NodeJS.Timeout | undefined
  limitBytes: number

  constructor(
    private readonly db: Database,
    dir: string,
    limitBytes: number,
    private readonly durably: <T>(fn: () => T) => T,
    private readonly writer: IndexWorker,
    private readonly reader: IndexWorker,
    private readonly users: Pick<StateUsers, 'hasOthersSync'>,
  ) {
    this.dir = dir
    this.tmpDir = join(dir, 'tmp')
    this.limitBytes = limitBytes
    this.rows = new ChunkRows(db)
    this.packs = new ChunkPacks(dir)
    this.sweepTimer = setInterval(() => this.punchQuietly(), HOLE_SWEEP_MS)
    this.sweepTimer.unref()
  }

  /** File path of a chunk object. Throws on a key that is not a well-formed chunk key. */
  pathOf(key: string): string {
    if (!isChunkKey(key)) throw new Error(`not a chunk key: ${key}`)
    const prefix = key.startsWith('sha256-') ? key.slice(7, 9) : key.slice(2, 4)
    return join(this.dir, prefix, key)
  }

  /** True when the chunk object is present. */
  has(key: string): boolean {
    const row = this.db.prepare('SELECT state FROM chunks WHERE key = ?').get(key) as
      | { state: string }
      | undefined
    return row?.state === 'present'
  }

  /**
   * Stores a verified chunk object durably and marks it present. The caller has already
   * verified `data` (the cache never stores unverified chunk data for lazy layers).
   * `unit` is recorded in the same durable transaction. Rejects with the store thread's
   * codes (EDGESTAR_STORE_QUERY_FAILED, EDGESTAR_STORE_DISK_FULL, EDGESTAR_STORE_CLOSED)
   * when a step fails: the slot then has no present row, and is freed (at once after a
   * failed write, at the next start-up after a failed commit).
   */
  async write(key: string, data: Buffer, unit?: UnitDecoded): Promise<void> {
    await this.writeMany([{ key, data, ...(unit ? { unit } : {}) }])
  }

  /**
   * `write` for several chunks at once, with the same guarantees: one reservation of
   * slots, one fdatasync per pack, then one durable transaction marks them all present, so
   * a batch costs a few disk flushes instead of some per chunk. Both transactions run in
   * the writer thread; this resolves once the second is committed.
   */
  async writeMany(items: ChunkWrite[]): Promise<void> {
    if (items.length === 0) return
    for (const item of items) this.pathOf(item.key)
    const requests = items.map((item) => ({
      pack: this.packs.packFor(item.unit?.layerDigest),
      sizeBytes: item.data.length,
    }))
    const offsets = await this.writer.call<number[]>('reserveSlots', [requests])

    const writes = items.map((item, i) => ({
      pack: requests[i]!.pack,
      offset: offsets[i]!,
      data: item.data,
    }))
    try {
      await this.packs.writeDurably(writes)
    } catch (err) {
      // A full disk or an I/O error: what was written of the slots is given back.
      const holes = writes.map((w) => ({
        pack: w.pack,
        offset: w.offset,
        sizeBytes: w.data.length,
      }))
      await this.writer.call('freeUnseenSlots', [holes]).catch(() => {})
      this.punchQuietly()
      throw err
    }

    await this.commit({
      chunks: items.map((item, i) => ({
        key: item.key,
        sizeBytes: item.data.length,
        slot: { pack: requests[i]!.pack, offset: offsets[i]!, size: item.data.length },
      })),
      units: items.flatMap((item) => (item.unit ? [ownTail(item.unit)] : [])),
      atMs: Date.now(),
    })
  }

  // Called only once every file is renamed and its directory synced: a row never points
  // at a file a power cut could take back.
  private commit(commit: ChunkCommit): Promise<void> {
    return this.writer.call<void>('commit', [commit])
  }

  /**
   * A fresh temporary path inside the cache (removed by start-up reconciliation if the
   * process dies), for objects too big to hold in memory; finish with `adopt`.
   */
  async tmpPathFor(key: string): Promise<string> {
    this.pathOf(key)
    await mkdir(this.tmpDir, { recursive: true })
    return join(this.tmpDir, `${key}.${process.pid}.${this.tmpCounter++}`)
  }

  /**
   * Moves a complete, fsynced temporary file from `tmpPathFor` into the cache as `key`
   * and marks it present durably, with `bookkeeping` in the same transaction (in the
   * writer thread). Rejects as `write` does.
   */
  async adopt(
    key: string,
    tmpPath: string,
    sizeBytes: number,
    bookkeeping: ChunkBookkeeping = {},
  ): Promise<void> {
    const path = this.pathOf(key)
    await mkdir(join(path, '..'), { recursive: true })
    await rename(tmpPath, path)
    this.handles.drop(key)
    await syncDirectory(join(path, '..'))
    await this.commit({ chunks: [{ key, sizeBytes }], ...bookkeeping, atMs: Date.now() })
  }

  /**
   * Reads `length` bytes at `offset` of a present chunk object (fewer at its end).
   * Throws EDGESTAR_STORE_CHUNK_MISSING when the file vanished (the row is then reset).
   */
  async read(key: string, offset: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length)
    const bytesRead = await this.readInto(key, offset, buffer, 0, length)
    return bytesRead === length ? buffer : buffer.subarray(0, bytesRead)
  }

  /**
   * `read` into `target` at `targetOffset` (no allocation); resolves with the bytes read.
   * `slot` is where a lookup (`ChunkRef`, `UnitRow`) found the present object; without
   * it the store's reader thread is asked. Files stay open in a small LRU, so a warm read
   * is a single pread off the event loop.
   */
  // TODO(store): bytes are verified when fetched, not when read back: a slot corrupted on
  // disk afterwards is served as it is (so were the per-chunk files before).
  async readInto(
    key: string,
    offset: number,
    target: Buffer,
    targetOffset: number,
    length: number,
    slot?: ChunkSlot,
  ): Promise<number> {
    const where = slot === undefined ? (await this.locate(key)).slot : slot
    if (where !== null) {
      const wanted = Math.max(0, Math.min(length, where.size - offset))
      return this.readPack(key, where, offset, target, targetOffset, wanted)
    }
    const path = this.pathOf(key)
    try {
      return await this.handles.readInto(key, path, offset, target, targetOffset, length)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      throw await this.missingAfter(key, err)
    }
  }

  private async readPack(
    key: string,
    slot: NonNullable<ChunkSlot>,
    offset: number,
    target: Buffer,
    targetOffset: number,
    length: number,
  ): Promise<number> {
    const path = this.packs.pathOf(slot.pack)
    try {
      const position = slot.offset + offset
      return await this.handles.readInto(
        `pack:${slot.pack}`,
        path,
        position,
        target,
        targetOffset,
        length,
      )
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      throw await this.missingAfter(key, err)
    }
  }

  // The object's file is gone: its row is reset, so the next read fetches it again.
  private async missingAfter(key: string, cause: unknown): Promise<EdgestarError> {
    if (this.db.open) await this.forget(key)
    return new EdgestarError('EDGESTAR_STORE_CHUNK_MISSING', `chunk ${key} is not in the cache`, {
      cause,
    })
  }

  // Where a present object is, asked of the reader thread (never SQLite on this thread).
  private async locate(key: string): Promise<Located> {
    const found = await this.reader.call<Located | undefined>('chunkSlot', [key])
    if (found === undefined)
      throw new EdgestarError('EDGESTAR_STORE_CHUNK_MISSING', `chunk ${key} is not in the cache`)
    return found
  }

  /** The whole object; `slot` as for `readInto`. */
  async readAll(key: string, slot?: ChunkSlot): Promise<Buffer> {
    const where = slot === undefined ? (await this.locate(key)).slot : slot
    if (where === null) return readFile(this.pathOf(key))
    const buffer = Buffer.allocUnsafe(where.size)
    const n = await this.readPack(key, where, 0, buffer, 0, where.size)
    if (n === where.size) return buffer
    await this.forget(key)
    throw new EdgestarError('EDGESTAR_STORE_CHUNK_MISSING', `chunk ${key} is cut short in its pack`)
  }

  /**
   * Records a use for LRU eviction. Kept in memory and written in one transaction at most
   * every few seconds (a read must not write to SQLite); `gc` and `close` flush first.
   */
  touch(key: string): void {
    this.pendingUses.set(key, Date.now())
    if (this.useFlushTimer !== undefined) return
    this.useFlushTimer = setTimeout(() => {
      this.useFlushTimer = undefined
      const uses = this.takeUses()
      if (uses.length === 0) return
      // Not durable: a use lost with a failed write only blurs LRU order.
      this.writer.call('recordUses', [uses]).catch((err: unknown) => {
        log.debug({ err: String(err), uses: uses.length }, 'chunk uses not recorded')
      })
    }, USE_FLUSH_INTERVAL_MS)
    this.useFlushTimer.unref()
  }

  /**
   * Writes recorded uses to SQLite now, on this thread (for gc and close; not durable:
   * losing them only blurs LRU order).
   */
  flushUses(): void {
    clearTimeout(this.useFlushTimer)
    this.useFlushTimer = undefined
    if (!this.db.open) return
    const uses = this.takeUses()
    if (uses.length > 0) this.db.transaction(() => this.rows.used(uses))()
  }

  private takeUses(): [string, number][] {
    const uses = [...this.pendingUses]
    this.pendingUses.clear()
    return uses
  }

  /** Flushes recorded uses and closes open chunk files; call before closing the database. */
  close(): void {
    this.flushUses()
    clearInterval(this.sweepTimer)
    this.handles.dropAll()
  }

  /**
   * Forgets a chunk object a read found gone or cut short: the file (if it has one) is
   * removed asynchronously and the row marked missing durably in the writer thread.
   */
  async forget(key: string): Promise<void> {
    const path = this.pathOf(key)
    this.pendingUses.delete(key)
    this.handles.drop(key)
    // File first: while the row still says present nothing fetches the chunk again, so no
    // newer file can be removed by mistake. A crash in between leaves a present row
    // without a file, which start-up reconciliation marks missing.
    await rm(path, { force: true })
    await this.writer.call('markMissing', [[key]])
    this.objectsFreed()
    this.punchQuietly()
  }

  /**
   * After layer `layerDigest` failed its diffID check: marks it failed, forgets what
   * fetches learned about its units and marks the objects no chunk digest vouches for (gap
   * units, objects of layers without chunk digests) missing, in one durable transaction in
   * the writer thread; then removes their files (rows first, as `gc`). Rejects as `write`.
   */
  async dropUnverified(layerDigest: string): Promise<void> {
    const keys = await this.writer.call<string[]>('failLayer', [layerDigest])
    for (const key of keys) {
      this.pendingUses.delete(key)
      this.handles.drop(key)
    }
    await Promise.all(keys.map((key) => rm(this.pathOf(key), { force: true })))
    this.objectsFreed()
    this.punchQuietly()
  }

  /** Cache usage; `pinnedKeysSql` selects the keys held by mounted images. */
  status(pinnedKeysSql: string): CacheStatus {
    const usage = this.rows.usage(pinnedKeysSql)
    return {
      ...usage,
      limitBytes: this.limitBytes,
      packDiskBytes: this.packs.allocatedBytes(),
      holeBytes: this.rows.holeBytes(),
    }
  }

  /**
   * Evicts least recently used chunk objects not held by a pinned image until the cache
   * holds at most `targetBytes` (default the limit; with no limit and no target, nothing).
   * Synchronous, on the calling thread: for the CLI; `gcAsync` while serving.
   */
  gc(pinnedKeysSql: string, targetBytes?: number): GcReport {
    this.flushUses()
    // Rows first, then files: a crash in between leaves stray files, which start-up removes.
    const eviction = this.durably(() => this.rows.evict(pinnedKeysSql, this.targetOf(targetBytes)))
    for (const key of eviction.victims) {
      this.handles.drop(key)
      rmSync(this.pathOf(key), { force: true })
    }
    if (eviction.victims.length > 0) this.objectsFreed()
    const later = this.punchHolesSync()
    return { ...this.report(eviction), ...(later > 0 ? { spaceReturnedLaterBytes: later } : {}) }
  }

  /**
   * `gc` with its SQL (pins, choice, durable marks) in the writer thread and the files
   * removed asynchronously: nothing of it blocks the event loop. Rejects as `write` does.
   */
  async gcAsync(targetBytes?: number): Promise<GcReport> {
    const uses = this.takeUses()
    clearTimeout(this.useFlushTimer)
    this.useFlushTimer = undefined
    // Sent first, so the writer counts them before it chooses (its answers come in order).
    if (uses.length > 0) void this.writer.call('recordUses', [uses]).catch(() => {})
    const eviction = await this.writer.call<Eviction>('gc', [this.targetOf(targetBytes)])
    for (const key of eviction.victims) this.handles.drop(key)
    await Promise.all(eviction.victims.map((key) => rm(this.pathOf(key), { force: true })))
    if (eviction.victims.length > 0) this.objectsFreed()
    this.punchQuietly()
    return this.report(eviction)
  }

  /**
   * Calls `listener` whenever this process frees objects (evicts or forgets them): whoever
   * remembers where objects are must look again. Returns the function that unsubscribes.
   */
  onObjectsFreed(listener: () => void): () => void {
    this.freedListeners.add(listener)
    return () => this.freedListeners.delete(listener)
  }

  private objectsFreed(): void {
    for (const listener of this.freedListeners) listener()
  }

  /**
   * Punches the freed slots recorded in `pack_holes` out of their pack files (rows first,
   * then space: a crash in between leaves holes that the next round punches), off the
   * event loop. One round at a time; resolves when the round ends.
   */
  punchHoles(): Promise<void> {
    this.punching ??= this.punchRound().finally(() => {
      this.punching = undefined
    })
    return this.punching
  }

  // A round in the background, for paths that must not wait on it (a read that found its
  // object gone, a gc while serving): what may go now goes; the sweep takes the rest once
  // its grace has run out.
  private punchQuietly(): void {
    if (!this.db.open) return
    this.punchHoles().catch((err: unknown) => {
      log.debug({ err: String(err) }, 'holes not punched')
    })
  }

  private async punchRound(): Promise<void> {
    const freedBy = Date.now() - HOLE_GRACE_MS
    const holes = await this.reader.call<PackHole[]>('packHoles', [HOLES_PER_ROUND, freedBy])
    if (holes.length === 0) return
    const done = await this.packs.punch(holes)
    if (done.length > 0) await this.writer.call('holesPunched', [done])
  }

  /**
   * `punchHoles` on this thread, blocking: for the CLI and start-up, which read nothing
   * while it runs, so with no other process on the store every hole goes at once.
   * Returns the bytes of freed slots left for later.
   */
  punchHolesSync(): number {
    if (!this.db.open) return 0
    const freedBy = this.users.hasOthersSync() ? Date.now() - HOLE_GRACE_MS : Date.now()
    const holes = this.rows.holes(HOLES_PER_ROUND, freedBy)
    const done = holes.length > 0 ? this.packs.punchSync(holes) : []
    if (done.length > 0) this.durably(() => this.rows.punched(done))
    return this.rows.holeBytes()
  }

  private targetOf(targetBytes: number | undefined): number {
    return targetBytes ?? (this.limitBytes > 0 ? this.limitBytes : Number.POSITIVE_INFINITY)
  }

  private report(eviction: Eviction): GcReport {
    const report = {
      evictedChunks: eviction.victims.length,
      evictedBytes: eviction.evictedBytes,
      presentBytes: eviction.presentBytes,
      limitBytes: this.limitBytes,
    }
    if (report.evictedChunks > 0)
      log.info(
        { evictedChunks: report.evictedChunks, evictedBytes: report.evictedBytes },
        'cache evicted',
      )
    return report
  }

  /**
   * Makes rows and files agree: a present row whose file is missing or has the wrong size
   * becomes missing; files with no present row and leftover temporaries are removed;
   * slots reserved by processes that died before committing them are punched out.
   * Synchronous: runs once at open, before anything is served.
   */
  reconcile(): ReconcileReport {
    const report: ReconcileReport = {
      rowsMarkedMissing: 0,
      strayFilesRemoved: 0,
      tmpFilesRemoved: 0,
    }
    const rows = this.db
      .prepare(
        "SELECT key, size_bytes AS size FROM chunks WHERE state = 'present' AND pack IS NULL",
      )
      .all() as {
      key: string
      size: number
    }[]
    const sizes = new Map(rows.map((row) => [row.key, row.size]))

    const bad: string[] = []
    for (const [key, size] of sizes) {
      const actual = fileSize(this.pathOf(key))
      if (actual !== size) bad.push(key)
    }
    this.durably(() => this.rows.missing(bad))
    for (const key of bad) {
      sizes.delete(key)
      rmSync(this.pathOf(key), { force: true })
    }
    report.rowsMarkedMissing = bad.length

    const cutShort = this.packRowsCutShort()
    this.durably(() => this.rows.missing(cutShort))
    if (cutShort.length > 0) report.packRowsMarkedMissing = cutShort.length

    for (const sub of safeReaddir(this.dir)) {
      if (sub === 'packs') continue
      if (sub === 'tmp') {
        for (const name of safeReaddir(this.tmpDir)) {
          rmSync(join(this.tmpDir, name), { force: true, recursive: true })
          report.tmpFilesRemoved++
        }
        continue
      }
      const subDir = join(this.dir, sub)
      for (const name of safeReaddir(subDir)) {
        if (isChunkKey(name) && sizes.has(name) && this.pathOf(name) === join(subDir, name))
          continue
        rmSync(join(subDir, name), { force: true, recursive: true })
        report.strayFilesRemoved++
      }
      // Chunks of older caches had a directory per key prefix; new ones go to packs.
      if (safeReaddir(subDir).length === 0) rmSync(subDir, { force: true, recursive: true })
    }
    const released = this.durably(() => this.rows.releaseDeadReservations(isProcessAlive))
    if (released > 0) report.deadReservationsFreed = released
    this.punchHolesSync()
    const fixed = report.rowsMarkedMissing + report.strayFilesRemoved + report.tmpFilesRemoved
    const packFixed = (report.packRowsMarkedMissing ?? 0) + released
    if (fixed + packFixed > 0) log.warn({ ...report }, 'cache reconciled')
    return report
  }

  // Present objects whose pack file is gone or ends before their slot does (a pack cut
  // short by hand, or a disk restored from an older copy).
  private packRowsCutShort(): string[] {
    const rows = this.db
      .prepare(
        `SELECT key, pack, pack_offset + size_bytes AS end FROM chunks
         WHERE state = 'present' AND pack IS NOT NULL`,
      )
      .all() as { key: string; pack: string; end: number }[]
    const packSizes = new Map<string, number | null>()
    const cut: string[] = []
    for (const row of rows) {
      if (!packSizes.has(row.pack))
        packSizes.set(
          row.pack,
          this.packs.isPackName(row.pack) ? fileSize(this.packs.pathOf(row.pack)) : null,
        )
      const size = packSizes.get(row.pack)
      if (size === null || size === undefined || size < row.end) cut.push(row.key)
    }
    return cut
  }
}

// A tail is usually a view into the whole decoded unit, and a view crosses to the writer
// thread with all of the memory under it (megabytes per unit): send a copy of its bytes.
function ownTail(unit: UnitDecoded): UnitDecoded {
  return unit.tail === null ? unit : { ...unit, tail: Buffer.from(unit.tail) }
}

function fileSize(path: string): number | null {
  try {
    const stat = statSync(path)
    return stat.isFile() ? stat.size : null
  } catch {
    return null
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir)
  } catch {
    return []
  }
}
