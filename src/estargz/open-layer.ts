import { EdgestarError } from '../errors.js'
import { checkDigestOption, sha256Digest } from './digest.js'
import { ESTARGZ_ERRORS } from './error-codes.js'
import { FOOTER_PROBE_BYTES, parseFooter } from './footer.js'
import { DEFAULT_MAX_TOC_BYTES, readRawToc } from './toc-reader.js'
import { validateToc } from './toc-validate.js'
import type { LayerIndex, RandomAccessReader } from './types.js'

/** Options for openLayer. */
export interface OpenLayerOptions {
  /** Expected `sha256:<hex>` of the uncompressed TOC JSON; checked when given. */
  tocDigest?: string
  /** Largest TOC (compressed or uncompressed) accepted, in bytes; default 64 MiB. */
  maxTocBytes?: number
}

const HEAD_PROBE_BYTES = 4

/**
 * Reads the footer and TOC of an eStargz, legacy stargz or zstd:chunked blob (either
 * dialect), validates every entry and returns the layer index. Reads only the blob's
 * first bytes, its footer and its TOC through `reader`.
 * Throws EdgestarError with an ESTARGZ_ERRORS code (see error-codes.ts): FOOTER_TRUNCATED,
 * BAD_MAGIC, NO_TOC, TOC_OUT_OF_RANGE, TOC_TOO_LARGE, TOC_CORRUPT, TOC_NOT_JSON,
 * TOC_DIGEST_MISMATCH, DIGEST_INVALID, and validateToc's codes (TOC_INVALID,
 * ABSURD_SIZE, NAME_ESCAPE, DUPLICATE_NAME, HARDLINK_*, CHUNK_GAP, CHUNK_OVERLAP,
 * OFFSET_OUT_OF_RANGE).
 */
export async function openLayer(
  reader: RandomAccessReader,
  opts: OpenLayerOptions = {},
): Promise<LayerIndex> {
  const expected = opts.tocDigest && checkDigestOption(opts.tocDigest, 'TOC digest')
  const maxTocBytes = opts.maxTocBytes ?? DEFAULT_MAX_TOC_BYTES
  const blobSizeBytes = reader.sizeBytes

  const probe = Math.min(blobSizeBytes, FOOTER_PROBE_BYTES)
  const [tail, head] = await Promise.all([
    reader.readAt(blobSizeBytes - probe, probe),
    reader.readAt(0, Math.min(blobSizeBytes, HEAD_PROBE_BYTES)),
  ])
  if (tail.length !== probe) throw shortRead(blobSizeBytes - probe, probe, tail.length)
  const footer = parseFooter(tail, head, blobSizeBytes)

  const raw = await readRawToc((o, n) => reader.readAt(o, n), footer, maxTocBytes)
  const tocDigest = sha256Digest(raw.json)
  if (expected && expected !== tocDigest) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.TOC_DIGEST_MISMATCH,
      `TOC digest is ${tocDigest}, expected ${expected}`,
      { hint: 'the blob is not the one the manifest names, or it was altered; do not use it' },
    )
  }

  const toc = validateToc(parseJson(raw.json), footer)
  return {
    format: footer.format,
    compression: footer.compression,
    blobSizeBytes,
    tocDigest,
    tocOffset: footer.tocOffset,
    tocCompressedSize: footer.tocCompressedSize,
    footerSizeBytes: footer.footerSizeBytes,
    ...toc,
  }
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'))
  } catch (cause) {
    throw new EdgestarError(ESTARGZ_ERRORS.TOC_NOT_JSON, 'TOC is not valid JSON', {
      hint: 'the blob is corrupt; fetch or convert it again',
      cause,
    })
  }
}

function shortRead(offset: number, wanted: number, got: number): EdgestarError {
  return new EdgestarError(
    ESTARGZ_ERRORS.FOOTER_TRUNCATED,
    `reading the footer at blob offset ${offset} returned ${got} of ${wanted} bytes`,
    { hint: 'the blob is shorter than its declared size; fetch it again' },
  )
}
