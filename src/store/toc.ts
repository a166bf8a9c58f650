import type { Database, Statement } from 'better-sqlite3'
import { CHUNK_COLUMNS, slotOf } from './layers.js'
import type { ChunkRef, TocRow } from './types.js'

/**
 * Read side of the TOC rows, for the FUSE view and `cat`: lookups by name, directory
 * listings by parent (streamed, so a 100k-entry directory never sits in the heap at once),
 * and the chunk extents that cover a byte range of a file.
 */
export class TocRecords {
  private readonly byName: Statement
  private readonly chunksInRange: Statement

  constructor(private readonly db: Database) {
    this.byName = db.prepare('SELECT * FROM toc_entries WHERE layer_digest = ? AND name = ?')
    this.chunksInRange = db.prepare(
      `SELECT lc.*, u.chunk_key, u.object_from, ${CHUNK_COLUMNS} FROM layer_chunks lc
       JOIN layer_units u ON u.layer_digest = lc.layer_digest AND u.offset = lc.unit_offset
       LEFT JOIN chunks c ON c.key = u.chunk_key
       WHERE lc.layer_digest = ? AND lc.entry_name = ? AND lc.chunk_offset < ?
         AND lc.chunk_offset + lc.chunk_size > ?
       ORDER BY lc.chunk_offset`,
    )
  }

  /** The entry named `name` (no leading `/` or `./`, no trailing `/`; root is ``). */
  get(layerDigest: string, name: string): TocRow | undefined {
    const row = this.byName.get(layerDigest, name) as RawToc | undefined
    return row === undefined ? undefined : toTocRow(row)
  }

  /** Entries whose parent directory is `dir`, ordered by base name, from `afterBase` on. */
  *children(layerDigest: string, dir: string, afterBase = ''): IterableIterator<TocRow> {
    const rows = this.db
      .prepare(
        `SELECT * FROM toc_entries WHERE layer_digest = ? AND parent = ? AND base > ? AND name != ''
         ORDER BY base`,
      )
      .iterate(layerDigest, dir, afterBase) as IterableIterator<RawToc>
    for (const row of rows) yield toTocRow(row)
  }

  /** Every entry of a layer in TOC (file) order. */
  *all(layerDigest: string): IterableIterator<TocRow> {
    const rows = this.db
      .prepare('SELECT * FROM toc_entries WHERE layer_digest = ? ORDER BY ord')
      .iterate(layerDigest) as IterableIterator<RawToc>
    for (const row of rows) yield toTocRow(row)
  }

  /** Number of entries in a layer. */
  count(layerDigest: string): number {
    return this.db
      .prepare('SELECT count(*) FROM toc_entries WHERE layer_digest = ?')
      .pluck()
      .get(layerDigest) as number
  }

  /** The chunk extents of file `name` that overlap `[offset, offset + length)`. */
  chunks(layerDigest: string, name: string, offset: number, length: number): ChunkRef[] {
    const rows = this.chunksInRange.all(layerDigest, name, offset + length, offset) as {
      entry_name: string
      chunk_offset: number
      chunk_size: number
      unit_offset: number
      inner_offset: number
      chunk_digest: string | null
      chunk_key: string
      object_from: number
      state: string | null
      pack: string | null
      pack_offset: number | null
      object_bytes: number | null
    }[]
    return rows.map((row) => ({
      entryName: row.entry_name,
      chunkOffset: row.chunk_offset,
      chunkSize: row.chunk_size,
      unitOffset: row.unit_offset,
      innerOffset: row.inner_offset,
      chunkDigest: row.chunk_digest,
      chunkKey: row.chunk_key,
      objectOffset: row.inner_offset - row.object_from,
      isPresent: row.state === 'present',
      slot: slotOf(row),
    }))
  }
}

interface RawToc {
  layer_digest: string
  ord: number
  name: string
  parent: string
  base: string
  type: string
  size: number
  modtime: string | null
  link_name: string | null
  mode: number
  uid: number
  gid: number
  user_name: string | null
  group_name: string | null
  dev_major: number | null
  dev_minor: number | null
  xattrs: string | null
  digest: string | null
}

function toTocRow(row: RawToc): TocRow {
  return {
    layerDigest: row.layer_digest,
    ord: row.ord,
    name: row.name,
    parent: row.parent,
    base: row.base,
    type: row.type,
    size: row.size,
    modtime: row.modtime,
    linkName: row.link_name,
    mode: row.mode,
    uid: row.uid,
    gid: row.gid,
    userName: row.user_name,
    groupName: row.group_name,
    devMajor: row.dev_major,
    devMinor: row.dev_minor,
    xattrs: row.xattrs === null ? null : (JSON.parse(row.xattrs) as Record<string, string>),
    digest: row.digest,
  }
}
