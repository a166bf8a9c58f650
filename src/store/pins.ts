import type { Database } from 'better-sqlite3'

/**
 * Pins keep an image's chunks out of eviction while it is mounted or running. A pin
 * records the holder's pid, so pins of a process that died (kill -9) stop counting
 * without anyone removing them; `prune` clears them.
 */
export class Pins {
  constructor(private readonly db: Database) {}

  /** Pins image `imageId` for `holder` (a mount point, a deployment); returns the pin id. */
  add(imageId: number, holder: string, pid = process.pid): number {
    const result = this.db
      .prepare('INSERT INTO pins (image_id, holder, pid, created_at) VALUES (?, ?, ?, ?)')
      .run(imageId, holder, pid, Date.now())
    return Number(result.lastInsertRowid)
  }

  /** Releases one pin. */
  remove(pinId: number): void {
    this.db.prepare('DELETE FROM pins WHERE id = ?').run(pinId)
  }

  /** Removes pins whose process is gone; returns how many. */
  prune(): number {
    const rows = this.db.prepare('SELECT id, pid FROM pins').all() as { id: number; pid: number }[]
    const dead = rows.filter((row) => !isProcessAlive(row.pid))
    for (const row of dead) this.remove(row.id)
    return dead.length
  }

  /** Ids of images pinned by a live process. */
  pinnedImageIds(): number[] {
    this.prune()
    return this.db.prepare('SELECT DISTINCT image_id FROM pins').pluck().all() as number[]
  }

  /** SQL sub-select of the chunk keys held by pinned images (for the cache's eviction). */
  pinnedKeysSql(): string {
    const ids = this.pinnedImageIds().map((id) => Math.trunc(id))
    if (ids.length === 0) return 'SELECT NULL WHERE 0'
    return `SELECT u.chunk_key FROM layer_units u JOIN image_layers il ON il.layer_digest = u.layer_digest
      WHERE il.image_id IN (${ids.join(',')})`
  }
}

/** True when process `pid` exists (EPERM counts: it exists under another user). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
