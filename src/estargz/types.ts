/**
 * Shared vocabulary of the eStargz format layer: the random-access reader every
 * parser reads through, the TOC entry shape after parsing and validation, and the
 * chunk extents a lazy reader fetches. Spec: containerd/stargz-snapshotter docs/estargz.md.
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

/**
 * The compression/footer family a blob was recognised as: `estargz` (51-byte gzip
 * footer), `stargz-legacy` (47-byte gzip footer), `zstd-chunked` (stargz-snapshotter's
 * 40-byte footer) and `zstd-chunked-containers` (containers/storage's 64-byte footer).
 */
export type BlobFormat = 'estargz' | 'stargz-legacy' | 'zstd-chunked' | 'zstd-chunked-containers'

/** A compressed tar layer without a TOC: read whole, never lazily. */
export type PlainFormat = 'gzip' | 'zstd'

/** Any layer blob edgestar can read: one with a TOC, or a plain compressed tar. */
export type LayerFormat = BlobFormat | PlainFormat

/** The compression underneath a format, which decides how chunks are decoded. */
export type Compression = 'gzip' | 'zstd'

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

/**
 * One TOC entry after validation, with the spec's JSON field names. Differences from
 * the raw JSON, all the way the reference reader resolves them:
 * - `name` (and a hardlink's `linkName`) is cleaned: no leading `/` or `./`, no trailing
 *   `/`, no `.` or `..` components; the root directory is `''`.
 * - `chunk` entries carry the name of the `reg` entry they continue.
 * - `chunkSize` is the actual byte count of the chunk (the JSON's 0 means "to the end
 *   of the file"); 0 only for files without content.
 * - `userName`/`groupName` are filled from an earlier entry with the same uid/gid.
 * - numbers absent from the JSON are 0; strings absent are undefined.
 */
export interface TocEntry {
  name: string
  type: TocEntryType
  /** File size in bytes (`reg` only; 0 otherwise). */
  size: number
  /** RFC 3339 modification time, as in the JSON. */
  modtime?: string
  /** Symlink target (verbatim) or hardlink target entry name (cleaned). */
  linkName?: string
  /** Tar header mode: permission bits plus 04000 setuid, 02000 setgid, 01000 sticky. */
  mode: number
  uid: number
  gid: number
  userName?: string
  groupName?: string
  devMajor: number
  devMinor: number
  /** xattr name → base64 of the value, as in the JSON. */
  xattrs?: Record<string, string>
  /** `sha256:<hex>` of the whole file content (`reg`). */
  digest?: string
  /** Where this entry's compressed chunk stream starts in the blob (0 when none). */
  offset: number
  /** containers/storage dialect only: where that compressed stream ends. */
  endOffset?: number
  chunkOffset: number
  chunkSize: number
  /** `sha256:<hex>` of this chunk's uncompressed bytes. */
  chunkDigest?: string
  /** Bytes to skip in the decompressed stream at `offset` before this chunk starts. */
  innerOffset: number
  /** containers/storage dialect: `zeros` marks a hole with no bytes in the blob. */
  chunkType?: 'zeros'
}

/**
 * One chunk of one regular file, with what a lazy reader needs to fetch and decode it.
 * `compressedSize` is the number of blob bytes from `compressedOffset` to fetch: the
 * chunk's stream runs up to the next chunk's stream (or the TOC) and may hold several
 * gzip members or zstd frames, followed by tar padding and headers that are discarded.
 */
export interface ChunkExtent {
  entryName: string
  chunkOffset: number
  chunkSize: number
  compressedOffset: number
  compressedSize: number
  innerOffset: number
  chunkDigest?: string
  /** A hole (containers/storage `chunkType: zeros`): nothing to fetch, decodes to zeros. */
  isZeros?: boolean
}

/** Whether the layer names files to prefetch, says there are none, or says nothing. */
export type LandmarkState = 'prefetch' | 'no-prefetch' | 'none'

/** A parsed and validated layer: where its TOC is, its entries and its chunks. */
export interface LayerIndex {
  format: BlobFormat
  compression: Compression
  blobSizeBytes: number
  /** `sha256:<hex>` of the uncompressed TOC JSON (the TOC digest annotation's value). */
  tocDigest: string
  /** Where the TOC's compressed stream (gzip member or zstd frame) starts in the blob. */
  tocOffset: number
  tocCompressedSize: number
  footerSizeBytes: number
  landmark: LandmarkState
  /** Every TOC entry in TOC order, validated (see TocEntry). Includes `chunk` entries. */
  entries: TocEntry[]
  /** Every chunk of every regular file, in TOC order. */
  chunks: ChunkExtent[]
  /** Non-chunk entries by cleaned name (landmarks and root included). */
  byName: ReadonlyMap<string, TocEntry>
  /** Chunks of a regular file by its cleaned name, in file order. */
  chunksByName: ReadonlyMap<string, ChunkExtent[]>
}

/** Well-known names the format adds to a layer; a reader hides them from the image view. */
export const PREFETCH_LANDMARK = '.prefetch.landmark'
export const NO_PREFETCH_LANDMARK = '.no.prefetch.landmark'
export const TOC_TAR_NAME = 'stargz.index.json'

/** Manifest annotations that carry what a lazy reader must trust. */
export const TOC_DIGEST_ANNOTATION = 'containerd.io/snapshot/stargz/toc.digest'
export const UNCOMPRESSED_SIZE_ANNOTATION = 'io.containers.estargz.uncompressed-size'

/** containers/storage (Podman) zstd:chunked annotations: TOC position and checksum. */
export const CONTAINERS_MANIFEST_CHECKSUM_ANNOTATION =
  'io.github.containers.zstd-chunked.manifest-checksum'
export const CONTAINERS_MANIFEST_POSITION_ANNOTATION =
  'io.github.containers.zstd-chunked.manifest-position'
export const CONTAINERS_TARSPLIT_POSITION_ANNOTATION =
  'io.github.containers.zstd-chunked.tarsplit-position'

/** True for entries the format adds (landmarks, the TOC) that are not layer content. */
export function isFormatMetaEntry(name: string): boolean {
  return name === PREFETCH_LANDMARK || name === NO_PREFETCH_LANDMARK || name === TOC_TAR_NAME
}
