import { EdgestarError } from '../errors.js'
import {
  isTarMetaType,
  parsePaxRecords,
  parseTarHeader,
  readTarNumber,
  type TarMeta,
  tarCString,
} from '../estargz/index.js'
import type { ChunkExtentInput, TocEntryInput } from '../store/index.js'

const BLOCK = 512

/**
 * Indexes a plain tar stream as it passes (pushed in pieces): every entry as a TOC-like
 * row, and for each regular file where its content starts in the stream. Understands
 * ustar, GNU long names (`L`, `K`) and PAX headers (`path`, `linkpath`, `size`,
 * `SCHILY.xattr.*`, times, owners) with estargz's header parser; global PAX headers are
 * skipped. Names are cleaned as TOC names are; one that climbs out of the root throws
 * EDGESTAR_IMAGES_BAD_NAME, a malformed header EDGESTAR_IMAGES_BAD_TAR.
 */
export class TarIndexer {
  readonly entries: TocEntryInput[] = []
  readonly extents: Omit<ChunkExtentInput, 'compressedOffset' | 'compressedSize'>[] = []
  private offset = 0
  private pending = Buffer.alloc(0)
  private skipBytes = 0
  private collect: { kind: string; size: number; parts: Buffer[]; got: number } | undefined
  private meta: TarMeta = { pax: new Map() }
  private isDone = false

  /** Feeds the next piece of the decompressed stream. */
  push(piece: Buffer): void {
    let data = piece
    while (data.length > 0 && !this.isDone) {
      if (this.skipBytes > 0) {
        const n = Math.min(this.skipBytes, data.length)
        this.consumeData(data.subarray(0, n))
        this.skipBytes -= n
        this.offset += n
        data = data.subarray(n)
        if (this.skipBytes === 0) this.finishCollect()
        continue
      }
      const need = BLOCK - this.pending.length
      const take = data.subarray(0, need)
      this.pending =
        this.pending.length === 0 ? Buffer.from(take) : Buffer.concat([this.pending, take])
      data = data.subarray(take.length)
      this.offset += take.length
      if (this.pending.length === BLOCK) {
        const header = this.pending
        this.pending = Buffer.alloc(0)
        this.onHeader(header, this.offset)
      }
    }
  }

  private consumeData(part: Buffer): void {
    if (this.collect === undefined || this.collect.got >= this.collect.size) return
    const keep = part.subarray(0, this.collect.size - this.collect.got)
    this.collect.parts.push(Buffer.from(keep))
    this.collect.got += keep.length
  }

  private finishCollect(): void {
    const done = this.collect
    this.collect = undefined
    if (done === undefined) return
    const body = Buffer.concat(done.parts)
    if (done.kind === 'L') this.meta = { ...this.meta, longName: tarCString(body) }
    else if (done.kind === 'K') this.meta = { ...this.meta, longLink: tarCString(body) }
    else if (done.kind === 'x') this.meta = { ...this.meta, pax: parsePaxRecords(body, badTar) }
  }

  private onHeader(header: Buffer, dataOffset: number): void {
    if (header.every((b) => b === 0)) {
      this.isDone = this.sawZeroBlock
      this.sawZeroBlock = true
      return
    }
    this.sawZeroBlock = false
    const kind = String.fromCharCode(header[156]!)
    if (isTarMetaType(kind)) {
      const size = readTarNumber(header.subarray(124, 136), 'size', badTar)
      const padded = Math.ceil(size / BLOCK) * BLOCK
      this.collect = { kind, size, parts: [], got: 0 }
      this.skipBytes = padded
      if (padded === 0) this.finishCollect()
      return
    }

    const fields = parseTarHeader(header, this.meta, badTar)
    this.meta = { pax: new Map() }
    // A typeflag a layer does not know is kept as a regular file, as extractors do.
    const type = fields.type ?? 'reg'
    const size = fields.size
    const padded = Math.ceil(size / BLOCK) * BLOCK
    const name = cleanName(fields.rawName)
    const linkName = fields.rawLinkName
    const xattrs: Record<string, string> = {}
    for (const [key, value] of fields.xattrs) xattrs[key] = value.toString('base64')
    this.entries.push({
      name,
      type,
      size: type === 'reg' ? size : 0,
      modtime: formatModtime(fields.mtimeSec),
      ...(type === 'symlink'
        ? { linkName }
        : type === 'hardlink'
          ? { linkName: cleanName(linkName) }
          : {}),
      mode: fields.mode & 0o7777,
      uid: fields.uid,
      gid: fields.gid,
      userName: fields.userName,
      groupName: fields.groupName,
      devMajor: fields.devMajor,
      devMinor: fields.devMinor,
      ...(Object.keys(xattrs).length > 0 ? { xattrs } : {}),
    })
    if (type === 'reg' && size > 0)
      this.extents.push({
        entryName: name,
        chunkOffset: 0,
        chunkSize: size,
        innerOffset: dataOffset,
        chunkDigest: null,
      })
    this.skipBytes = type === 'reg' || kind === '7' ? padded : 0
  }

  private sawZeroBlock = false
}

// RFC 3339 years 1 to 9999: a PAX mtime can say anything, a TOC row cannot.
const MIN_MTIME_SEC = -62_135_596_800
const MAX_MTIME_SEC = 253_402_300_799

function formatModtime(mtimeSec: number): string {
  const clamped = Math.min(Math.max(mtimeSec, MIN_MTIME_SEC), MAX_MTIME_SEC)
  return new Date(clamped * 1000).toISOString()
}

function badTar(what: string): EdgestarError {
  return new EdgestarError('EDGESTAR_IMAGES_BAD_TAR', `plain layer is not a valid tar: ${what}`, {
    hint: 'the layer in the registry is malformed; rebuild and push the image again',
  })
}

function cleanName(raw: string): string {
  const parts: string[] = []
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..' || part.includes('\0'))
      throw new EdgestarError(
        'EDGESTAR_IMAGES_BAD_NAME',
        `tar entry ${JSON.stringify(raw)} climbs out of the layer root`,
      )
    parts.push(part)
  }
  return parts.join('/')
}
