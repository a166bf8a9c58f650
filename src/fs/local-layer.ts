import {
  detectLayerFormat,
  FileReader,
  type LayerTarEntry,
  openLayer,
  readFileRange,
  type TocEntry,
  walkLayer,
} from '../estargz/index.js'
import { MergedView } from './merged-view.js'
import { TocLayer, type TocLikeEntry } from './toc-layer.js'

/** A layer opened from a local blob file, and what to close when done. */
export interface LocalLayer {
  layer: TocLayer
  close(): Promise<void>
}

/** Blob formats that carry no TOC and can only be read whole. */
const PLAIN_FORMATS = new Set(['gzip', 'zstd'])

/**
 * Opens a local layer blob (eStargz, legacy stargz, zstd:chunked, or a plain gzip/zstd
 * tar) as a `LayerSource` whose entry ids start at `idBase`. Chunked formats are read
 * lazily through the TOC, each chunk verified; a plain tar is decompressed once and its
 * file contents kept in memory.
 * @throws the estargz reader's codes (BAD_MAGIC, TOC_*, READ_FAILED...).
 */
export async function openLocalLayer(path: string, idBase = 0): Promise<LocalLayer> {
  const reader = await FileReader.open(path)
  try {
    const format = await detectLayerFormat(reader)
    if (PLAIN_FORMATS.has(format)) {
      const layer = await readPlainLayer(reader, format as 'gzip' | 'zstd', idBase)
      await reader.close()
      return { layer, close: async () => {} }
    }

    const index = await openLayer(reader)
    const layer = new TocLayer(
      index.entries,
      (name, offset, length) => readFileRange(reader, index, name, { offset, length }),
      idBase,
    )
    return { layer, close: () => reader.close() }
  } catch (err) {
    await reader.close()
    throw err
  }
}

// TODO(fs): a plain tar layer opened locally keeps every file's content in the heap; fine
// for tests and small layers, not for a multi-gigabyte layer.
async function readPlainLayer(
  reader: FileReader,
  format: 'gzip' | 'zstd',
  idBase: number,
): Promise<TocLayer> {
  const entries: TocLikeEntry[] = []
  const contents = new Map<string, Buffer>()
  await walkLayer(reader, format, async (entry, content) => {
    entries.push(toTocLike(entry))
    const data = await collect(content)
    if (entry.type === 'reg' && data.length > 0) contents.set(entry.name, data)
  })

  return new TocLayer(
    entries,
    async (name, offset, length) => {
      const data = contents.get(name) ?? Buffer.alloc(0)
      return data.subarray(offset, offset + length)
    },
    idBase,
  )
}

function toTocLike(entry: LayerTarEntry): TocLikeEntry {
  const xattrs: Record<string, string> = {}
  for (const [key, value] of Object.entries(entry.xattrs)) xattrs[key] = value.toString('base64')
  return {
    name: entry.name,
    type: entry.type as TocEntry['type'],
    size: entry.size,
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    devMajor: entry.devMajor,
    devMinor: entry.devMinor,
    modtime: new Date(entry.mtimeSec * 1000).toISOString(),
    linkName: entry.linkName,
    xattrs,
  }
}

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const part of stream) parts.push(part as Buffer)
  return Buffer.concat(parts)
}

/**
 * The merged view of local layer blobs, `paths` bottom layer first. Closing the view
 * closes the blob files.
 */
export async function openLocalView(paths: string[]): Promise<MergedView> {
  const opened: LocalLayer[] = []
  const closeAll = async (): Promise<void> => {
    for (const layer of opened) await layer.close()
  }
  try {
    let idBase = 0
    for (const path of paths) {
      const local = await openLocalLayer(path, idBase)
      opened.push(local)
      idBase = local.layer.nextId
    }
  } catch (err) {
    await closeAll()
    throw err
  }
  return new MergedView(
    opened.map((local) => local.layer),
    { onClose: closeAll },
  )
}
