/**
 * Compresses one segment of a layer into one gzip member or one zstd frame. Used both
 * inside the compression workers and inline (no workers, or tiny inputs).
 */
import { gzipSync } from 'node:zlib'
import { compress as zstdCompress } from 'zstd-napi'
import type { ConvertFormat } from './convert-types.js'

/** Compresses `data` as a complete gzip member or zstd frame at `level`. */
export function compressSegment(format: ConvertFormat, level: number, data: Uint8Array): Buffer {
  if (format === 'estargz') return gzipSync(data, { level })
  return zstdCompress(data, { compressionLevel: level, checksumFlag: false })
}
