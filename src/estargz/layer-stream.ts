import { pipeline, Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { DecompressStream } from 'zstd-napi'
import { EdgestarError, isEdgestarError } from '../errors.js'
import { compressionOf } from './decode-chunk.js'
import { sha256Hasher } from './digest.js'
import { ESTARGZ_ERRORS } from './error-codes.js'
import { FOOTER_PROBE_BYTES, parseFooter } from './footer.js'
import { type LayerTarEntry, walkTar } from './tar-walk.js'
import type { LayerFormat, RandomAccessReader } from './types.js'

export type { LayerTarEntry, TarEntryType } from './tar-walk.js'

const READ_STEP_BYTES = 1024 * 1024

/** What a full pass over the decompressed stream measured. */
export interface LayerStreamResult {
  /** `sha256:<hex>` of the whole decompressed stream. */
  diffID: string
  uncompressedSizeBytes: number
}

/**
 * Tells the format of a blob from its footer and first bytes, reading at most a few
 * hundred bytes. Throws the footer codes of openLayer (BAD_MAGIC, FOOTER_TRUNCATED,
 * TOC_OUT_OF_RANGE); a plain gzip or zstd tar is `gzip` / `zstd`.
 */
export async function detectLayerFormat(reader: RandomAccessReader): Promise<LayerFormat> {
  const probe = Math.min(reader.sizeBytes, FOOTER_PROBE_BYTES)
  const [tail, head] = await Promise.all([
    reader.readAt(reader.sizeBytes - probe, probe),
    reader.readAt(0, Math.min(reader.sizeBytes, 4)),
  ])
  try {
    return parseFooter(tail, head, reader.sizeBytes).format
  } catch (err) {
    if (!isEdgestarError(err, ESTARGZ_ERRORS.NO_TOC)) throw err
    return head[0] === 0x1f ? 'gzip' : 'zstd'
  }
}

/**
 * The blob's whole decompressed stream (every gzip member / zstd frame; zstd skippable
 * frames such as the TOC are skipped), read through `reader` in 1 MiB sequential pieces.
 * The stream errors with STREAM_CORRUPT when the compression is broken.
 */
export function decompressedStream(reader: RandomAccessReader, format: LayerFormat): Readable {
  const decoder = compressionOf(format) === 'gzip' ? createGunzip() : new DecompressStream()
  const out = pipeline(Readable.from(readSequentially(reader)), decoder, () => {})
  return out
}

async function* readSequentially(reader: RandomAccessReader): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < reader.sizeBytes; offset += READ_STEP_BYTES) {
    const piece = await reader.readAt(offset, Math.min(READ_STEP_BYTES, reader.sizeBytes - offset))
    if (piece.length === 0) return
    yield piece
  }
}

/**
 * Walks the whole decompressed stream once: hashes it for the diffID and, when
 * `onEntry` is given, hands every tar entry (format metadata entries such as the
 * landmark and `stargz.index.json` included) with its content, which onEntry may read
 * or leave (the rest is skipped).
 * Throws STREAM_CORRUPT, NAME_ESCAPE, and whatever onEntry throws.
 */
export async function walkLayer(
  reader: RandomAccessReader,
  format: LayerFormat,
  onEntry?: (entry: LayerTarEntry, content: AsyncIterable<Buffer>) => Promise<void>,
): Promise<LayerStreamResult> {
  const hasher = sha256Hasher()
  let uncompressedSizeBytes = 0
  const stream = decompressedStream(reader, format)

  async function* hashed(): AsyncGenerator<Buffer> {
    try {
      for await (const piece of stream as AsyncIterable<Buffer>) {
        hasher.update(piece)
        uncompressedSizeBytes += piece.length
        yield piece
      }
    } catch (cause) {
      if (isEdgestarError(cause)) throw cause
      throw new EdgestarError(
        ESTARGZ_ERRORS.STREAM_CORRUPT,
        `${format} layer stream does not decompress`,
        {
          hint: 'the blob is corrupt or truncated; fetch it again',
          cause,
        },
      )
    }
  }

  try {
    if (onEntry) await walkTar(hashed(), onEntry)
    else for await (const _ of hashed());
  } finally {
    stream.destroy()
  }
  return { diffID: hasher.digest(), uncompressedSizeBytes }
}
