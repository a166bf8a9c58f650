import { EdgestarError } from '../errors.js'
import { ESTARGZ_ERRORS } from './error-codes.js'
import type { BlobFormat, Compression } from './types.js'

// gzip eStargz footer (spec "Footer"): an empty gzip member whose header carries an
// extra field with one subfield `SG` holding the TOC offset as 16 hex digits + STARGZ.
const GZIP_HEADER_BYTES = 10
const GZIP_XLEN_BYTES = 2
const GZIP_SUBFIELD_HEADER_BYTES = 4
const STARGZ_PAYLOAD_BYTES = 16 + 'STARGZ'.length
const GZIP_EMPTY_DEFLATE_BYTES = 5
const GZIP_TRAILER_BYTES = 8

/** Footer of gzip eStargz: 51 bytes. */
export const ESTARGZ_FOOTER_BYTES =
  GZIP_HEADER_BYTES +
  GZIP_XLEN_BYTES +
  GZIP_SUBFIELD_HEADER_BYTES +
  STARGZ_PAYLOAD_BYTES +
  GZIP_EMPTY_DEFLATE_BYTES +
  GZIP_TRAILER_BYTES

/** Footer of legacy stargz: the same without the subfield header, 47 bytes. */
export const LEGACY_FOOTER_BYTES = ESTARGZ_FOOTER_BYTES - GZIP_SUBFIELD_HEADER_BYTES

// zstd:chunked footers are the payload of a skippable frame (RFC 8878 3.1.2): an
// 8-byte frame header precedes them, so the TOC data area ends 8 bytes earlier too.
export const ZSTD_SKIPPABLE_HEADER_BYTES = 8
const U64_BYTES = 8
const ZSTD_CHUNKED_MAGIC_BYTES = 8

/** stargz-snapshotter's zstd:chunked footer: offset, size, raw size, type, magic. */
export const ZSTD_CHUNKED_FOOTER_BYTES = 4 * U64_BYTES + ZSTD_CHUNKED_MAGIC_BYTES

/** containers/storage's footer adds the tar-split offset, size and raw size. */
export const CONTAINERS_FOOTER_BYTES = 7 * U64_BYTES + ZSTD_CHUNKED_MAGIC_BYTES

const SNAPSHOTTER_MAGIC = Buffer.from('GnUlInUx', 'latin1')
const CONTAINERS_MAGIC = Buffer.from('GNUlInUx', 'latin1')
const SKIPPABLE_MAGIC = Buffer.from([0x50, 0x2a, 0x4d, 0x18])
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b, 0x08])
const ZSTD_FRAME_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])
const GZIP_FLAG_EXTRA = 0x04
const MANIFEST_TYPE_CRFS = 1n

/** Bytes of the blob's end that parseFooter wants to see. */
export const FOOTER_PROBE_BYTES = 128

/** What a footer says about where the TOC is. */
export interface Footer {
  format: BlobFormat
  compression: Compression
  footerSizeBytes: number
  /** Start of the TOC's compressed stream (gzip member or zstd frame). */
  tocOffset: number
  tocCompressedSize: number
  /** Known for zstd footers only. */
  tocUncompressedSize?: number
  /** Where chunk data must end: the TOC (gzip) or its skippable frame header (zstd). */
  dataEndOffset: number
  /** containers/storage only: the tar-split frame. */
  tarSplit?: { offset: number; compressedSize: number; uncompressedSize: number }
}

/**
 * Parses the footer from `tail`, the last min(blobSizeBytes, FOOTER_PROBE_BYTES) bytes.
 * Throws FOOTER_TRUNCATED, BAD_MAGIC, NO_TOC (a plain gzip/zstd tar; `head` are the
 * blob's first bytes) or TOC_OUT_OF_RANGE.
 */
