import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { EdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import { type CacheStatus, ChunkCache, type GcReport, type ReconcileReport } from './chunk-cache.js'
import { CommandLog } from './command-log.js'
import { DeploymentRecords } from './deployments.js'
import { ImageRecords } from './images.js'
import { IndexQueries } from './index-queries.js'
import { IndexWorker } from './index-worker.js'
import { type LayerIndexInput, LayerRecords } from './layers.js'
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js'
import { Outbox, type OutboxLimits } from './outbox.js'
import { isProcessAlive, Pins } from './pins.js'
import { StateUsers } from './state-users.js'
import { TocRecords } from './toc.js'
import type { ChunkExtentInput, LayerInput, LayerState, TocEntryInput } from './types.js'

/** Default state directory of an installed agent. */
export const DEFAULT_STATE_DIR = '/var/lib/edgestar'

/** Options of `Store.open`. */
export interface StoreOptions {
  /** Chunk cache size limit in bytes; 0 = unlimited (the default). */
  cacheLimitBytes?: number
  /** Reconcile the cache directory with the database at open. Default true. */
  reconcile?: boolean
  outboxLimits?: Partial<OutboxLimits>
}

const log = moduleLogger('store')

/**
 * The state directory: `edgestar.db` (SQLite, WAL) and `chunks/` (the chunk cache).
 * One `Store` per process; several processes may open one state directory (SQLite
 * locking), and only the first live one removes stray files at start-up.
 */
export class Store {
  readonly stateDir: string
  readonly dbPath: string
  readonly db: Database.Database
  readonly images: ImageRecords
  readonly layers: LayerRecords
  readonly toc: TocRecords
  readonly chunks: ChunkCache
  readonly pins: Pins
  readonly deployments: DeploymentRecords
  readonly commandLog: CommandLog
  readonly outbox: Outbox
  /** Lookups of the read and fetch path, answered off the event loop (a reader thread). */
  readonly queries: IndexQueries
  /** What start-up reconciliation found (zeros when it did not run). */
  readonly reconciled: ReconcileReport
  private readonly reader: IndexWorker
  private readonly writer: IndexWorker
  private readonly users: StateUsers

  private constructor(stateDir: string, db: Database.Database, options: StoreOptions) {
    this.stateDir = stateDir
    this.dbPath = join(stateDir, 'edgestar.db')
    this.db = db
    const durably = <T>(fn: () => T): T => this.durably(fn)
    this.users = new StateUsers(stateDir)
    this.reader = new IndexWorker(this.dbPath, 'reader')
    this.writer = new IndexWorker(this.dbPath, 'writer')
    this.queries = new IndexQueries(this.reader)
    this.images = new ImageRecords(db)
    this.layers = new LayerRecords(db)
    this.toc = new TocRecords(db)
    this.chunks = new ChunkCache(
      db,
      join(stateDir, 'chunks'),
      options.cacheLimitBytes ?? 0,
      durably,
      this.writer,
      this.reader,
      this.users,
    )
    this.pins = new Pins(db)
    const threads = { writer: this.writer, reader: this.reader }
    this.deployments = new DeploymentRecords(db, durably, threads)
    this.commandLog = new CommandLog(db, durably, threads)
    this.outbox = new Outbox(db, durably, options.outboxLimits, threads)
    this.reconciled = { rowsMarkedMissing: 0, strayFilesRemoved: 0, tmpFilesRemoved: 0 }
  }

  /**
   * Opens (creating when needed) the state directory, migrates the database and
   * reconciles the chunk cache. Throws EDGESTAR_STORE_TOO_NEW for a database written by
   * a newer edgestar, EDGESTAR_STORE_OPEN when the directory or database is unusable.
   */
  static open(stateDir: string, options: StoreOptions = {}): Store {
    let db: Database.Database
    try {
      mkdirSync(join(stateDir, 'chunks'), { recursive: true })
      db = new Database(join(stateDir, 'edgestar.db'))
    } catch (err) {
      throw new EdgestarError(
        'EDGESTAR_STORE_OPEN',
        `cannot open the state directory ${stateDir}`,
        {
          hint: 'check that it exists and is writable, or pick another with --state-dir',
          cause: err,
        },
      )
    }
    try {
      db.pragma('busy_timeout = 10000')
      db.pragma('journal_mode = WAL')
      db.pragma('synchronous = NORMAL')
      db.pragma('foreign_keys = ON')
      migrate(db)
    } catch (err) {
      db.close()
      throw err
    }

    const store = new Store(stateDir, db, options)
    store.users.register()
    if (options.reconcile !== false) store.reconcileAtStart()
    return store
  }

  /**
   * Runs `fn` in one transaction committed with synchronous=FULL (survives power loss).
   * It takes the write lock at its start (BEGIN IMMEDIATE), so a read-then-write body never
   * meets SQLITE_BUSY_SNAPSHOT after the writer thread committed in between.
   */
  durably<T>(fn: () => T): T {
    this.db.pragma('synchronous = FULL')
    try {
      return this.db.transaction(fn).immediate()
    } finally {
      this.db.pragma('synchronous = NORMAL')
    }
  }

  /**
   * `layers.setState` committed durably by the writer thread (a verified layer stays
   * verified after a power cut), off the event loop. Rejects as `IndexWorker` calls do.
   */
  setLayerState(digest: string, state: LayerState): Promise<void> {
    return this.writer.call('commit', [
      { chunks: [], layerStates: [{ digest, state }], atMs: Date.now() },
    ])
  }

  /**
   * `layers.upsert` then `layers.recordIndex`, in one transaction of the writer thread:
   * a Debian image's TOC takes about 160 ms to insert, too long for the event loop that
   * serves FUSE. The rows are copied to the thread (chunk entries, which `recordIndex`
   * skips, are left out first). Rejects as `IndexWorker` calls do.
   */
  recordLayerIndex(
    layer: LayerInput,
    index: { entries: TocEntryInput[]; chunks: ChunkExtentInput[]; blobSizeBytes: number },
  ): Promise<void> {
    const rows: LayerIndexInput = {
      entries: index.entries.filter((entry) => entry.type !== 'chunk'),
      chunks: index.chunks,
      blobSizeBytes: index.blobSizeBytes,
    }
    return this.writer.call('recordLayer', [layer, rows])
  }

  /** Cache usage, pinned bytes included. */
  cacheStatus(): CacheStatus {
    return this.chunks.status(this.pins.pinnedKeysSql())
  }

  /**
   * Evicts LRU chunks of unpinned images down to `targetBytes` (default: the limit), on
   * this thread (CLI); `gcAsync` does it in the writer thread.
   */
  gc(targetBytes?: number): GcReport {
    return this.chunks.gc(this.pins.pinnedKeysSql(), targetBytes)
  }

  /** `gc` off the event loop (for a process that serves FUSE); see `ChunkCache.gcAsync`. */
  gcAsync(targetBytes?: number): Promise<GcReport> {
    return this.chunks.gcAsync(targetBytes)
  }

  /**
   * Lets the writer thread finish the commits it was sent (blocking, see
   * `IndexWorker.close`), stops the reader thread, writes pending chunk uses, closes open
   * chunk files, then closes the database.
   */
  close(): void {
    this.writer.close()
    this.reader.close()
    this.chunks.close()
    this.users.unregister()
    if (this.db.open) this.db.close()
  }

  private reconcileAtStart(): void {
    // Only the first live process on a state directory may remove files: another one
    // could be between its rename and its commit.
    const ownerFile = join(this.stateDir, 'owner.pid')
    const owner = readOwner(ownerFile)
    if (owner !== null && owner !== process.pid && isProcessAlive(owner)) return
    writeFileSync(ownerFile, `${process.pid}\n`)
    Object.assign(this.reconciled, this.chunks.reconcile())
  }
}

function migrate(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number
  if (current > SCHEMA_VERSION)
    throw new EdgestarError(
      'EDGESTAR_STORE_TOO_NEW',
      `state database ${db.name} was written by a newer edgestar (schema ${current}; this build reads up to ${SCHEMA_VERSION})`,
      {
        hint: 'upgrade edgestar, or move the state directory aside; cached chunks will be fetched again',
      },
    )
  for (let version = current; version < SCHEMA_VERSION; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version]!)
      db.pragma(`user_version = ${version + 1}`)
    })()
    log.info({ version: version + 1 }, 'store migrated')
  }
}

function readOwner(path: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8'), 10)
    return Number.isSafeInteger(pid) ? pid : null
  } catch {
    return null
  }
}
