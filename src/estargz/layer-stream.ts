import type { Readable } from 'node:stream'
import { notImplemented } from './not-implemented.js'
import type { LayerFormat, RandomAccessReader } from './types.js'

/** One tar entry met while walking a layer's decompressed stream. */
export interface LayerTarEntry {
  /** Cleaned name (see TocEntry). */
  name: string
  /** Raw tar header name. */
  rawName: string
  type: 'reg' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo'
  size: number
  mode: number
  uid: number
  gid: number
  userName?: string
  groupName?: string
  mtimeSec: number
  linkName?: string
  devMajor: number
  devMinor: number
  /** xattr name → raw value bytes (PAX SCHILY.xattr.*). */
  xattrs: Record<string, Buffer>
}

/** What a full pass over the decompressed stream measured. */
export interface LayerStreamResult {
  /** `sha256:<hex>` of the whole decompressed stream. */
  diffID: string
  uncompressedSizeBytes: number
}

/**
 * Tells the format of a blob from its footer and first bytes, reading at most a few
 * hundred bytes. Throws BAD_MAGIC for anything that is no layer edgestar reads, and
 * FOOTER_TRUNCATED for an empty blob.
 */
export async function detectLayerFormat(_reader: RandomAccessReader): Promise<LayerFormat> {
  return notImplemented('detectLayerFormat')
}

/**
 * The blob's whole decompressed stream (gzip members / zstd frames, skippable frames
 * skipped), read through `reader` in large sequential pieces.
 */
export function decompressedStream(_reader: RandomAccessReader, _format: LayerFormat): Readable {
  return notImplemented('decompressedStream')
}

/**
 * Walks the whole decompressed stream once: hashes it for the diffID and, when
 * `onEntry` is given, hands every tar entry (format metadata entries included) with
 * its content stream, which onEntry must consume or let drain.
 * Throws STREAM_CORRUPT.
 */
export async function walkLayer(
  _reader: RandomAccessReader,
  _format: LayerFormat,
  _onEntry?: (entry: LayerTarEntry, content: Readable) => Promise<void>,
): Promise<LayerStreamResult> {
  return notImplemented('walkLayer')
}