export function parseFooter(tail: Buffer, head: Buffer, blobSizeBytes: number): Footer {
  const footer =
    parseZstdFooter(tail, blobSizeBytes) ??
    parseGzipFooter(tail, blobSizeBytes, 'estargz') ??
    parseGzipFooter(tail, blobSizeBytes, 'stargz-legacy')
  if (footer) return footer

  if (looksTruncated(tail)) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.FOOTER_TRUNCATED,
      `blob of ${blobSizeBytes} bytes ends in a cut-off eStargz/zstd:chunked footer`,
      { hint: 'the blob was truncated in transit or on disk; fetch it again' },
    )
  }
  if (looksLikeBrokenFooter(tail)) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.BAD_MAGIC,
      `blob of ${blobSizeBytes} bytes has a footer with a wrong magic or layout`,
      { hint: 'the blob is corrupt or written by an incompatible tool; convert it again' },
    )
  }
  if (head.subarray(0, 3).equals(GZIP_MAGIC) || head.subarray(0, 4).equals(ZSTD_FRAME_MAGIC)) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.NO_TOC,
      'blob is a plain compressed tar without an eStargz/zstd:chunked TOC',
      { hint: 'read it whole, or convert it with `edgestar convert` for lazy pulling' },
    )
  }
  if (blobSizeBytes < ZSTD_CHUNKED_FOOTER_BYTES) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.FOOTER_TRUNCATED,
      `blob of ${blobSizeBytes} bytes is too short to hold any footer`,
      { hint: 'the blob was truncated; fetch it again' },
    )
  }
  throw new EdgestarError(ESTARGZ_ERRORS.BAD_MAGIC, 'blob ends in no known layer footer', {
    hint: 'expected gzip eStargz, legacy stargz or zstd:chunked',
  })
}

function parseZstdFooter(tail: Buffer, blobSizeBytes: number): Footer | undefined {
  const magic = tail.subarray(tail.length - ZSTD_CHUNKED_MAGIC_BYTES)
  const isContainers = magic.equals(CONTAINERS_MAGIC) && tail.length >= CONTAINERS_FOOTER_BYTES
  const isSnapshotter = magic.equals(SNAPSHOTTER_MAGIC) && tail.length >= ZSTD_CHUNKED_FOOTER_BYTES
  if (!isContainers && !isSnapshotter) return undefined

  const footerSizeBytes = isContainers ? CONTAINERS_FOOTER_BYTES : ZSTD_CHUNKED_FOOTER_BYTES
  const body = tail.subarray(tail.length - footerSizeBytes)
  const field = (i: number): number => readU64(body, i * U64_BYTES, blobSizeBytes)
  if (body.readBigUInt64LE(3 * U64_BYTES) !== MANIFEST_TYPE_CRFS) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.BAD_MAGIC,
      `zstd:chunked footer names manifest type ${body.readBigUInt64LE(3 * U64_BYTES)}`,
      { hint: 'only the CRFS-compatible TOC (type 1) is supported' },
    )
  }

  const tocOffset = field(0)
  const tocCompressedSize = field(1)
  const dataEndOffset = tocOffset - ZSTD_SKIPPABLE_HEADER_BYTES
  const footer: Footer = {
    format: isContainers ? 'zstd-chunked-containers' : 'zstd-chunked',
    compression: 'zstd',
    footerSizeBytes,
    tocOffset,
    tocCompressedSize,
    tocUncompressedSize: field(2),
    dataEndOffset,
  }
  if (isContainers) {
    footer.tarSplit = { offset: field(4), compressedSize: field(5), uncompressedSize: field(6) }
  }
  checkTocInBlob(footer, blobSizeBytes)
  return footer
}

function parseGzipFooter(
  tail: Buffer,
  blobSizeBytes: number,
  format: 'estargz' | 'stargz-legacy',
): Footer | undefined {
  const footerSizeBytes = format === 'estargz' ? ESTARGZ_FOOTER_BYTES : LEGACY_FOOTER_BYTES
  if (tail.length < footerSizeBytes) return undefined
  const f = tail.subarray(tail.length - footerSizeBytes)
  if (!f.subarray(0, 3).equals(GZIP_MAGIC) || (f[3]! & GZIP_FLAG_EXTRA) === 0) return undefined

  const xlen = f.readUInt16LE(GZIP_HEADER_BYTES)
  let payloadAt = GZIP_HEADER_BYTES + GZIP_XLEN_BYTES
  if (format === 'estargz') {
    const hasSubfield =
      xlen === GZIP_SUBFIELD_HEADER_BYTES + STARGZ_PAYLOAD_BYTES &&
      f.toString('latin1', payloadAt, payloadAt + 2) === 'SG' &&
      f.readUInt16LE(payloadAt + 2) === STARGZ_PAYLOAD_BYTES
    if (!hasSubfield) return undefined
    payloadAt += GZIP_SUBFIELD_HEADER_BYTES
  } else if (xlen !== STARGZ_PAYLOAD_BYTES) {
    return undefined
  }

  const payload = f.toString('latin1', payloadAt, payloadAt + STARGZ_PAYLOAD_BYTES)
  if (!/^[0-9a-fA-F]{16}STARGZ$/.test(payload)) return undefined
  const tocOffset = Number.parseInt(payload.slice(0, 16), 16)

  const footer: Footer = {
    format,
    compression: 'gzip',
    footerSizeBytes,
    tocOffset,
    tocCompressedSize: blobSizeBytes - footerSizeBytes - tocOffset,
    dataEndOffset: tocOffset,
  }
  checkTocInBlob(footer, blobSizeBytes)
  return footer
}

