import { EdgestarError } from '../errors.js'
import type { Store } from '../store/index.js'
import type { ThreadHash } from './decode-worker.js'

/** Units asked of the store's reader thread at once. */
const PAGE_UNITS = 512

/**
 * Rebuilds the uncompressed tar stream of a fully fetched layer from the cache (gap
 * objects, chunk objects and the tails recorded after single chunks, in blob order) and
 * returns its sha256 as `sha256:<hex>`, the value a diffID is compared with. The unit rows
 * come page by page from the store's reader thread, and `hash` (the decode thread's) does
 * the hashing, both off the event loop; the caller drops `hash` when this throws.
 * Throws EDGESTAR_FETCH_INCOMPLETE when a unit or a tail is missing, and the hash's codes.
 */
export async function computeDiffID(
  store: Store,
  layerDigest: string,
  hash: ThreadHash,
): Promise<string> {
  for (let fromOffset = 0; ; ) {
    const page = await store.queries.unitsWithTails(layerDigest, fromOffset, PAGE_UNITS)
    for (const unit of page) {
      if (!unit.isPresent) throw incomplete(layerDigest, unit.offset)
      // A file read returns memory of its own: it moves to the thread, not copied.
      await hash.update(await store.chunks.readAll(unit.chunkKey, unit.slot), true)
      if (unit.kind !== 'chunk' || unit.chunkDigest === null) continue

      if (unit.tail === null) throw incomplete(layerDigest, unit.offset)
      await hash.update(unit.tail)
    }
    if (page.length < PAGE_UNITS) break
    fromOffset = page[page.length - 1]!.offset + 1
  }
  return hash.digest()
}

function incomplete(layerDigest: string, offset: number): EdgestarError {
  return new EdgestarError(
    'EDGESTAR_FETCH_INCOMPLETE',
    `layer ${layerDigest} is not fully fetched (unit at offset ${offset} is missing)`,
    { hint: 'pull the image without --lazy first' },
  )
}
