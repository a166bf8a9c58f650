import { gunzipSync, gzipSync } from 'node:zlib'
import { compress as zstdCompress, decompress as zstdDecompress } from 'zstd-napi'
import type { RandomAccessReader } from '../../src/estargz/index.js'

/** A RandomAccessReader over bytes in memory. */
export class MemoryReader implements RandomAccessReader {
  readonly sizeBytes: number
  constructor(private readonly data: Buffer) {
    this.sizeBytes = data.length
  }

  async readAt(offset: number, length: number): Promise<Buffer> {
    return this.data.subarray(Math.max(0, offset), Math.min(this.sizeBytes, offset + length))
  }
}

/** A minimal ustar header (regular file unless `typeflag` says otherwise). */
export function tarHeader(
  name: string,
  size: number,
  typeflag = '0',
  linkName = '',
  mode = 0o644,
): Buffer {
  const h = Buffer.alloc(512)
  h.write(name, 0, 100, 'utf8')
  h.write(`${mode.toString(8).padStart(7, '0')}\0`, 100, 'latin1')
  h.write('0000000\0', 108, 'latin1')
  h.write('0000000\0', 116, 'latin1')
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1')
  h.write('00000000000\0', 136, 'latin1')
  h.write(typeflag, 156, 'latin1')
  h.write(linkName, 157, 100, 'utf8')
  h.write('ustar\0', 257, 'latin1')
  h.write('00', 263, 'latin1')
  h.fill(0x20, 148, 156)
  let sum = 0
  for (const b of h) sum += b
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1')
  return h
}

/** A tar entry: header, content, padding. */
export function tarEntry(
  name: string,
  content: Buffer,
  typeflag = '0',
  linkName = '',
  mode = 0o644,
): Buffer {
  const pad = Buffer.alloc((512 - (content.length % 512)) % 512)
  return Buffer.concat([tarHeader(name, content.length, typeflag, linkName, mode), content, pad])
}

/** A PAX extended header entry holding `records` for the entry after it. */
export function paxEntry(records: Record<string, string>): Buffer {
  const body = Object.entries(records)
    .map(([key, value]) => {
      const rest = ` ${key}=${value}\n`
      let length = rest.length + 1
      while (`${length}${rest}`.length !== length) length++
      return `${length}${rest}`
    })
    .join('')
  return tarEntry('PaxHeaders/x', Buffer.from(body), 'x')
}

/** The 51-byte gzip eStargz footer pointing at `tocOffset`. */
export function estargzFooter(tocOffset: number): Buffer {
  const payload = `${tocOffset.toString(16).padStart(16, '0')}STARGZ`
  return Buffer.concat([
    Buffer.from([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 26, 0]),
    Buffer.from('SG', 'latin1'),
    Buffer.from([22, 0]),
    Buffer.from(payload, 'latin1'),
    Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]),
  ])
}

/** The 47-byte legacy stargz footer: the extra field holds the payload without a subfield. */
export function legacyFooter(tocOffset: number): Buffer {
  const payload = `${tocOffset.toString(16).padStart(16, '0')}STARGZ`
  return Buffer.concat([
    Buffer.from([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 22, 0]),
    Buffer.from(payload, 'latin1'),
    Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]),
  ])
}

/** A gzip eStargz blob turned legacy stargz: 47-byte footer, optionally no digests. */
export function toLegacyStargz(blob: Buffer, dropDigests: boolean): Buffer {
  const { tocOffset, toc } = estargzToc(blob)
  if (dropDigests) {
    for (const entry of toc.entries) {
      delete entry.digest
      delete entry.chunkDigest
    }
  }
  const json = Buffer.from(JSON.stringify(toc))
  return Buffer.concat([blob.subarray(0, tocOffset), gzipTocMember(json), legacyFooter(tocOffset)])
}

/** The gzip member holding the TOC as `stargz.index.json` plus the tar end blocks. */
export function gzipTocMember(json: Buffer): Buffer {
  return gzipSync(Buffer.concat([tarEntry('stargz.index.json', json), Buffer.alloc(1024)]))
}

/** Assembles a gzip eStargz blob from data members and a TOC built from their offsets. */
export function buildEstargz(members: Buffer[], toc: (offsets: number[]) => unknown): Buffer {
  const offsets: number[] = []
  let at = 0
  for (const m of members) {
    offsets.push(at)
    at += m.length
  }
  const json = Buffer.from(JSON.stringify(toc(offsets)))
  return Buffer.concat([...members, gzipTocMember(json), estargzFooter(at)])
}

