import { createHash } from 'node:crypto'
import { type MergedView, openStoreView } from '../../src/fs/index.js'
import { TocLayer, type TocLikeEntry } from '../../src/fs/toc-layer.js'
import { Store } from '../../src/store/index.js'

/** A small in-memory layer: `path` → content (reg) or an entry description. */
export type LayerSpec = Record<string, string | (Partial<TocLikeEntry> & { content?: string })>

/**
 * Builds `TocLayer`s, bottom first, with disjoint entry ids. A string value is a regular
 * file's content; a name ending in `/` is a directory; objects give any other entry.
 */
export function buildLayers(...specs: LayerSpec[]): TocLayer[] {
  const layers: TocLayer[] = []
  let idBase = 0
  for (const spec of specs) {
    const { entries, contents } = specEntries(spec)
    const layer = new TocLayer(
      entries,
      async (name, offset, length) => {
        const data = contents.get(name) ?? Buffer.alloc(0)
        return data.subarray(offset, offset + length)
      },
      idBase,
    )
    idBase = layer.nextId
    layers.push(layer)
  }
  return layers
}

/** A store in `stateDir` with one layer row per spec (bottom first), and its digests. */
export function recordLayers(
  stateDir: string,
  ...specs: LayerSpec[]
): {
  store: Store
  digests: string[]
  contents: Map<string, Buffer>
} {
  const store = Store.open(stateDir)
  const digests: string[] = []
  const contents = new Map<string, Buffer>()
  for (const spec of specs) {
    const specified = specEntries(spec)
    const digest = `sha256:${createHash('sha256').update(JSON.stringify(spec)).digest('hex')}`
    store.layers.upsert({
      digest,
      sizeBytes: 0,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      diffID: null,
      tocDigest: null,
      tocOffset: null,
      format: 'estargz',
      verification: 'lazy',
      sourceReference: 'test/none',
    })
    store.layers.recordIndex(digest, { entries: specified.entries, chunks: [], blobSizeBytes: 0 })
    for (const [name, data] of specified.contents) contents.set(`${digest} ${name}`, data)
    digests.push(digest)
  }
  return { store, digests, contents }
}

/** The same stack as `buildLayers`, served from SQLite rows through `openStoreView`. */
export async function buildStoreView(stateDir: string, ...specs: LayerSpec[]): Promise<MergedView> {
  const { store, digests, contents } = recordLayers(stateDir, ...specs)
  store.close()
  return openStoreView({
    dbPath: store.dbPath,
    layerDigests: digests,
    read: async (digest, name, offset, length) =>
      (contents.get(`${digest} ${name}`) ?? Buffer.alloc(0)).subarray(offset, offset + length),
  })
}

function specEntries(spec: LayerSpec): { entries: TocLikeEntry[]; contents: Map<string, Buffer> } {
  {
    const contents = new Map<string, Buffer>()
    const entries: TocLikeEntry[] = []
    for (const [rawName, value] of Object.entries(spec)) {
      const isDir = rawName.endsWith('/')
      const name = rawName.replace(/\/$/, '')
      const described = typeof value === 'string' ? { content: value } : value
      const content = described.content === undefined ? undefined : Buffer.from(described.content)
      if (content) contents.set(name, content)
      entries.push({
        name,
        type: isDir ? 'dir' : 'reg',
        size: content?.length ?? 0,
        mode: isDir ? 0o755 : 0o644,
        uid: 0,
        gid: 0,
        devMajor: 0,
        devMinor: 0,
        modtime: '2023-01-01T00:00:00Z',
        ...withoutContent(described),
      })
    }
    return { entries, contents }
  }
}

function withoutContent(
  described: Partial<TocLikeEntry> & { content?: string },
): Partial<TocLikeEntry> {
  const { content: _content, ...rest } = described
  return rest
}
