import type { Database } from 'better-sqlite3'
import { EdgestarError } from '../errors.js'
import type { ImageRow } from './types.js'

/** What `images.record` takes. Layers must already be upserted (`layers.upsert`). */
export interface ImageInput {
  reference: string
  manifestDigest: string
  /** `os/arch[/variant]`. */
  platform: string
  config: unknown
  /** Layer digests, bottom layer first. */
  layers: string[]
}

/** Image rows and their layer lists. */
export class ImageRecords {
  constructor(private readonly db: Database) {}

  /** Records (or re-points) an image reference; returns its row. */
  record(image: ImageInput): ImageRow {
    const now = Date.now()
    const write = this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO images (reference, manifest_digest, platform, config_json, created_at, last_used_at)
           VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT(reference) DO UPDATE SET manifest_digest = excluded.manifest_digest,
             platform = excluded.platform, config_json = excluded.config_json, last_used_at = excluded.last_used_at`,
        )
        .run(
          image.reference,
          image.manifestDigest,
          image.platform,
          JSON.stringify(image.config),
          now,
          now,
        )
      const id = this.db
        .prepare('SELECT id FROM images WHERE reference = ?')
        .pluck()
        .get(image.reference) as number
      this.db.prepare('DELETE FROM image_layers WHERE image_id = ?').run(id)
      const insert = this.db.prepare(
        'INSERT INTO image_layers (image_id, position, layer_digest) VALUES (?, ?, ?)',
      )
      for (const [position, digest] of image.layers.entries()) insert.run(id, position, digest)
      return id
    })
    return this.get(write())!
  }

  /** An image by id or by reference (as recorded), or undefined. */
  get(idOrReference: number | string): ImageRow | undefined {
    const row = (
      typeof idOrReference === 'number'
        ? this.db.prepare('SELECT * FROM images WHERE id = ?').get(idOrReference)
        : this.db.prepare('SELECT * FROM images WHERE reference = ?').get(idOrReference)
    ) as RawImage | undefined
    return row === undefined ? undefined : this.toRow(row)
  }

  /** Like `get`, but throws EDGESTAR_STORE_UNKNOWN_IMAGE. */
  require(idOrReference: number | string): ImageRow {
    const image = this.get(idOrReference)
    if (image === undefined)
      throw new EdgestarError(
        'EDGESTAR_STORE_UNKNOWN_IMAGE',
        `image ${idOrReference} is not in the store`,
        {
          hint: 'pull it first: edgestar pull REF --lazy',
        },
      )
    return image
  }

  /** Every image, most recently used first. */
  list(): ImageRow[] {
    const rows = this.db
      .prepare('SELECT * FROM images ORDER BY last_used_at DESC')
      .all() as RawImage[]
    return rows.map((row) => this.toRow(row))
  }

  /** Marks an image used now (for `images` output and LRU decisions). */
  touch(id: number): void {
    this.db.prepare('UPDATE images SET last_used_at = ? WHERE id = ?').run(Date.now(), id)
  }

  /** Removes an image row (its layers stay until no image uses them). */
  remove(id: number): void {
    this.db.prepare('DELETE FROM images WHERE id = ?').run(id)
  }

  private toRow(row: RawImage): ImageRow {
    const layers = this.db
      .prepare('SELECT layer_digest FROM image_layers WHERE image_id = ? ORDER BY position')
      .pluck()
      .all(row.id) as string[]
    return {
      id: row.id,
      reference: row.reference,
      manifestDigest: row.manifest_digest,
      platform: row.platform,
      config: JSON.parse(row.config_json) as unknown,
      createdAt: row.created_at,
      lastUsedAt: row.last_used_at,
      layers,
    }
  }
}

interface RawImage {
  id: number
  reference: string
  manifest_digest: string
  platform: string
  config_json: string
  created_at: number
  last_used_at: number
}
