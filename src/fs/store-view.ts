import { EdgestarError } from '../errors.js'
import { MergedView, type MergedViewOptions } from './merged-view.js'
import { ReadWindowCache } from './read-window-cache.js'
import { IDS_PER_LAYER, type LayerReadFn, StoreLayer } from './store-layer.js'
import { TocQueryClient } from './toc-query-client.js'

/** What `openStoreView` needs: where the rows are and how to read file bytes. */
export interface StoreViewOptions extends Omit<MergedViewOptions, 'onClose'> {
  /** The store's SQLite database (`Store.dbPath`). */
  dbPath: string
  /** The image's layer digests, bottom layer first; each must have its TOC rows recorded. */
  layerDigests: string[]
  /** Lazy file read: chunk cache first, else await the fetch scheduler. */
  read: LayerReadFn
  /** Bytes of recently read chunks kept in memory (default 16 MiB). */
  readCacheBytes?: number
}

const DEFAULT_READ_CACHE_BYTES = 16 << 20

const MAX_LAYERS = Math.floor(2 ** 32 / IDS_PER_LAYER) - 1

/**
 * The merged view of an image recorded in the store: attributes and listings come from
 * the TOC rows (queried in a worker thread), bytes through `read`. Close it to stop the
 * worker. Throws EDGESTAR_FS_TOO_MANY_LAYERS past 255 layers.
 */
export async function openStoreView(options: StoreViewOptions): Promise<MergedView> {
  const { dbPath, layerDigests, read, readCacheBytes, ...viewOptions } = options
  if (layerDigests.length > MAX_LAYERS) {
    throw new EdgestarError(
      'EDGESTAR_FS_TOO_MANY_LAYERS',
      `image has ${layerDigests.length} layers; the FUSE view serves at most ${MAX_LAYERS}`,
      { hint: 'squash the image into fewer layers' },
    )
  }

  const queries = new TocQueryClient(dbPath)
  const windows = new ReadWindowCache(readCacheBytes ?? DEFAULT_READ_CACHE_BYTES)
  try {
    const layers = await Promise.all(
      layerDigests.map((digest, position) =>
        StoreLayer.open(digest, position, queries, read, windows),
      ),
    )
    return new MergedView(layers, { ...viewOptions, onClose: () => queries.close() })
  } catch (err) {
    await queries.close()
    throw err
  }
}
