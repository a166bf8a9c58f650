import { closeSync, openSync, readFileSync, readSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { alignUp } from '../../src/store/chunk-rows.js'

/** A present chunk object of a state directory's cache and its bytes. */
export interface CacheObject {
  key: string
  bytes: Buffer
}

// Read-only and without Store.open: opening the store would reconcile the cache.
function withDb<T>(stateDir: string, use: (db: Database.Database) => T): T {
  const db = new Database(join(stateDir, 'edgestar.db'), { readonly: true })
  try {
    return use(db)
  } finally {
    db.close()
  }
}

/** Every present object, read from its slot in a pack file or from its own file. */
export function presentObjects(stateDir: string): CacheObject[] {
  const rows = withDb(stateDir, (db) =>
    db
      .prepare(
        `SELECT key, size_bytes AS size, pack, pack_offset AS offset FROM chunks
         WHERE state = 'present'`,
      )
      .all(),
  ) as { key: string; size: number; pack: string | null; offset: number | null }[]
  const cache = join(stateDir, 'chunks')
  return rows.map((row) => ({
    key: row.key,
    bytes:
      row.pack === null
        ? readFileSync(join(cache, row.key.slice(7, 9), row.key))
        : readSlot(join(cache, 'packs', row.pack), row.offset!, row.size),
  }))
}

function readSlot(path: string, offset: number, size: number): Buffer {
  const fd = openSync(path, 'r')
  try {
    const bytes = Buffer.alloc(size)
    return bytes.subarray(0, readSync(fd, bytes, 0, size, offset))
  } finally {
    closeSync(fd)
  }
}

/**
 * Pack space handed out versus accounted for: by present rows' slots, and by freed slots
 * still to punch. Equal when no write was left half done (reserved but never committed).
 */
export function slotAccounting(stateDir: string): {
  reservedBytes: number
  accountedBytes: number
} {
  return withDb(stateDir, (db) => {
    const reserved = db.prepare('SELECT coalesce(sum(end_bytes), 0) FROM packs').pluck().get()
    const sizes = db
      .prepare("SELECT size_bytes FROM chunks WHERE state = 'present' AND pack IS NOT NULL")
      .pluck()
      .all() as number[]
    const holes = db.prepare('SELECT coalesce(sum(size_bytes), 0) FROM pack_holes').pluck().get()
    const slots = sizes.reduce((sum, size) => sum + alignUp(size), 0)
    return { reservedBytes: reserved as number, accountedBytes: slots + (holes as number) }
  })
}

/** How many objects are present. */
export function presentObjectCount(stateDir: string): number {
  return withDb(stateDir, (db) =>
    db.prepare("SELECT count(*) FROM chunks WHERE state = 'present'").pluck().get(),
  ) as number
}
