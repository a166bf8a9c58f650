import { createHash } from 'node:crypto'
import { EdgestarError } from '../errors.js'
import type { Store } from '../store/index.js'

/** Units asked of the store's reader thread at once. */
const PAGE_UNITS = 512

/**
 * Rebuilds the uncompressed tar stream of a fully fetched layer from the cache (gap
 * objects, chunk objects and the tails recorded after single chunks, in blob order) and
 * returns its sha256 as `sha256:<hex>`, the value a diffID is compared with. The unit rows
 * come page by page from the store's reader thread, off the event loop.
 * Throws EDGESTAR_FETCH_INCOMPLETE when a unit or a tail is missing.
 */
export async function computeDiffID(store: Store, layerDigest: string): Promise<string> {
  const hash = createHash('sha256')
  for (let fromOffset = 0; ; ) {
    const page = await store.queries.unitsWithTails(layerDigest, fromOffset, PAGE_UNITS)
    for (const unit of page) {
      if (!unit.isPresent) throw incomplete(layerDigest, unit.offset)
      hash.update(await store.chunks.readAll(unit.chunkKey))
      if (unit.kind !== 'chunk' || unit.chunkDigest === null) continue

      if (unit.tail === null) throw incomplete(layerDigest, unit.offset)
      hash.update(unit.tail)
    }
    if (page.length < PAGE_UNITS) break
    fromOffset = page[page.length - 1]!.offset + 1
  }
  return `sha256:${hash.digest('hex')}`
}

function incomplete(layerDigest: string, offset: number): EdgestarError {
  return new EdgestarError(
    'EDGESTAR_FETCH_INCOMPLETE',
    `layer ${layerDigest} is not fully fetched (unit at offset ${offset} is missing)`,
    { hint: 'pull the image without --lazy first' },
  )
}
