import type { Database, Statement } from 'better-sqlite3'
import { EdgestarError } from '../errors.js'
import { chunkKey, digestHex } from './names.js'
import type {
  ChunkExtentInput,
  ChunkSlot,
  LayerInput,
  LayerRow,
  LayerState,
  Progress,
  TocEntryInput,
  UnitRow,
} from './types.js'

/** Columns of `chunks c` that `slotOf` and `isPresent` read, for queries that join it. */
export const CHUNK_COLUMNS = 'c.state, c.pack, c.pack_offset, c.size_bytes AS object_bytes'

const UNITS_WITH_CHUNKS = `SELECT u.*, ${CHUNK_COLUMNS} FROM layer_units u
  LEFT JOIN chunks c ON c.key = u.chunk_key`

/** Landmark that ends the prefetch set (entries before it in TOC order are prefetched). */
const PREFETCH_LANDMARK = '.prefetch.landmark'

/** What `recordIndex` takes: a layer's parsed TOC and its chunk extents. */
export interface LayerIndexInput {
  entries: Iterable<TocEntryInput>
  chunks: Iterable<ChunkExtentInput>
  /** Size of the whole blob; ranges no chunk covers become gap units. */
  blobSizeBytes: number
}

interface RawUnit {
  layer_digest: string
  offset: number
  size_bytes: number
  kind: 'chunk' | 'gap'
  chunk_key: string
  object_from: number
  data_bytes: number
  member_bytes: number | null
  rank: number
  chunk_digest: string | null
  tail: Buffer | null
  state: string | null
  pack: string | null
  pack_offset: number | null
  object_bytes: number | null
}

/**
 * Layer rows, and the per-layer index written in one transaction: TOC entry rows (file
 * order kept in `ord`), chunk extents of each file, and the fetch units of the blob.
 */
export class LayerRecords {
  private readonly missingUnitsStmt: Statement

  constructor(private readonly db: Database) {
    this.missingUnitsStmt = db.prepare(
      `${UNITS_WITH_CHUNKS}
       WHERE u.layer_digest = ? AND u.kind IN ('chunk', ?)
         AND (c.state IS NULL OR c.state != 'present'
              OR (? AND u.kind = 'chunk' AND u.member_bytes IS NULL))
       ORDER BY u.rank, u.offset LIMIT ?`,
    )
  }

  /** Inserts or updates a layer row (its index state is kept). */
  upsert(layer: LayerInput): void {
    digestHex(layer.digest)
    this.db
      .prepare(
        `INSERT INTO layers (digest, size_bytes, media_type, diff_id, toc_digest, toc_offset, format,
           verification, state, source_reference, indexed_at)
         VALUES (@digest, @sizeBytes, @mediaType, @diffID, @tocDigest, @tocOffset, @format,
           @verification, 'indexed', @sourceReference, 0)
         ON CONFLICT(digest) DO UPDATE SET diff_id = excluded.diff_id, toc_digest = excluded.toc_digest,
           toc_offset = excluded.toc_offset, format = excluded.format,
           verification = excluded.verification, source_reference = excluded.source_reference`,
      )
      .run(layer)
  }

  /** A layer row, or undefined. */
  get(digest: string): LayerRow | undefined {
    const row = this.db.prepare('SELECT * FROM layers WHERE digest = ?').get(digest) as
      | Record<string, unknown>
      | undefined
    return row === undefined ? undefined : toLayerRow(row)
  }

  /** True when the TOC rows and units of the layer are recorded. */
  isIndexed(digest: string): boolean {
    const row = this.db.prepare('SELECT indexed_at FROM layers WHERE digest = ?').get(digest) as
      | { indexed_at: number }
      | undefined
    return row !== undefined && row.indexed_at > 0
  }

  /** Sets the layer state (durably: a verified layer must stay verified after a crash). */
  setState(digest: string, state: LayerState): void {
    this.db.prepare('UPDATE layers SET state = ? WHERE digest = ?').run(state, digest)
  }

  /**
   * Records the parsed index of a layer in one transaction, replacing any earlier one:
   * TOC rows (chunk-type entries folded into their file), chunk extents and fetch units.
   * A 100k-entry TOC streams through prepared statements; nothing is kept in memory
   * beyond the unit map. Throws EDGESTAR_STORE_UNKNOWN_LAYER when `upsert` was not called.
   */
  recordIndex(layerDigest: string, index: LayerIndexInput): void {
    if (this.get(layerDigest) === undefined)
      throw new EdgestarError(
        'EDGESTAR_STORE_UNKNOWN_LAYER',
        `layer ${layerDigest} is not recorded`,
      )
    const write = this.db.transaction(() => {
      for (const table of ['toc_entries', 'layer_chunks', 'layer_units'])
        this.db.prepare(`DELETE FROM ${table} WHERE layer_digest = ?`).run(layerDigest)
      const landmarkOrd = this.insertEntries(layerDigest, index.entries)
      this.insertChunksAndUnits(layerDigest, index, landmarkOrd)
      this.db
        .prepare('UPDATE layers SET indexed_at = ? WHERE digest = ?')
        .run(Date.now(), layerDigest)
    })
    write()
  }

