import { readdirSync, rmSync, statSync } from 'node:fs'
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Database } from 'better-sqlite3'
import { EdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import { ChunkHandles } from './chunk-handles.js'
import { ChunkRows, type Eviction } from './chunk-rows.js'
import type { IndexWorker } from './index-worker.js'
import { isChunkKey } from './names.js'
import type { ChunkCommit, UnitDecoded } from './types.js'

const log = moduleLogger('store')

/** Chunk files kept open for reading. */
const MAX_OPEN_FILES = 64
/** Uses are recorded in memory and written to SQLite at most this often (and at close). */
const USE_FLUSH_INTERVAL_MS = 5000

/** Result of `reconcile`: what start-up found and fixed. */
export interface ReconcileReport {
  /** Rows marked present whose file was missing or of the wrong size (now missing). */
  rowsMarkedMissing: number
  /** Files in the cache directory with no present row (removed). */
  strayFilesRemoved: number
  /** Leftover temporary files of interrupted writes (removed). */
  tmpFilesRemoved: number
}

/** Cache usage, for `edgestar cache status`. */
export interface CacheStatus {
  presentChunks: number
  presentBytes: number
  pinnedBytes: number
  limitBytes: number
}

/** Result of a garbage collection. */
export interface GcReport {
  evictedChunks: number
  evictedBytes: number
  presentBytes: number
  limitBytes: number
}

/** One chunk for `ChunkCache.writeMany`: verified bytes and what its unit taught. */
export interface ChunkWrite {
  key: string
  data: Buffer
  /** Recorded in the same durable transaction that marks the chunk present. */
  unit?: UnitDecoded
}

/** Bookkeeping `ChunkCache.adopt` commits with the object (see `ChunkCommit`). */
export type ChunkBookkeeping = Pick<ChunkCommit, 'units' | 'layerStates'>

/**
 * The content-addressed chunk cache: decoded chunk objects as files under
 * `STATE/chunks/XX/KEY`, indexed by the `chunks` table. A write goes to a temporary file,
 * is fsynced and renamed, and only then is the row marked present in a durable
 * (synchronous=FULL) transaction, so a crash at any point leaves either no row or a
 * complete file. Keys come from `chunkKey` and are checked again before use as a path.
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
  private useFlushTimer: NodeJS.Timeout | undefined
  limitBytes: number

  constructor(
    private readonly db: Database,
    dir: string,
    limitBytes: number,
    private readonly durably: <T>(fn: () => T) => T,
    private readonly writer: IndexWorker,
  ) {
    this.dir = dir
    this.tmpDir = join(dir, 'tmp')
    this.limitBytes = limitBytes
    this.rows = new ChunkRows(db)
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
   * codes (EDGESTAR_STORE_QUERY_FAILED, EDGESTAR_STORE_CLOSED) when the commit fails: the
   * file then has no row, and start-up reconciliation removes it.
   */
  async write(key: string, data: Buffer, unit?: UnitDecoded): Promise<void> {
    await this.writeMany([{ key, data, ...(unit ? { unit } : {}) }])
  }

  /**
   * `write` for several chunks at once, with the same guarantees: every file is fsynced
   * and renamed before one durable transaction marks them all present. The files are
   * synced in parallel and each directory once, so a batch costs about one disk flush
   * instead of three per chunk (a full pull of a 60 MB layer went from minutes to seconds).
   * The transaction runs in the writer thread; this resolves once it is committed.
   */
  async writeMany(items: ChunkWrite[]): Promise<void> {
    if (items.length === 0) return
    await mkdir(this.tmpDir, { recursive: true })
    const placed = await Promise.all(items.map((item) => this.writeTemporary(item)))

    const dirs = new Set<string>()
    for (const [i, { tmp, path }] of placed.entries()) {
      await rename(tmp, path)
      this.handles.drop(items[i]!.key)
      dirs.add(join(path, '..'))
    }
    await Promise.all([...dirs].map((dir) => syncDir(dir)))

    await this.commit({
      chunks: items.map((item) => ({ key: item.key, sizeBytes: item.data.length })),
      units: items.flatMap((item) => (item.unit ? [ownTail(item.unit)] : [])),
      atMs: Date.now(),
    })
  }

  // Called only once every file is renamed and its directory synced: a row never points
  // at a file a power cut could take back.
  private commit(commit: ChunkCommit): Promise<void> {
    return this.writer.call<void>('commit', [commit])
  }

  private async writeTemporary(item: ChunkWrite): Promise<{ tmp: string; path: string }> {
    const path = this.pathOf(item.key)
    await mkdir(join(path, '..'), { recursive: true })
    const tmp = join(this.tmpDir, `${item.key}.${process.pid}.${this.tmpCounter++}`)
    const handle = await open(tmp, 'w')
    try {
      await handle.writeFile(item.data)
      await handle.sync()
    } finally {
      await handle.close()
    }
    return { tmp, path }
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
    await syncDir(join(path, '..'))
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
   * Files stay open in a small LRU, so a warm read is a single pread off the event loop.
   */
  async readInto(
    key: string,
    offset: number,
    target: Buffer,
    targetOffset: number,
    length: number,
  ): Promise<number> {
    const path = this.pathOf(key)
    try {
      return await this.handles.readInto(key, path, offset, target, targetOffset, length)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      if (this.db.open) await this.forget(key)
      throw new EdgestarError('EDGESTAR_STORE_CHUNK_MISSING', `chunk ${key} is not in the cache`, {
        cause: err,
      })
    }
  }

  /** The whole object. */
  async readAll(key: string): Promise<Buffer> {
    return readFile(this.pathOf(key))
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
    this.handles.dropAll()
  }

  /** Forgets a chunk object (row missing, file removed), on this thread. */
  markMissing(key: string): void {
    this.durably(() => this.rows.missing([key]))
    this.pendingUses.delete(key)
    this.handles.drop(key)
    rmSync(this.pathOf(key), { force: true })
  }

  /**
   * `markMissing` for the read path: the file is removed asynchronously and the row
   * updated durably in the writer thread.
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
  }

  /** Cache usage; `pinnedKeysSql` selects the keys held by mounted images. */
  status(pinnedKeysSql: string): CacheStatus {
    return { ...this.rows.usage(pinnedKeysSql), limitBytes: this.limitBytes }
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
    return this.report(eviction)
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
    return this.report(eviction)
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
   * becomes missing; files with no present row and leftover temporaries are removed.
   * Synchronous: runs once at open, before anything is served.
   */
  reconcile(): ReconcileReport {
    const report: ReconcileReport = {
      rowsMarkedMissing: 0,
      strayFilesRemoved: 0,
      tmpFilesRemoved: 0,
    }
    const rows = this.db
      .prepare("SELECT key, size_bytes AS size FROM chunks WHERE state = 'present'")
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

    for (const sub of safeReaddir(this.dir)) {
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
    }
    if (report.rowsMarkedMissing + report.strayFilesRemoved + report.tmpFilesRemoved > 0)
      log.warn({ ...report }, 'cache reconciled')
    return report
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

// A rename is durable only once its directory entry is on disk (ext4 without auto_da_alloc).
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
