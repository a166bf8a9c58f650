/**
 * Row shapes the store hands out and takes in. Field names of TOC entries follow the
 * eStargz spec (containerd/stargz-snapshotter docs/estargz.md) so a parsed `TocEntry`
 * from `estargz/` can be passed in as it is.
 */

/** How a layer may be served: see DESIGN.md "A layer with nothing to check against". */
export type LayerVerification = 'lazy' | 'whole' | 'unverified'

/**
 * Where a layer stands: `indexed` (TOC rows recorded, chunks fetched on demand),
 * `complete` (every unit present), `verified` (complete and the diffID matched),
 * `failed` (the diffID did not match; its gap units were dropped to be fetched again).
 */
export type LayerState = 'indexed' | 'complete' | 'verified' | 'failed'

/** An image as recorded by `images.record`. */
export interface ImageRow {
  id: number
  reference: string
  manifestDigest: string
  platform: string
  config: unknown
  createdAt: number
  lastUsedAt: number
  /** Layer digests, bottom layer first. */
  layers: string[]
}

/** What `layers.upsert` takes. */
export interface LayerInput {
  digest: string
  sizeBytes: number
  mediaType: string
  diffID: string | null
  tocDigest: string | null
  tocOffset: number | null
  /** `estargz`, `stargz-legacy`, `zstd-chunked`, ... or `tar-gzip` / `tar-zstd` / `tar`. */
  format: string
  verification: LayerVerification
  /** A reference the layer can be fetched through (registry/repository[:tag]). */
  sourceReference: string
}

/** A layer row. */
export interface LayerRow extends LayerInput {
  state: LayerState
  indexedAt: number
}

/** A TOC entry as given to the store (a subset of estargz's `TocEntry`, non-chunk types). */
export interface TocEntryInput {
  name: string
  type: string
  size?: number
  modtime?: string
  linkName?: string
  mode?: number
  uid?: number
  gid?: number
  userName?: string
  groupName?: string
  devMajor?: number
  devMinor?: number
  xattrs?: Record<string, string>
  digest?: string
}

/** A TOC entry row; `ord` is its position in the TOC (file order), `parent` its dir. */
export interface TocRow {
  layerDigest: string
  ord: number
  name: string
  parent: string
  base: string
  type: string
  size: number
  modtime: string | null
  linkName: string | null
  mode: number
  uid: number
  gid: number
  userName: string | null
  groupName: string | null
  devMajor: number | null
  devMinor: number | null
  xattrs: Record<string, string> | null
  digest: string | null
}

/** One chunk extent of a file, as estargz's `ChunkExtent`. */
export interface ChunkExtentInput {
  entryName: string
  chunkOffset: number
  chunkSize: number
  compressedOffset: number
  compressedSize: number
  innerOffset: number
  chunkDigest?: string | null
}

/**
 * A fetch unit: one range of the blob fetched and decoded as a whole. `chunk` units hold
 * file data (one or more chunk extents share one unit when the writer packed them);
 * `gap` units are the rest of the blob (tar headers, TOC, footer), only needed to check
 * the layer's diffID after a full pull.
 */
export interface UnitRow {
  layerDigest: string
  /** Offset of the unit in the compressed blob. */
  offset: number
  /** Compressed size in bytes. */
  sizeBytes: number
  kind: 'chunk' | 'gap'
  chunkKey: string
  /** The decoded offset inside the unit at which the stored object starts. */
  objectFrom: number
  /** Bytes of the stored object. */
  dataBytes: number
  /** Decoded size of the whole unit, once known (a chunk object may omit tar padding). */
  memberBytes: number | null
  /** Background order: 0 = prefetch set (before the landmark), 1 = the rest, 2 = gaps. */
  rank: number
  /** The chunk digest to verify against, for single-chunk units. */
  chunkDigest: string | null
  /** True when the object is in the cache. */
  isPresent: boolean
  /** Where the object is, when present. */
  slot: ChunkSlot
}

/**
 * Where a present chunk object's bytes are: `size` bytes at `offset` in pack file `pack`
 * (see `ChunkCache`); null for an object kept in a file of its own.
 */
export type ChunkSlot = { pack: string; offset: number; size: number } | null

/** Where the bytes of one chunk extent of a file live. */
export interface ChunkRef {
  entryName: string
  chunkOffset: number
  chunkSize: number
  unitOffset: number
  innerOffset: number
  chunkDigest: string | null
  chunkKey: string
  /** Offset of this chunk's first byte inside the stored object. */
  objectOffset: number
  isPresent: boolean
  /** Where the object is, when present. */
  slot: ChunkSlot
}

/** Bytes present versus total, counted in compressed blob bytes of chunk+gap units. */
export interface Progress {
  presentBytes: number
  totalBytes: number
  presentUnits: number
  totalUnits: number
}

/** What fetching a unit taught about it (see `LayerRecords.setUnitDecoded`). */
export interface UnitDecoded {
  layerDigest: string
  /** Offset of the unit in the compressed blob. */
  offset: number
  /** Decoded size of the whole unit. */
  memberBytes: number
  /** Bytes of the stored object. */
  dataBytes: number
  /** Decoded bytes after a single chunk (tar padding, next headers); null for others. */
  tail: Uint8Array | null
}

/**
 * One durable transaction of the chunk cache, described as data so that the store's writer
 * thread can run it: chunk objects marked present, and in the same transaction what their
 * units taught and layer state changes.
 */
export interface ChunkCommit {
  /** With `slot`, the object was written there; without, into a file of its own. */
  chunks: { key: string; sizeBytes: number; slot?: ChunkSlot }[]
  units?: UnitDecoded[]
  layerStates?: { digest: string; state: LayerState }[]
  /** Time of the commit (the chunks' last use), in ms since the epoch. */
  atMs: number
}
