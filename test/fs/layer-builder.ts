import { TocLayer, type TocLikeEntry } from '../../src/fs/toc-layer.js'

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
        ...described,
      })
    }
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