function checkTocInBlob(footer: Footer, blobSizeBytes: number): void {
  const tocEnd = footer.tocOffset + footer.tocCompressedSize
  const isInside =
    Number.isSafeInteger(footer.tocOffset) &&
    footer.dataEndOffset >= 0 &&
    footer.tocCompressedSize > 0 &&
    tocEnd <= blobSizeBytes - footer.footerSizeBytes
  if (isInside) return
  throw new EdgestarError(
    ESTARGZ_ERRORS.TOC_OUT_OF_RANGE,
    `${footer.format} footer puts the TOC at ${footer.tocOffset} ` +
      `(+${footer.tocCompressedSize} bytes), outside the ${blobSizeBytes}-byte blob`,
    { hint: 'the blob is truncated or corrupt; fetch or convert it again' },
  )
}

function readU64(buf: Buffer, at: number, blobSizeBytes: number): number {
  const value = buf.readBigUInt64LE(at)
  if (value <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(value)
  throw new EdgestarError(
    ESTARGZ_ERRORS.TOC_OUT_OF_RANGE,
    `zstd:chunked footer field ${value} does not fit the ${blobSizeBytes}-byte blob`,
    { hint: 'the blob is corrupt; fetch or convert it again' },
  )
}

// A footer whose start is present but whose end is missing: the blob was cut short.
function looksTruncated(tail: Buffer): boolean {
  for (let cut = 1; cut < ESTARGZ_FOOTER_BYTES; cut++) {
    const at = tail.length - ESTARGZ_FOOTER_BYTES + cut
    if (at < 0) continue
    const start = tail.subarray(at)
    if (start.length >= 14 && isGzipFooterStart(start)) return true
  }
  const zstdFooterStarts = [ZSTD_CHUNKED_FOOTER_BYTES, CONTAINERS_FOOTER_BYTES]
  for (let at = Math.max(0, tail.length - CONTAINERS_FOOTER_BYTES - 8); at < tail.length; at++) {
    const rest = tail.subarray(at)
    if (rest.length < 8 || !rest.subarray(0, 4).equals(SKIPPABLE_MAGIC)) continue
    const frameBytes = rest.readUInt32LE(4)
    if (zstdFooterStarts.includes(frameBytes) && rest.length - 8 < frameBytes) return true
  }
  return false
}

function isGzipFooterStart(b: Buffer): boolean {
  if (!b.subarray(0, 3).equals(GZIP_MAGIC) || (b[3]! & GZIP_FLAG_EXTRA) === 0) return false
  const xlen = b.readUInt16LE(GZIP_HEADER_BYTES)
  return xlen === GZIP_SUBFIELD_HEADER_BYTES + STARGZ_PAYLOAD_BYTES || xlen === STARGZ_PAYLOAD_BYTES
}

// The right shape of footer is there but its magic or fields are wrong.
function looksLikeBrokenFooter(tail: Buffer): boolean {
  for (const size of [ESTARGZ_FOOTER_BYTES, LEGACY_FOOTER_BYTES]) {
    if (tail.length >= size && isGzipFooterStart(tail.subarray(tail.length - size))) return true
  }
  for (const size of [ZSTD_CHUNKED_FOOTER_BYTES, CONTAINERS_FOOTER_BYTES]) {
    const at = tail.length - size - ZSTD_SKIPPABLE_HEADER_BYTES
    if (at < 0) continue
    const header = tail.subarray(at, at + ZSTD_SKIPPABLE_HEADER_BYTES)
    if (header.subarray(0, 4).equals(SKIPPABLE_MAGIC) && header.readUInt32LE(4) === size)
      return true
  }
  return false
}
