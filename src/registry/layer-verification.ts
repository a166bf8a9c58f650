import { TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION } from '../estargz/types.js'
import type { ResolvedLayer } from './types.js'

/** containers/storage zstd:chunked annotations (pkg/chunked/internal/compression.go, 2023). */
export const ZSTD_CHUNKED_MANIFEST_CHECKSUM_ANNOTATION =
  'io.containers.zstd-chunked.manifest-checksum'
export const ZSTD_CHUNKED_MANIFEST_POSITION_ANNOTATION =
  'io.containers.zstd-chunked.manifest-position'
// Older containers/storage releases (before 1.45) spelled them under io.github.
const LEGACY_ZSTD_CHECKSUM_ANNOTATION = 'io.github.containers.zstd-chunked.manifest-checksum'
const LEGACY_ZSTD_POSITION_ANNOTATION = 'io.github.containers.zstd-chunked.manifest-position'

const DIGEST = /^sha256:[a-f0-9]{64}$/

/** Where a zstd:chunked layer keeps its TOC, from the manifest-position annotation. */
export interface ZstdChunkedPosition {
  offset: number
  compressedLength: number
  uncompressedLength: number
  /** Manifest type number as written by containers/storage (1 = TOC JSON). */
  type: number
}

/** What a layer's manifest entry lets a lazy reader check. */
export interface LayerAnnotations {
  /** The TOC digest to verify the TOC against, when the manifest carries one. */
  tocDigest?: string
  uncompressedSizeBytes?: number
  zstdChunkedChecksum?: string
  zstdChunkedPosition?: ZstdChunkedPosition
}

/**
 * The verdict on how a layer may be served: lazily (its TOC can be checked against a
 * digest from the manifest, and each chunk against the TOC), or only after downloading
 * it whole and checking its diffID.
 */
export type LayerVerification =
  | { mode: 'lazy'; tocDigest: string; annotations: LayerAnnotations }
  | { mode: 'whole'; reason: string; annotations: LayerAnnotations }

/** Reads the verification annotations of a layer, ignoring malformed ones. */
export function readLayerAnnotations(annotations: Record<string, string> = {}): LayerAnnotations {
  const out: LayerAnnotations = {}
  const toc = annotations[TOC_DIGEST_ANNOTATION]
  if (toc !== undefined && DIGEST.test(toc)) out.tocDigest = toc

  const size = annotations[UNCOMPRESSED_SIZE_ANNOTATION]
  if (size !== undefined && /^[0-9]+$/.test(size) && Number.isSafeInteger(Number(size)))
    out.uncompressedSizeBytes = Number(size)

  const checksum =
    annotations[ZSTD_CHUNKED_MANIFEST_CHECKSUM_ANNOTATION] ??
    annotations[LEGACY_ZSTD_CHECKSUM_ANNOTATION]
  if (checksum !== undefined && DIGEST.test(checksum)) out.zstdChunkedChecksum = checksum

  const position =
    annotations[ZSTD_CHUNKED_MANIFEST_POSITION_ANNOTATION] ??
    annotations[LEGACY_ZSTD_POSITION_ANNOTATION]
  const parts = position?.split(':').map(Number)
  if (parts && parts.length === 4 && parts.every((n) => Number.isSafeInteger(n) && n >= 0)) {
    const [offset, compressedLength, uncompressedLength, type] = parts as [
      number,
      number,
      number,
      number,
    ]
    out.zstdChunkedPosition = { offset, compressedLength, uncompressedLength, type }
  }
  return out
}

/**
 * Classifies a layer from its manifest entry alone: `lazy` when a TOC digest is there to
 * trust (the eStargz annotation, or for zstd:chunked the containers/storage checksum),
 * `whole` otherwise, with the reason for the log line. The reader must still fall back
 * to `whole` when the blob turns out to have no footer or no chunk digests (legacy stargz).
 */
export function classifyLayer(
  layer: Pick<ResolvedLayer, 'annotations' | 'mediaType'>,
): LayerVerification {
  const annotations = readLayerAnnotations(layer.annotations)
  const tocDigest = annotations.tocDigest ?? annotations.zstdChunkedChecksum
  if (tocDigest !== undefined) return { mode: 'lazy', tocDigest, annotations }

  const reason = layer.mediaType.includes('zstd')
    ? 'the manifest has no TOC digest or zstd:chunked manifest-checksum annotation for this layer'
    : `the manifest has no ${TOC_DIGEST_ANNOTATION} annotation for this layer`
  return { mode: 'whole', reason, annotations }
}
