import { createHash } from 'node:crypto'
import { EdgestarError } from '../errors.js'
import type { Store } from '../store/index.js'

/**
 * Rebuilds the uncompressed tar stream of a fully fetched layer from the cache (gap
 * objects, chunk objects and the tails recorded after single chunks, in blob order) and
 * returns its sha256 as `sha256:<hex>`, the value a diffID is compared with.
 * Throws EDGESTAR_FETCH_INCOMPLETE when a unit or a tail is missing.
 */
export async function computeDiffID(store: Store, layerDigest: string): Promise<string> {
  const hash = createHash('sha256')
  for (const unit of store.layers.units(layerDigest)) {
    if (!unit.isPresent) throw incomplete(layerDigest, unit.offset)
    hash.update(await store.chunks.readAll(unit.chunkKey))
    if (unit.kind !== 'chunk' || unit.chunkDigest === null) continue

    const tail = store.layers.unitTail(layerDigest, unit.offset)
    if (tail === null) throw incomplete(layerDigest, unit.offset)
    hash.update(tail)
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
