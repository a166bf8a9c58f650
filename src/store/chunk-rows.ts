import type { Database, Statement } from 'better-sqlite3'
import { LayerRecords } from './layers.js'
import type { ChunkCommit, ChunkSlot } from './types.js'

/** Slots start on a page boundary, so a freed one is punched as whole file-system blocks. */
export const SLOT_ALIGN = 4096

/**
 * A freed slot of a pack file, still to be punched out of it (see `ChunkCache`). A row of
 * `pack_holes` with a negative `freed_at` is no hole yet but a slot reserved by process
 * `-freed_at` and not yet committed: once that process is dead it is freed (a write cut
 * short by a kill would otherwise keep its disk space for good).
 */
export interface PackHole {
  pack: string
  offset: number
  sizeBytes: number
}

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
  private readonly current: Statement
  private readonly addHole: Statement
  private readonly dropReservation: Statement
  private readonly packEnd: Statement
  private readonly setPackEnd: Statement

  constructor(private readonly db: Database) {
    this.layers = new LayerRecords(db)
    this.markPresent = db.prepare(
      `INSERT INTO chunks (key, size_bytes, state, last_used_at, pack, pack_offset)
       VALUES (?, ?, 'present', ?, ?, ?)
       ON CONFLICT(key) DO UPDATE SET size_bytes = excluded.size_bytes, state = 'present',
         last_used_at = excluded.last_used_at, pack = excluded.pack,
         pack_offset = excluded.pack_offset`,
    )
    this.markMissing = db.prepare(
      "UPDATE chunks SET state = 'missing', pack = NULL, pack_offset = NULL WHERE key = ?",
    )
    this.markUsed = db.prepare('UPDATE chunks SET last_used_at = ? WHERE key = ?')
    this.current = db.prepare(
      'SELECT state, size_bytes AS size, pack, pack_offset AS offset FROM chunks WHERE key = ?',
    )
    // A reservation (negative freed_at) becomes a hole; a hole keeps its first freed_at.
    this.addHole = db.prepare(
      `INSERT INTO pack_holes (pack, offset, size_bytes, freed_at) VALUES (?, ?, ?, ?)
       ON CONFLICT(pack, offset) DO UPDATE SET freed_at = excluded.freed_at
         WHERE pack_holes.freed_at < 0`,
    )
    this.dropReservation = db.prepare(
      'DELETE FROM pack_holes WHERE pack = ? AND offset = ? AND freed_at < 0',
    )
    this.packEnd = db.prepare('SELECT end_bytes FROM packs WHERE name = ?').pluck()
    this.setPackEnd = db.prepare(
      `INSERT INTO packs (name, end_bytes) VALUES (?, ?)
       ON CONFLICT(name) DO UPDATE SET end_bytes = excluded.end_bytes`,
    )
  }

  /**
   * Hands out a fresh slot of `sizeBytes` at the end of pack `pack` and returns its
   * offset. A slot is never handed out twice, even after it is freed: a reader holding an
   * old location can only meet the old bytes or a punched hole, never another object.
   * The slot is recorded as reserved by process `pid` until its commit or its release.
   */
  reserve(pack: string, sizeBytes: number, pid = process.pid): number {
    const offset = (this.packEnd.get(pack) as number | undefined) ?? 0
    this.setPackEnd.run(pack, offset + alignUp(sizeBytes))
    this.addHole.run(pack, offset, alignUp(sizeBytes), -pid)
    return offset
  }

  /**
   * Frees the slots reserved by processes that died before committing them (see
   * `PackHole`), so they can be punched at once. Returns how many.
   */
  // TODO(store): a pid reused after a reboot keeps a dead process's reservation (one
  // batch, a few MiB) until that pid exits: the boot id is not recorded with it.
  // A build from before reservations were recorded (schema 3 without them), run beside
  // this one on the same state directory, would take these rows for holes and punch them.
  releaseDeadReservations(isAlive: (pid: number) => boolean): number {
    const owners = this.db
      .prepare('SELECT DISTINCT -freed_at FROM pack_holes WHERE freed_at < 0')
      .pluck()
      .all() as number[]
    const free = this.db.prepare('UPDATE pack_holes SET freed_at = 0 WHERE freed_at = ?')
    let released = 0
    for (const pid of owners) if (!isAlive(pid)) released += free.run(-pid).changes
    return released
  }

  /**
   * Marks the chunk objects of `commit` present, with its unit and layer bookkeeping. An
   * object already present keeps its place (a reader may hold it) and the new slot is freed.
   */
  commit(commit: ChunkCommit): void {
    for (const chunk of commit.chunks) this.commitChunk(chunk, commit.atMs)
    for (const unit of commit.units ?? [])
      this.layers.setUnitDecoded(unit.layerDigest, unit.offset, {
        ...unit,
        // A tail that crossed a thread arrives as a plain Uint8Array.
        tail: unit.tail === null ? null : Buffer.from(unit.tail),
      })
    for (const change of commit.layerStates ?? []) this.layers.setState(change.digest, change.state)
  }

  private commitChunk(chunk: ChunkCommit['chunks'][number], atMs: number): void {
    const slot = chunk.slot ?? null
    const row = this.current.get(chunk.key) as CurrentRow | undefined
    if (row?.state === 'present' && row.pack !== null && slot !== null) {
      this.freeSlot({ pack: slot.pack, offset: slot.offset, size: chunk.sizeBytes }, 0)
      this.markUsed.run(atMs, chunk.key)
      return
    }
    if (row?.state === 'present') this.freeSlot(slotOfRow(row))
    this.markPresent.run(chunk.key, chunk.sizeBytes, atMs, slot?.pack ?? null, slot?.offset ?? null)
    if (slot !== null) this.dropReservation.run(slot.pack, slot.offset)
  }

  /**
   * Marks chunk objects missing. A slot in a pack is recorded as a hole to punch; a file
   * of its own is the caller's to remove, afterwards.
   */
  missing(keys: Iterable<string>): void {
    for (const key of keys) {
      const row = this.current.get(key) as CurrentRow | undefined
      if (row === undefined) continue
      this.freeSlot(slotOfRow(row))
      this.markMissing.run(key)
    }
  }

  // `freedAt` 0 for a slot no reader can have seen: it may be punched at once.
  private freeSlot(slot: ChunkSlot, freedAt = Date.now()): void {
    if (slot !== null) this.addHole.run(slot.pack, slot.offset, alignUp(slot.size), freedAt)
  }

  /** Frees slots no row ever pointed at (reserved for a write that failed). */
  freeUnseenSlots(holes: readonly PackHole[]): void {
    for (const hole of holes)
      this.freeSlot({ pack: hole.pack, offset: hole.offset, size: hole.sizeBytes }, 0)
  }

  /** Up to `limit` freed slots still to punch, freed at or before `freedBy` (ms). */
  holes(limit: number, freedBy = Number.MAX_SAFE_INTEGER): PackHole[] {
    return this.db
      .prepare(
        `SELECT pack, offset, size_bytes AS sizeBytes FROM pack_holes
         WHERE freed_at >= 0 AND freed_at <= ? ORDER BY pack, offset LIMIT ?`,
      )
      .all(freedBy, limit) as PackHole[]
  }

  /** Bytes of freed slots still to punch. */
  holeBytes(): number {
    return this.db
      .prepare('SELECT coalesce(sum(size_bytes), 0) FROM pack_holes WHERE freed_at >= 0')
      .pluck()
      .get() as number
  }

  /** Forgets holes that have been punched. */
  punched(holes: readonly PackHole[]): void {
    const remove = this.db.prepare('DELETE FROM pack_holes WHERE pack = ? AND offset = ?')
    for (const hole of holes) remove.run(hole.pack, hole.offset)
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

interface CurrentRow {
  state: string
  size: number
  pack: string | null
  offset: number | null
}

function slotOfRow(row: CurrentRow): ChunkSlot {
  return row.pack === null || row.offset === null
    ? null
    : { pack: row.pack, offset: row.offset, size: row.size }
}

/** `sizeBytes` rounded up to whole slot blocks. */
export function alignUp(sizeBytes: number): number {
  return Math.ceil(sizeBytes / SLOT_ALIGN) * SLOT_ALIGN
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