  private insertEntries(layerDigest: string, entries: Iterable<TocEntryInput>): number | null {
    const insert = this.db.prepare(
      `INSERT OR REPLACE INTO toc_entries (layer_digest, ord, name, parent, base, type, size, modtime,
         link_name, mode, uid, gid, user_name, group_name, dev_major, dev_minor, xattrs, digest)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    let ord = 0
    let landmarkOrd: number | null = null
    for (const entry of entries) {
      if (entry.type === 'chunk') continue
      const name = entry.name.replace(/\/+$/, '')
      const slash = name.lastIndexOf('/')
      const parent = slash < 0 ? '' : name.slice(0, slash)
      const base = slash < 0 ? name : name.slice(slash + 1)
      if (name === PREFETCH_LANDMARK) landmarkOrd = ord
      insert.run(
        layerDigest,
        ord++,
        name,
        parent,
        base,
        entry.type,
        entry.size ?? 0,
        entry.modtime ?? null,
        entry.linkName ?? null,
        entry.mode ?? 0,
        entry.uid ?? 0,
        entry.gid ?? 0,
        entry.userName ?? null,
        entry.groupName ?? null,
        entry.devMajor ?? null,
        entry.devMinor ?? null,
        entry.xattrs && Object.keys(entry.xattrs).length > 0 ? JSON.stringify(entry.xattrs) : null,
        entry.digest ?? null,
      )
    }
    return landmarkOrd
  }

  private insertChunksAndUnits(
    layerDigest: string,
    index: LayerIndexInput,
    landmarkOrd: number | null,
  ): void {
    const ordOf = this.db
      .prepare('SELECT ord FROM toc_entries WHERE layer_digest = ? AND name = ?')
      .pluck()
    const insertChunk = this.db.prepare(
      `INSERT OR REPLACE INTO layer_chunks (layer_digest, entry_name, chunk_offset, chunk_size, unit_offset,
         inner_offset, chunk_digest) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    )

    // Group extents by their compressed offset: extents sharing one are one fetch unit.
    const units = new Map<
      number,
      { size: number; extents: number; rank: number; first: ChunkExtentInput }
    >()
    for (const extent of index.chunks) {
      const name = extent.entryName.replace(/\/+$/, '')
      insertChunk.run(
        layerDigest,
        name,
        extent.chunkOffset,
        extent.chunkSize,
        extent.compressedOffset,
        extent.innerOffset,
        extent.chunkDigest ?? null,
      )
      const ord = ordOf.get(layerDigest, name) as number | undefined
      const rank = landmarkOrd !== null && ord !== undefined && ord < landmarkOrd ? 0 : 1
      const unit = units.get(extent.compressedOffset)
      if (unit === undefined) {
        units.set(extent.compressedOffset, {
          size: extent.compressedSize,
          extents: 1,
          rank,
          first: extent,
        })
      } else {
        unit.size = Math.max(unit.size, extent.compressedSize)
        unit.extents++
        unit.rank = Math.min(unit.rank, rank)
      }
    }

    const insertUnit = this.db.prepare(
      `INSERT INTO layer_units (layer_digest, offset, size_bytes, kind, chunk_key, object_from, data_bytes,
         member_bytes, rank, chunk_digest) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)`,
    )
    const sorted = [...units.entries()].sort((a, b) => a[0] - b[0])
    let cursor = 0
    for (const [offset, unit] of sorted) {
      if (offset > cursor) this.insertGap(insertUnit, layerDigest, cursor, offset - cursor)
      const single = unit.extents === 1 && unit.first.innerOffset === 0 && unit.first.chunkDigest
      const key = chunkKey({
        chunkDigest: single ? unit.first.chunkDigest : null,
        layerDigest,
        offset,
      })
      // A single-chunk object holds exactly the chunk's bytes; a packed one the whole member.
      const dataBytes = single ? unit.first.chunkSize : 0
      insertUnit.run(
        layerDigest,
        offset,
        unit.size,
        'chunk',
        key,
        0,
        dataBytes,
        unit.rank,
        single ? unit.first.chunkDigest : null,
      )
      cursor = Math.max(cursor, offset + unit.size)
    }
    if (index.blobSizeBytes > cursor)
      this.insertGap(insertUnit, layerDigest, cursor, index.blobSizeBytes - cursor)
  }

