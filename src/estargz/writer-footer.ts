/**
 * The footers the converter writes, byte for byte as the reference writes them
 * (stargz-snapshotter estargz/gzip.go gzipFooterBytes, estargz/zstdchunked).
 */

/** gzip eStargz footer: an empty gzip member whose header extra field holds the TOC offset. */
export const GZIP_FOOTER_BYTES = 51

// RFC 1952 member header with FEXTRA (10) + XLEN (2) + subfield "SG" (4 + 22 payload)
// + an empty final stored deflate block (5) + CRC32 and ISIZE of nothing (8) = 51.
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0x00, 0xff])
const EMPTY_STORED_BLOCK = Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff])
const SUBFIELD_PAYLOAD_BYTES = 16 + 'STARGZ'.length

/** The 51-byte gzip footer pointing at `tocOffset` (16 hex digits + "STARGZ"). */
export function gzipFooter(tocOffset: number): Buffer {
  const extra = Buffer.alloc(2 + 4 + SUBFIELD_PAYLOAD_BYTES)
  extra.writeUInt16LE(4 + SUBFIELD_PAYLOAD_BYTES, 0)
  extra.write('SG', 2, 'latin1')
  extra.writeUInt16LE(SUBFIELD_PAYLOAD_BYTES, 4)
  extra.write(`${tocOffset.toString(16).padStart(16, '0')}STARGZ`, 6, 'latin1')
  const footer = Buffer.concat([GZIP_HEADER, extra, EMPTY_STORED_BLOCK, Buffer.alloc(8)])
  if (footer.length !== GZIP_FOOTER_BYTES) throw new Error('gzip footer size is wrong')
  return footer
}

/** zstd skippable frame magic (RFC 8878 3.1.2: 0x184D2A50, little-endian) and its header size. */
const ZSTD_SKIPPABLE_MAGIC = Buffer.from([0x50, 0x2a, 0x4d, 0x18])
export const ZSTD_SKIPPABLE_HEADER_BYTES = 8

/** The footer payload of the stargz-snapshotter zstd:chunked dialect. */
export const ZSTD_FOOTER_BYTES = 40
const ZSTD_CHUNKED_MAGIC = Buffer.from('GnUlInUx', 'latin1')
const MANIFEST_TYPE_CRFS = 1n

/** Wraps `payload` in a zstd skippable frame (magic, little-endian length, payload). */
export function zstdSkippableFrame(payload: Buffer): Buffer {
  const header = Buffer.alloc(ZSTD_SKIPPABLE_HEADER_BYTES)
  ZSTD_SKIPPABLE_MAGIC.copy(header, 0)
  header.writeUInt32LE(payload.length, 4)
  return Buffer.concat([header, payload])
}

/**
 * The zstd:chunked footer frame: TOC offset (of the compressed TOC, past its frame
 * header), compressed and raw TOC lengths, manifest type 1, magic; in a skippable frame.
 */
export function zstdFooter(tocOffset: number, compressedBytes: number, rawBytes: number): Buffer {
  const footer = Buffer.alloc(ZSTD_FOOTER_BYTES)
  footer.writeBigUInt64LE(BigInt(tocOffset), 0)
  footer.writeBigUInt64LE(BigInt(compressedBytes), 8)
  footer.writeBigUInt64LE(BigInt(rawBytes), 16)
  footer.writeBigUInt64LE(MANIFEST_TYPE_CRFS, 24)
  ZSTD_CHUNKED_MAGIC.copy(footer, 32)
  return zstdSkippableFrame(footer)
}
