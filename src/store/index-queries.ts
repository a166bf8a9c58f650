import type { IndexWorker } from './index-worker.js'
import type { ChunkExtentInput, ChunkRef, LayerRow, Progress, UnitRow } from './types.js'

/** What a read of a file range needs to know, from one snapshot (`IndexQueries.readPlan`). */
export interface ReadPlan {
  layer: LayerRow | undefined
  /** The TOC row's type and size, or undefined when there is no entry of that name. */
  entry: { type: string; size: number } | undefined
  /** The chunk extents of the file overlapping the range, in file order. */
  refs: ChunkRef[]
}

/** `LayerRecords.progress` summed over an image's layers, and how many are verified. */
export interface ImageUnitsProgress extends Progress {
  verifiedLayers: number
}

/** A unit with the decoded tail a diffID check needs (see `IndexQueries.unitsWithTails`). */
export interface UnitWithTail extends UnitRow {
  /** Bytes after a single chunk (empty when none); null while the unit's fetch is unknown. */
  tail: Uint8Array | null
}

/**
 * The store's lookups for the read and fetch path (`TocRecords`, `LayerRecords`), answered
 * by the store's reader thread on its own read-only connection, so the event loop that
 * serves FUSE never waits on SQLite. Each answer is a snapshot taken when the thread runs
 * it: a commit the writer thread acknowledged before the call is always seen. Rejects with
 * EDGESTAR_STORE_QUERY_FAILED or EDGESTAR_STORE_CLOSED.
 */
export class IndexQueries {
  constructor(private readonly reader: IndexWorker) {}

  /**
   * The layer row, file `name`'s type and size, and its chunk extents (`TocRecords.chunks`)
   * overlapping `[offset, offset + length)`: one round trip per read.
   */
  readPlan(layerDigest: string, name: string, offset: number, length: number): Promise<ReadPlan> {
    return this.reader.call('readPlan', [layerDigest, name, offset, length])
  }

  /** `LayerRecords.unitExtents` of several units, in the order of `offsets`. */
  unitExtents(layerDigest: string, offsets: readonly number[]): Promise<ChunkExtentInput[][]> {
    return this.reader.call('unitExtents', [layerDigest, offsets])
  }

  /** `TocRecords.chunks`: the chunk extents of a file overlapping a byte range. */
  chunkRefs(
    layerDigest: string,
    name: string,
    offset: number,
    length: number,
  ): Promise<ChunkRef[]> {
    return this.reader.call('chunkRefs', [layerDigest, name, offset, length])
  }

  /** Bytes and units present versus total over `layerDigests`, and the verified layers. */
  imageProgress(layerDigests: readonly string[]): Promise<ImageUnitsProgress> {
    return this.reader.call('imageProgress', [layerDigests])
  }

  /** Chunks present in the cache and their bytes (what a status shows, pins aside). */
  cacheUsage(): Promise<{ presentChunks: number; presentBytes: number }> {
    return this.reader.call('cacheUsage', [])
  }

  /** `LayerRecords.get`: a layer row, or undefined. */
  layer(digest: string): Promise<LayerRow | undefined> {
    return this.reader.call('layer', [digest])
  }

  /** `LayerRecords.unit`: one unit by its compressed offset, or undefined. */
  unit(layerDigest: string, offset: number): Promise<UnitRow | undefined> {
    return this.reader.call('unit', [layerDigest, offset])
  }

  /** `LayerRecords.missingUnits`: up to `limit` units still to fetch, in background order. */
  missingUnits(layerDigest: string, limit: number, forDiffID = false): Promise<UnitRow[]> {
    return this.reader.call('missingUnits', [layerDigest, limit, forDiffID])
  }

  /** `LayerRecords.missingPrefetchUnits`: the prefetch set's units still to fetch. */
  missingPrefetchUnits(layerDigest: string): Promise<UnitRow[]> {
    return this.reader.call('missingPrefetchUnits', [layerDigest])
  }

  /**
   * Up to `limit` units of a layer from blob offset `fromOffset` on, in blob order, each
   * with its decoded tail (`LayerRecords.unitTail`): a diffID check page by page.
   */
  unitsWithTails(layerDigest: string, fromOffset: number, limit: number): Promise<UnitWithTail[]> {
    return this.reader.call('unitsWithTails', [layerDigest, fromOffset, limit])
  }
}
