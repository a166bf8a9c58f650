/**
 * Shared vocabulary of the eStargz format layer: the random-access reader every
 * parser reads through, and the TOC entry shape after parsing and validation.
 * Spec: containerd/stargz-snapshotter docs/estargz.md.
 */

/**
 * Random access to a blob: a local file today, HTTP ranges against a registry tomorrow.
 * `readAt` resolves with exactly `length` bytes, or fewer only at the end of the blob.
 */
export interface RandomAccessReader {
  /** Total blob size in bytes. */
  readonly sizeBytes: number
  readAt(offset: number, length: number): Promise<Buffer>
}

/** The compression/footer family a blob was recognised as. */
export type BlobFormat = 'estargz' | 'stargz-legacy' | 'zstd-chunked' | 'zstd-chunked-containers'

/** TOC entry types as spelled in the TOC JSON. */
export type TocEntryType =
  | 'dir'
  | 'reg'
  | 'symlink'
  | 'hardlink'
  | 'char'
  | 'block'
  | 'fifo'
  | 'chunk'

/** Well-known names the format adds to a layer; a reader hides them from the image view. */
export const PREFETCH_LANDMARK = '.prefetch.landmark'
export const NO_PREFETCH_LANDMARK = '.no.prefetch.landmark'
export const TOC_TAR_NAME = 'stargz.index.json'

/** Manifest annotations that carry what a lazy reader must trust. */
export const TOC_DIGEST_ANNOTATION = 'containerd.io/snapshot/stargz/toc.digest'
export const UNCOMPRESSED_SIZE_ANNOTATION = 'io.containers.estargz.uncompressed-size'