  private insertGap(insert: Statement, layerDigest: string, offset: number, size: number): void {
    insert.run(layerDigest, offset, size, 'gap', chunkKey({ layerDigest, offset }), 0, 0, 2, null)
  }

  /** Every unit of a layer in blob order. */
  units(layerDigest: string): UnitRow[] {
    const rows = this.db
      .prepare(
        `${UNITS_WITH_CHUNKS}
         WHERE u.layer_digest = ? ORDER BY u.offset`,
      )
      .all(layerDigest) as RawUnit[]
    return rows.map(toUnitRow)
  }

  /** One unit by its compressed offset. */
  unit(layerDigest: string, offset: number): UnitRow | undefined {
    const row = this.db
      .prepare(
        `${UNITS_WITH_CHUNKS}
         WHERE u.layer_digest = ? AND u.offset = ?`,
      )
      .get(layerDigest, offset) as RawUnit | undefined
    return row === undefined ? undefined : toUnitRow(row)
  }

  /**
   * Up to `limit` units not yet present, in background order (prefetch set first, then
   * file order). With `forDiffID`, also gap units and chunk units whose decoded tail (the
   * tar padding and headers after the chunk) is still unknown: what a diffID check needs.
   */
  // TODO(store): a chunk shared with another layer is present but has no tail for this
  // layer, so a full pull fetches it once more just to learn its tail.
  missingUnits(layerDigest: string, limit: number, forDiffID = false): UnitRow[] {
    const rows = this.missingUnitsStmt.all(
      layerDigest,
      forDiffID ? 'gap' : 'chunk',
      forDiffID ? 1 : 0,
      limit,
    ) as RawUnit[]
    return rows.map(toUnitRow)
  }

  /** Units of the prefetch set (rank 0) not yet present, in blob order. */
  missingPrefetchUnits(layerDigest: string): UnitRow[] {
    const rows = this.db
      .prepare(
        `${UNITS_WITH_CHUNKS}
         WHERE u.layer_digest = ? AND u.rank = 0 AND u.kind = 'chunk'
           AND (c.state IS NULL OR c.state != 'present')
         ORDER BY u.offset`,
      )
      .all(layerDigest) as RawUnit[]
    return rows.map(toUnitRow)
  }

  /** The chunk extents a unit holds (one, or several when the writer packed them). */
  unitExtents(layerDigest: string, unitOffset: number): ChunkExtentInput[] {
    const rows = this.db
      .prepare(
        `SELECT lc.entry_name, lc.chunk_offset, lc.chunk_size, lc.inner_offset, lc.chunk_digest, u.size_bytes
         FROM layer_chunks lc JOIN layer_units u ON u.layer_digest = lc.layer_digest AND u.offset = lc.unit_offset
         WHERE lc.layer_digest = ? AND lc.unit_offset = ? ORDER BY lc.inner_offset`,
      )
      .all(layerDigest, unitOffset) as {
      entry_name: string
      chunk_offset: number
      chunk_size: number
      inner_offset: number
      chunk_digest: string | null
      size_bytes: number
    }[]
    return rows.map((row) => ({
      entryName: row.entry_name,
      chunkOffset: row.chunk_offset,
      chunkSize: row.chunk_size,
      compressedOffset: unitOffset,
      compressedSize: row.size_bytes,
      innerOffset: row.inner_offset,
      chunkDigest: row.chunk_digest,
    }))
  }

  /**
   * Records what a fetch learned about a unit: its decoded size, the stored object's
   * size, and for single-chunk objects the decoded bytes after the chunk (needed only to
   * rebuild the layer's tar stream for its diffID). Call inside the chunk's commit.
   */
  setUnitDecoded(
    layerDigest: string,
    offset: number,
    decoded: { memberBytes: number; dataBytes: number; tail: Buffer | null },
  ): void {
    this.db
      .prepare(
        'UPDATE layer_units SET member_bytes = ?, data_bytes = ?, tail = ? WHERE layer_digest = ? AND offset = ?',
      )
      .run(decoded.memberBytes, decoded.dataBytes, decoded.tail, layerDigest, offset)
  }

