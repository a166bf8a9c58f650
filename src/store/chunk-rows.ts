import type { Database, Statement } from 'better-sqlite3'
import { LayerRecords } from './layers.js'
import type { ChunkCommit } from './types.js'

/**
 * The writes to the `chunks` table, made the same way by the main connection (start-up,
 * gc, CLI) and by the store's writer thread (commits while serving). Callers own the
 * transaction and its durability.
 */
export class ChunkRows {
  private readonly layers: LayerRecords
  private readonly markPresent: Statement
  private readonly markMissing: Statement
  private readonly markUsed: Statement

  constructor(private readonly db: Database) {
    this.layers = new LayerRecords(db)
    this.markPresent = db.prepare(
      `INSERT INTO chunks (key, size_bytes, state, last_used_at) VALUES (?, ?, 'present', ?)
       ON CONFLICT(key) DO UPDATE SET size_bytes = excluded.size_bytes, state = 'present',
         last_used_at = excluded.last_used_at`,
    )
    this.markMissing = db.prepare("UPDATE chunks SET state = 'missing' WHERE key = ?")
    this.markUsed = db.prepare('UPDATE chunks SET last_used_at = ? WHERE key = ?')
  }

  /** Marks the chunk objects of `commit` present, with its unit and layer bookkeeping. */
  commit(commit: ChunkCommit): void {
    for (const chunk of commit.chunks) this.markPresent.run(chunk.key, chunk.sizeBytes, commit.atMs)
    for (const unit of commit.units ?? [])
      this.layers.setUnitDecoded(unit.layerDigest, unit.offset, {
        ...unit,
        // A tail that crossed a thread arrives as a plain Uint8Array.
        tail: unit.tail === null ? null : Buffer.from(unit.tail),
      })
    for (const change of commit.layerStates ?? []) this.layers.setState(change.digest, change.state)
  }

  /** Marks chunk objects missing (their files are the caller's to remove, afterwards). */
  missing(keys: Iterable<string>): void {
    for (const key of keys) this.markMissing.run(key)
  }

  /** Records when chunk objects were last read (`[key, atMs]`), for LRU eviction. */
  used(uses: Iterable<[string, number]>): void {
    for (const [key, atMs] of uses) this.markUsed.run(atMs, key)
  }

  /** Present chunks and their bytes; `pinnedKeysSql` selects the keys mounted images hold. */
  usage(pinnedKeysSql: string): ChunkUsage {
    const total = this.db
      .prepare(
        "SELECT count(*) AS n, coalesce(sum(size_bytes), 0) AS bytes FROM chunks WHERE state = 'present'",
      )
      .get() as { n: number; bytes: number }
    const pinned = this.db
      .prepare(
        `SELECT coalesce(sum(size_bytes), 0) AS bytes FROM chunks
         WHERE state = 'present' AND key IN (${pinnedKeysSql})`,
      )
      .get() as { bytes: number }
    return { presentChunks: total.n, presentBytes: total.bytes, pinnedBytes: pinned.bytes }
  }

  /**
   * Marks least recently used chunks not held by a pinned image missing until at most
   * `targetBytes` are present. Their files are the caller's to remove, afterwards (a crash
   * in between leaves stray files, which start-up removes).
   */
  evict(pinnedKeysSql: string, targetBytes: number): Eviction {
    let presentBytes = this.usage(pinnedKeysSql).presentBytes
    const eviction: Eviction = { victims: [], evictedBytes: 0, presentBytes }
    if (presentBytes <= targetBytes) return eviction

    const candidates = this.db
      .prepare(
        `SELECT key, size_bytes AS size FROM chunks WHERE state = 'present' AND key NOT IN (${pinnedKeysSql})
         ORDER BY last_used_at ASC`,
      )
      .iterate() as IterableIterator<{ key: string; size: number }>
    for (const row of candidates) {
      if (presentBytes <= targetBytes) break
      eviction.victims.push(row.key)
      presentBytes -= row.size
      eviction.evictedBytes += row.size
    }
    this.missing(eviction.victims)
    eviction.presentBytes = presentBytes
    return eviction
  }
}

/** What `ChunkRows.usage` counts. */
export interface ChunkUsage {
  presentChunks: number
  presentBytes: number
  pinnedBytes: number
}

/** What `ChunkRows.evict` marked missing. */
export interface Eviction {
  victims: string[]
  evictedBytes: number
  /** Bytes present afterwards. */
  presentBytes: number
}
