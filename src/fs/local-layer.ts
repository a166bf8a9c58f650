import { EdgestarError, isEdgestarError } from '../errors.js'
import {
  type ChunkDecoder,
  detectLayerFormat,
  ESTARGZ_ERRORS,
  FileReader,
  type LayerTarEntry,
  openLayer,
  readFileRange,
  type TocEntry,
  walkTar,
} from '../estargz/index.js'
// NOTE: past fetch's index on purpose: it would load the scheduler and SQLite into a
// `mount --layer`, which needs only the decode thread.
import { DecodeWorker } from '../fetch/decode-worker.js'
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
 * lazily through the TOC, each chunk decoded and verified on `decoder`'s thread; a plain
 * tar is decompressed once, also there, and its file contents kept in memory. Without
 * `decoder` the layer starts its own and stops it on close.
 * @throws the estargz reader's codes (BAD_MAGIC, TOC_*, READ_FAILED, STREAM_CORRUPT,
 * ABSURD_SIZE for a plain tar past 2 GiB...).
 */
export async function openLocalLayer(
  path: string,
  idBase = 0,
  decoder?: DecodeWorker,
): Promise<LocalLayer> {
  const thread = decoder ?? new DecodeWorker()
  const stopOwn = (): void => {
    if (decoder === undefined) thread.close()
  }
  const reader = await FileReader.open(path).catch((err: unknown) => {
    stopOwn()
    throw err
  })
  try {
    const format = await detectLayerFormat(reader)
    if (PLAIN_FORMATS.has(format)) {
      const layer = await readPlainLayer(reader, format as 'gzip' | 'zstd', { idBase, thread })
      await reader.close()
      stopOwn()
      return { layer, close: async () => {} }
    }

    const index = await openLayer(reader)
    // FUSE reads: demand, ahead of nothing else on this thread.
    const decode: ChunkDecoder = (compression, extent, compressed) =>
      thread.decodeChunk({ compression, extent, compressed }, 'demand')
    const layer = new TocLayer(
      index.entries,
      (name, offset, length) => readFileRange(reader, index, name, { offset, length, decode }),
      idBase,
    )
    const close = async (): Promise<void> => {
      await reader.close()
      stopOwn()
    }
    return { layer, close }
  } catch (err) {
    await reader.close()
    stopOwn()
    throw err
  }
}

// TODO(fs): a plain tar layer opened locally is read and decompressed whole, and every
// file's content stays in the heap; fine for tests and small layers, not for a
// multi-gigabyte layer (past 2 GiB decompressed it is refused).
async function readPlainLayer(
  reader: FileReader,
  format: 'gzip' | 'zstd',
  options: { idBase: number; thread: DecodeWorker },
): Promise<TocLayer> {
  const compressed = await reader.readAt(0, reader.sizeBytes)
  let tar: Buffer
  try {
    tar = await options.thread.inflate(format, compressed, 'demand')
  } catch (cause) {
    throw plainLayerError(reader.path, format, cause)
  }

  // Contents are views of `tar`, not copies: the tar is about the size of its contents.
  const entries: TocLikeEntry[] = []
  const contents = new Map<string, Buffer>()
  await walkTar(oneBuffer(tar), async (entry, content) => {
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
    options.idBase,
  )
}

async function* oneBuffer(data: Buffer): AsyncGenerator<Buffer> {
  yield data
}

// The thread's own failures keep their codes; a decompressor's error says the blob is bad.
function plainLayerError(path: string, format: string, cause: unknown): Error {
  if (isEdgestarError(cause)) return cause
  const isTooLarge = cause instanceof RangeError || hasCode(cause, 'ERR_BUFFER_TOO_LARGE')
  if (isTooLarge)
    return new EdgestarError(
      ESTARGZ_ERRORS.ABSURD_SIZE,
      `plain ${format} layer ${path} decompresses past what one buffer holds (2 GiB)`,
      { hint: 'convert it to eStargz with `edgestar convert` and mount that', cause },
    )
  return new EdgestarError(
    ESTARGZ_ERRORS.STREAM_CORRUPT,
    `plain ${format} layer ${path} does not decompress`,
    { hint: 'the blob is corrupt or truncated; fetch it again', cause },
  )
}

function hasCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code
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
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
}

/**
 * The merged view of local layer blobs, `paths` bottom layer first, their chunks decoded
 * on one decode thread shared by every layer. Closing the view closes the blob files and
 * stops the thread.
 */
export async function openLocalView(paths: string[]): Promise<MergedView> {
  // One decode thread for every layer of the view.
  const decoder = new DecodeWorker()
  const opened: LocalLayer[] = []
  const closeAll = async (): Promise<void> => {
    for (const layer of opened) await layer.close()
    decoder.close()
  }
  try {
    let idBase = 0
    for (const path of paths) {
      const local = await openLocalLayer(path, idBase, decoder)
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