/** TOC JSON of a gzip eStargz blob, parsed. */
export function estargzToc(blob: Buffer): { tocOffset: number; toc: TocJson } {
  const tail = blob.subarray(blob.length - 51)
  const tocOffset = Number.parseInt(tail.toString('latin1', 16, 32), 16)
  const tar = gunzipSync(blob.subarray(tocOffset, blob.length - 51))
  const size = Number.parseInt(tar.toString('latin1', 124, 135), 8)
  return { tocOffset, toc: JSON.parse(tar.toString('utf8', 512, 512 + size)) as TocJson }
}

/** Raw TOC JSON as a test edits it. */
export interface TocJson {
  version: number
  entries: Record<string, unknown>[]
  [key: string]: unknown
}

/**
 * Rewrites a gzip eStargz blob's TOC: `edit` changes the parsed JSON (or returns raw
 * bytes to store instead). Data members stay where they are.
 */
export function rewriteEstargzToc(
  blob: Buffer,
  edit: (toc: TocJson) => TocJson | Buffer | undefined,
): Buffer {
  const { tocOffset, toc } = estargzToc(blob)
  const edited = edit(toc) ?? toc
  const json = Buffer.isBuffer(edited) ? edited : Buffer.from(JSON.stringify(edited))
  return Buffer.concat([blob.subarray(0, tocOffset), gzipTocMember(json), estargzFooter(tocOffset)])
}

/**
 * Inserts tar bytes as one more gzip member just before the TOC of a gzip eStargz blob,
 * keeping the TOC (and so its digest) as it is: the stream then holds entries the TOC
 * does not describe.
 */
export function smuggleBeforeToc(blob: Buffer, tar: Buffer): Buffer {
  const { tocOffset } = estargzToc(blob)
  const extra = gzipSync(tar)
  return Buffer.concat([
    blob.subarray(0, tocOffset),
    extra,
    blob.subarray(tocOffset, blob.length - 51),
    estargzFooter(tocOffset + extra.length),
  ])
}

function skippableFrame(payload: Buffer): Buffer {
  const header = Buffer.alloc(8)
  header.writeUInt32LE(0x184d2a50, 0)
  header.writeUInt32LE(payload.length, 4)
  return Buffer.concat([header, payload])
}

/** TOC JSON of a stargz-snapshotter zstd:chunked blob, parsed. */
export function zstdToc(blob: Buffer): { tocOffset: number; toc: TocJson } {
  const footer = blob.subarray(blob.length - 40)
  const tocOffset = Number(footer.readBigUInt64LE(0))
  const size = Number(footer.readBigUInt64LE(8))
  const json = zstdDecompress(blob.subarray(tocOffset, tocOffset + size))
  return { tocOffset, toc: JSON.parse(json.toString('utf8')) as TocJson }
}

/**
 * Rewrites a stargz-snapshotter zstd:chunked blob (the fixtures' dialect) with an edited
 * TOC, in that dialect or in containers/storage's (64-byte footer, tar-split frame).
 */
export function rewriteZstdToc(
  blob: Buffer,
  dialect: 'snapshotter' | 'containers',
  edit: (toc: TocJson) => TocJson | undefined = () => undefined,
): Buffer {
  const { tocOffset, toc } = zstdToc(blob)
  const json = Buffer.from(JSON.stringify(edit(toc) ?? toc))
  const compressed = zstdCompress(json)
  const data = blob.subarray(0, tocOffset - 8)
  const u64 = (n: number): Buffer => {
    const b = Buffer.alloc(8)
    b.writeBigUInt64LE(BigInt(n))
    return b
  }

  const newTocOffset = data.length + 8
  const tocFrame = skippableFrame(compressed)
  if (dialect === 'snapshotter') {
    const footer = Buffer.concat([
      u64(newTocOffset),
      u64(compressed.length),
      u64(json.length),
      u64(1),
      Buffer.from('GnUlInUx'),
    ])
    return Buffer.concat([data, tocFrame, skippableFrame(footer)])
  }

  const tarSplit = zstdCompress(Buffer.from('{"type":1}\n'))
  const tarSplitOffset = newTocOffset + compressed.length + 8
  const footer = Buffer.concat([
    u64(newTocOffset),
    u64(compressed.length),
    u64(json.length),
    u64(1),
    u64(tarSplitOffset),
    u64(tarSplit.length),
    u64(11),
    Buffer.from('GNUlInUx'),
  ])
  return Buffer.concat([data, tocFrame, skippableFrame(tarSplit), skippableFrame(footer)])
}
