import { readdirSync, rmSync, statSync } from 'node:fs'
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import type { Database } from 'better-sqlite3'
import { EdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import { ChunkHandles } from './chunk-handles.js'
import { isChunkKey } from './names.js'

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

/** One chunk for `ChunkCache.writeMany`: verified bytes and bookkeeping for the same commit. */
export interface ChunkWrite {
  key: string
  data: Buffer
  alsoInCommit?: () => void
}

/**
 * The content-addressed chunk cache: decoded chunk objects as files under
 * `STATE/chunks/XX/KEY`, indexed by the `chunks` table. A write goes to a temporary file,
 * is fsynced and renamed, and only then is the row marked present in a durable
 * (synchronous=FULL) transaction, so a crash at any point leaves either no row or a
 * complete file. Keys come from `chunkKey` and are checked again before use as a path.
 */
export class ChunkCache {
  readonly dir: string
  private readonly tmpDir: string
  private tmpCounter = 0
  private readonly handles = new ChunkHandles(MAX_OPEN_FILES)
  private readonly pendingUses = new Map<string, number>()
  private useFlushTimer: NodeJS.Timeout | undefined
  limitBytes: number

  constructor(
    private readonly db: Database,
    dir: string,
    limitBytes: number,
    private readonly durably: <T>(fn: () => T) => T,
  ) {
    this.dir = dir
    this.tmpDir = join(dir, 'tmp')
    this.limitBytes = limitBytes
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
   * `alsoInCommit` runs inside the same durable transaction (unit bookkeeping).
   */
  async write(key: string, data: Buffer, alsoInCommit?: () => void): Promise<void> {
    await this.writeMany([{ key, data, ...(alsoInCommit ? { alsoInCommit } : {}) }])
  }

  /**
   * `write` for several chunks at once, with the same guarantees: every file is fsynced
   * and renamed before one durable transaction marks them all present. The files are
   * synced in parallel and each directory once, so a batch costs about one disk flush
   * instead of three per chunk (a full pull of a 60 MB layer went from minutes to seconds).
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

    const now = Date.now()
    // TODO(store): this commit (synchronous=FULL, so an fsync of the WAL) runs on the
    // process's event loop, which also serves FUSE: measured over a 62 MB pull, 277 commits
    // of 1.4 ms median, 4.2 ms p90, 10.5 ms at most, during which a read of cached data
    // waits. Moving writes to a worker's own connection would free the loop.
    this.durably(() => {
      const markPresent = this.db.prepare(
        `INSERT INTO chunks (key, size_bytes, state, last_used_at) VALUES (?, ?, 'present', ?)
         ON CONFLICT(key) DO UPDATE SET size_bytes = excluded.size_bytes, state = 'present',
           last_used_at = excluded.last_used_at`,
      )
      for (const item of items) {
        markPresent.run(item.key, item.data.length, now)
        item.alsoInCommit?.()
      }
    })
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
   * and marks it present durably (with `alsoInCommit` in the same transaction).
   */
  async adopt(
    key: string,
    tmpPath: string,
    sizeBytes: number,
    alsoInCommit?: () => void,
  ): Promise<void> {
    const path = this.pathOf(key)
    await mkdir(join(path, '..'), { recursive: true })
    await rename(tmpPath, path)
    this.handles.drop(key)
    await syncDir(join(path, '..'))
    this.durably(() => {
      this.db
        .prepare(
          `INSERT INTO chunks (key, size_bytes, state, last_used_at) VALUES (?, ?, 'present', ?)
           ON CONFLICT(key) DO UPDATE SET size_bytes = excluded.size_bytes, state = 'present', last_used_at = excluded.last_used_at`,
        )
        .run(key, sizeBytes, Date.now())
      alsoInCommit?.()
    })
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
      if (this.db.open) this.markMissing(key)
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
      this.flushUses()
    }, USE_FLUSH_INTERVAL_MS)
    this.useFlushTimer.unref()
  }

  /** Writes recorded uses to SQLite now (not durable: losing them only blurs LRU order). */
  flushUses(): void {
    clearTimeout(this.useFlushTimer)
    this.useFlushTimer = undefined
    if (this.pendingUses.size === 0 || !this.db.open) return
    const uses = [...this.pendingUses]
    this.pendingUses.clear()
    const update = this.db.prepare('UPDATE chunks SET last_used_at = ? WHERE key = ?')
    this.db.transaction(() => {
      for (const [key, at] of uses) update.run(at, key)
    })()
  }

  /** Flushes recorded uses and closes open chunk files; call before closing the database. */
  close(): void {
    this.flushUses()
    this.handles.dropAll()
  }

  /** Forgets a chunk object (row missing, file removed). */
  markMissing(key: string): void {
    this.durably(() =>
      this.db.prepare("UPDATE chunks SET state = 'missing' WHERE key = ?").run(key),
    )
    this.pendingUses.delete(key)
    this.handles.drop(key)
    rmSync(this.pathOf(key), { force: true })
  }

  /** Cache usage; `pinnedKeys` are the keys held by mounted images. */
  status(pinnedKeysSql: string): CacheStatus {
    const total = this.db
      .prepare(
        "SELECT count(*) AS n, coalesce(sum(size_bytes), 0) AS bytes FROM chunks WHERE state = 'present'",
      )
      .get() as { n: number; bytes: number }
    const pinned = this.db
      .prepare(
        `SELECT coalesce(sum(size_bytes), 0) AS bytes FROM chunks WHERE state = 'present' AND key IN (${pinnedKeysSql})`,
      )
      .get() as { bytes: number }
    return {
      presentChunks: total.n,
      presentBytes: total.bytes,
      pinnedBytes: pinned.bytes,
      limitBytes: this.limitBytes,
    }
  }

  /**
   * Evicts least recently used chunk objects not held by a pinned image until the cache
   * holds at most `targetBytes` (default the limit; with no limit and no target, nothing).
   */
  gc(pinnedKeysSql: string, targetBytes?: number): GcReport {
    const target = targetBytes ?? (this.limitBytes > 0 ? this.limitBytes : Number.POSITIVE_INFINITY)
    this.flushUses()
    const status = this.status(pinnedKeysSql)
    let present = status.presentBytes
    let evictedChunks = 0
    let evictedBytes = 0
    if (present <= target)
      return { evictedChunks, evictedBytes, presentBytes: present, limitBytes: this.limitBytes }

    const candidates = this.db
      .prepare(
        `SELECT key, size_bytes AS size FROM chunks WHERE state = 'present' AND key NOT IN (${pinnedKeysSql})
         ORDER BY last_used_at ASC`,
      )
      .iterate() as IterableIterator<{ key: string; size: number }>
    const victims: string[] = []
    for (const row of candidates) {
      if (present <= target) break
      victims.push(row.key)
      present -= row.size
      evictedBytes += row.size
      evictedChunks++
    }

    // Rows first, then files: a crash in between leaves stray files, which start-up removes.
    this.durably(() => {
      const mark = this.db.prepare("UPDATE chunks SET state = 'missing' WHERE key = ?")
      for (const key of victims) mark.run(key)
    })
    for (const key of victims) {
      this.handles.drop(key)
      rmSync(this.pathOf(key), { force: true })
    }
    log.info({ evictedChunks, evictedBytes }, 'cache evicted')
    return { evictedChunks, evictedBytes, presentBytes: present, limitBytes: this.limitBytes }
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
    this.durably(() => {
      const mark = this.db.prepare("UPDATE chunks SET state = 'missing' WHERE key = ?")
      for (const key of bad) mark.run(key)
    })
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
