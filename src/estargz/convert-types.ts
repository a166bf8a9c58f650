/**
 * Options and results of the converter (`convertLayer`), shared by the writer, the
 * input sources and the CLI.
 */

import type { SkippedEntry } from './tar-source.js'

/** The two layer formats edgestar writes (stargz-snapshotter dialect for zstd:chunked). */
export type ConvertFormat = 'estargz' | 'zstd-chunked'

/** Default chunk size: the reference writer's (estargz.Writer with ChunkSize <= 0). */
export const DEFAULT_CHUNK_SIZE_BYTES = 4 << 20

/** Chunk sizes accepted: below, a layer is all overhead; above, a memory hog. */
export const MIN_CHUNK_SIZE_BYTES = 4096
export const MAX_CHUNK_SIZE_BYTES = 256 << 20

/** Default compression levels: the reference's (gzip.BestCompression; zstd level 3). */
export const DEFAULT_GZIP_LEVEL = 9
export const DEFAULT_ZSTD_LEVEL = 3

/** How far a conversion has got, for progress bars. */
export interface ConvertProgress {
  /** Uncompressed file content bytes consumed so far. */
  doneBytes: number
  /** Total file content bytes of the input (known once the input is indexed). */
  totalBytes: number
  /** Compressed bytes written to the blob so far. */
  writtenBytes: number
}

/** Options of `convertLayer`. */
export interface ConvertOptions {
  /** Output format; default `estargz`. */
  format?: ConvertFormat
  /** Largest uncompressed chunk of a regular file; default 4 MiB. */
  chunkSizeBytes?: number
  /**
   * Paths placed first (with their parent directories and hardlink targets), followed
   * by `.prefetch.landmark`; without any, `.no.prefetch.landmark` leads the layer.
   * Given as in the layer (`usr/bin/python3`, `/usr/bin/python3` and `./usr/…` are the same).
   */
  prioritizedPaths?: string[]
  /** Missing prioritized paths are an error unless this is true (they are then reported). */
  allowMissingPrioritized?: boolean
  /** Compression level: gzip 0..9 (default 9), zstd 1..22 (default 3). */
  level?: number
  /** Compression workers (threads); default one per CPU (none for inputs under 8 MiB). */
  workers?: number
  /**
   * From a directory: which xattrs to keep, by name prefix. Default every xattr except
   * `security.selinux` (a host label, not image content).
   */
  xattrPrefixes?: string[]
  /** Directory for temporary files (a decompressed copy of a compressed tar input). */
  tempDir?: string
  /** Called now and then with progress; must be cheap. */
  onProgress?: (progress: ConvertProgress) => void
  /** Called for a degraded but continuing conversion (xattrs unreadable, say). */
  onWarning?: (message: string) => void
}

/** What the layer writer produced: digests, sizes and the annotations a manifest needs. */
export interface LayerWriteResult {
  /** sha256 of the blob, `sha256:<hex>`. */
  digest: string
  /** Blob size in bytes. */
  size: number
  /** sha256 of the uncompressed TOC JSON (annotation containerd.io/snapshot/stargz/toc.digest). */
  tocDigest: string
  /** sha256 of the blob's whole decompressed stream: the image config's diff_id. */
  diffID: string
  /** Byte length of the decompressed stream. */
  uncompressedSize: number
  /** Where the TOC starts in the blob (gzip member or zstd frame). */
  tocOffset: number
  /** Number of TOC entries (chunk entries included). */
  tocEntries: number
  /** Layer annotations a manifest should carry for lazy pulling. */
  annotations: Record<string, string>
}

/** What a conversion produced: the layer descriptor and what a manifest must carry. */
export interface ConvertResult extends LayerWriteResult {
  format: ConvertFormat
  /** OCI layer media type. */
  mediaType: string
  /** Prioritized paths not found in the input (only with allowMissingPrioritized). */
  missedPrioritized: string[]
  /** Input entries left out of the layer (sockets, entries the format writes itself). */
  skipped: SkippedEntry[]
}
