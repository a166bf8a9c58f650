import { EdgestarError } from '../errors.js'
import { decompressBounded } from './decompress.js'
import { ESTARGZ_ERRORS } from './error-codes.js'
import type { Footer } from './footer.js'
import { TOC_TAR_NAME } from './types.js'

/** Default largest TOC accepted (compressed or uncompressed): 64 MiB. */
export const DEFAULT_MAX_TOC_BYTES = 64 * 1024 * 1024

const TAR_BLOCK_BYTES = 512
// Room for the tar header (and a PAX header, should a writer add one), padding and
// the end-of-archive blocks that share the TOC's gzip member.
const TOC_TAR_OVERHEAD_BYTES = 8 * TAR_BLOCK_BYTES

/** The TOC JSON as stored in the blob. */
export interface RawToc {
  json: Buffer
  compressed: Buffer
}

/**
 * Reads and decompresses the TOC that `footer` points at, refusing it before reading
 * when it is larger than `maxTocBytes`. Throws TOC_TOO_LARGE or TOC_CORRUPT.
 */
export async function readRawToc(
  readAt: (offset: number, length: number) => Promise<Buffer>,
  footer: Footer,
  maxTocBytes: number,
): Promise<RawToc> {
  const declared = Math.max(footer.tocCompressedSize, footer.tocUncompressedSize ?? 0)
  if (declared > maxTocBytes) throw tooLarge(declared, maxTocBytes)

  const compressed = await readAt(footer.tocOffset, footer.tocCompressedSize)
  if (compressed.length !== footer.tocCompressedSize)
    throw corrupt(`TOC read returned ${compressed.length} of ${footer.tocCompressedSize} bytes`)

  const limit = footer.compression === 'gzip' ? maxTocBytes + TOC_TAR_OVERHEAD_BYTES : maxTocBytes
  const result = decompressBounded(footer.compression, compressed, limit)
  if (!result.ok && result.reason === 'exceeded') throw tooLarge(limit + 1, maxTocBytes)
  if (!result.ok) throw corrupt(`TOC at blob offset ${footer.tocOffset} does not decompress`)

  if (footer.compression === 'zstd') {
    if (result.data.length !== footer.tocUncompressedSize)
      throw corrupt(
        `TOC inflates to ${result.data.length} bytes, footer says ${footer.tocUncompressedSize}`,
      )
    return { json: result.data, compressed }
  }
  return { json: tocFromTar(result.data, maxTocBytes), compressed }
}

// gzip TOCs are a one-entry tar (`stargz.index.json`) inside their own gzip member.
function tocFromTar(tar: Buffer, maxTocBytes: number): Buffer {
  let at = 0
  for (let headers = 0; headers < 4; headers++) {
    if (tar.length < at + TAR_BLOCK_BYTES) throw corrupt('TOC tar header is cut short')
    const header = tar.subarray(at, at + TAR_BLOCK_BYTES)
    const size = parseOctal(header.subarray(124, 136))
    const typeflag = String.fromCharCode(header[156]!)
    at += TAR_BLOCK_BYTES

    // Skip PAX extended headers; the TOC entry follows them.
    if (typeflag === 'x' || typeflag === 'g') {
      at += Math.ceil(size / TAR_BLOCK_BYTES) * TAR_BLOCK_BYTES
      continue
    }

    const name = header.toString('utf8', 0, 100).replace(/\0.*$/s, '')
    if (name !== TOC_TAR_NAME) throw corrupt(`TOC tar entry is named ${JSON.stringify(name)}`)
    if (size > maxTocBytes) throw tooLarge(size, maxTocBytes)
    if (tar.length < at + size) throw corrupt('TOC tar entry is cut short')
    return tar.subarray(at, at + size)
  }
  throw corrupt('TOC tar holds too many extended headers')
}

function parseOctal(field: Buffer): number {
  const text = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .trim()
  if (!/^[0-7]+$/.test(text)) throw corrupt('TOC tar header has a malformed size')
  return Number.parseInt(text, 8)
}

function tooLarge(sizeBytes: number, maxTocBytes: number): EdgestarError {
  return new EdgestarError(
    ESTARGZ_ERRORS.TOC_TOO_LARGE,
    `TOC of at least ${sizeBytes} bytes is larger than the ${maxTocBytes}-byte limit`,
    { hint: 'raise the TOC size limit if this layer is trusted, or rebuild it with fewer files' },
  )
}

function corrupt(message: string): EdgestarError {
  return new EdgestarError(ESTARGZ_ERRORS.TOC_CORRUPT, message, {
    hint: 'the blob is corrupt; fetch or convert it again',
  })
}