  /**
   * Up to `limit` units from blob offset `fromOffset` on, in blob order, each with its
   * decoded tail as `unitTail` gives it (for a diffID check, a page at a time).
   */
  unitsWithTails(
    layerDigest: string,
    fromOffset: number,
    limit: number,
  ): (UnitRow & { tail: Buffer | null })[] {
    const rows = this.db
      .prepare(
        `${UNITS_WITH_CHUNKS}
         WHERE u.layer_digest = ? AND u.offset >= ? ORDER BY u.offset LIMIT ?`,
      )
      .all(layerDigest, fromOffset, limit) as RawUnit[]
    return rows.map((row) => ({
      ...toUnitRow(row),
      tail: row.member_bytes === null ? null : (row.tail ?? Buffer.alloc(0)),
    }))
  }

  /** The decoded tail of a single-chunk unit (empty when none), or null when unknown. */
  unitTail(layerDigest: string, offset: number): Buffer | null {
    const row = this.db
      .prepare('SELECT tail, member_bytes FROM layer_units WHERE layer_digest = ? AND offset = ?')
      .get(layerDigest, offset) as { tail: Buffer | null; member_bytes: number | null } | undefined
    if (row === undefined || row.member_bytes === null) return null
    return row.tail ?? Buffer.alloc(0)
  }

  /** Forgets what fetches learned about a layer's units, so they are fetched again. */
  resetUnitsDecoded(layerDigest: string): void {
    this.db
      .prepare('UPDATE layer_units SET member_bytes = NULL, tail = NULL WHERE layer_digest = ?')
      .run(layerDigest)
  }

  /** Bytes of the blob present versus total; `chunksOnly` leaves gap units out. */
  progress(layerDigest: string, chunksOnly = false): Progress {
    const row = this.db
      .prepare(
        `SELECT coalesce(sum(u.size_bytes), 0) AS total, count(*) AS units,
           coalesce(sum(CASE WHEN c.state = 'present' THEN u.size_bytes ELSE 0 END), 0) AS present,
           coalesce(sum(CASE WHEN c.state = 'present' THEN 1 ELSE 0 END), 0) AS presentUnits
         FROM layer_units u LEFT JOIN chunks c ON c.key = u.chunk_key
         WHERE u.layer_digest = ? AND u.kind IN ('chunk', ?)`,
      )
      .get(layerDigest, chunksOnly ? 'chunk' : 'gap') as {
      total: number
      units: number
      present: number
      presentUnits: number
    }
    return {
      presentBytes: row.present,
      totalBytes: row.total,
      presentUnits: row.presentUnits,
      totalUnits: row.units,
    }
  }

  /** Layers no image refers to any more. */
  orphans(): string[] {
    return this.db
      .prepare(
        'SELECT digest FROM layers WHERE digest NOT IN (SELECT layer_digest FROM image_layers)',
      )
      .pluck()
      .all() as string[]
  }

  /** Removes a layer's rows (its chunk objects stay until gc, other layers may share them). */
  remove(digest: string): void {
    this.db.transaction(() => {
      for (const table of ['toc_entries', 'layer_chunks', 'layer_units'])
        this.db.prepare(`DELETE FROM ${table} WHERE layer_digest = ?`).run(digest)
      this.db.prepare('DELETE FROM layers WHERE digest = ?').run(digest)
    })()
  }
}

function toUnitRow(row: RawUnit): UnitRow {
  return {
    layerDigest: row.layer_digest,
    offset: row.offset,
    sizeBytes: row.size_bytes,
    kind: row.kind,
    chunkKey: row.chunk_key,
    objectFrom: row.object_from,
    dataBytes: row.data_bytes,
    memberBytes: row.member_bytes,
    rank: row.rank,
    chunkDigest: row.chunk_digest,
    isPresent: row.state === 'present',
    slot: slotOf(row),
  }
}

/** The slot of a row joined with `chunks` (`pack`, `pack_offset`, `size_bytes`). */
export function slotOf(row: {
  pack: string | null
  pack_offset: number | null
  object_bytes: number | null
}): ChunkSlot {
  if (row.pack === null || row.pack_offset === null || row.object_bytes === null) return null
  return { pack: row.pack, offset: row.pack_offset, size: row.object_bytes }
}

function toLayerRow(row: Record<string, unknown>): LayerRow {
  return {
    digest: row.digest as string,
    sizeBytes: row.size_bytes as number,
    mediaType: row.media_type as string,
    diffID: row.diff_id as string | null,
    tocDigest: row.toc_digest as string | null,
    tocOffset: row.toc_offset as number | null,
    format: row.format as string,
    verification: row.verification as LayerRow['verification'],
    state: row.state as LayerState,
    sourceReference: row.source_reference as string,
    indexedAt: row.indexed_at as number,
  }
}
