import { EdgestarError } from '../errors.js'
import type { ChunkExtentInput, TocEntryInput } from '../store/index.js'

const BLOCK = 512

/**
 * Indexes a plain tar stream as it passes (pushed in pieces): every entry as a TOC-like
 * row, and for each regular file where its content starts in the stream. Understands
 * ustar, GNU long names (`L`, `K`) and PAX headers (`path`, `linkpath`, `size`,
 * `SCHILY.xattr.*`); global PAX headers are skipped. Names are cleaned as TOC names are;
 * one that climbs out of the root throws EDGESTAR_IMAGES_BAD_NAME.
 */
export class TarIndexer {
  readonly entries: TocEntryInput[] = []
  readonly extents: Omit<ChunkExtentInput, 'compressedOffset' | 'compressedSize'>[] = []
  private offset = 0
  private pending = Buffer.alloc(0)
  private skipBytes = 0
  private collect: { kind: string; size: number; parts: Buffer[]; got: number } | undefined
  private pax: Record<string, string> = {}
  private longName: string | undefined
  private longLink: string | undefined
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
    if (done.kind === 'L') this.longName = cString(body)
    else if (done.kind === 'K') this.longLink = cString(body)
    else if (done.kind === 'x') this.pax = parsePax(body)
  }

  private onHeader(header: Buffer, dataOffset: number): void {
    if (header.every((b) => b === 0)) {
      this.isDone = this.sawZeroBlock
      this.sawZeroBlock = true
      return
    }
    this.sawZeroBlock = false
    const kind = String.fromCharCode(header[156]!)
    const size = Number(this.pax.size ?? readNumber(header, 124, 12))
    const padded = Math.ceil(size / BLOCK) * BLOCK

    if (kind === 'L' || kind === 'K' || kind === 'x' || kind === 'g') {
      this.collect = { kind, size, parts: [], got: 0 }
      this.skipBytes = padded
      if (padded === 0) this.finishCollect()
      return
    }

    const rawName = this.pax.path ?? this.longName ?? ustarName(header)
    const linkName = this.pax.linkpath ?? this.longLink ?? cString(header.subarray(157, 257))
    const xattrs: Record<string, string> = {}
    for (const [key, value] of Object.entries(this.pax))
      if (key.startsWith('SCHILY.xattr.'))
        xattrs[key.slice(13)] = Buffer.from(value, 'latin1').toString('base64')
    this.pax = {}
    this.longName = undefined
    this.longLink = undefined

    const type = TYPES[kind] ?? 'reg'
    const name = cleanName(rawName)
    this.entries.push({
      name,
      type,
      size: type === 'reg' ? size : 0,
      modtime: new Date(readNumber(header, 136, 12) * 1000).toISOString(),
      ...(type === 'symlink'
        ? { linkName }
        : type === 'hardlink'
          ? { linkName: cleanName(linkName) }
          : {}),
      mode: readNumber(header, 100, 8) & 0o7777,
      uid: readNumber(header, 108, 8),
      gid: readNumber(header, 116, 8),
      userName: cString(header.subarray(265, 297)),
      groupName: cString(header.subarray(297, 329)),
      devMajor: readNumber(header, 329, 8),
      devMinor: readNumber(header, 337, 8),
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

const TYPES: Record<string, string> = {
  '0': 'reg',
  '\0': 'reg',
  '7': 'reg',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
}

function ustarName(header: Buffer): string {
  const name = cString(header.subarray(0, 100))
  const isUstar = header.subarray(257, 262).toString('latin1') === 'ustar'
  const prefix = isUstar ? cString(header.subarray(345, 500)) : ''
  return prefix === '' ? name : `${prefix}/${name}`
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0)
  return bytes.subarray(0, end < 0 ? bytes.length : end).toString('utf8')
}

// Octal, or GNU base-256 when the high bit of the first byte is set.
function readNumber(header: Buffer, at: number, length: number): number {
  const field = header.subarray(at, at + length)
  if (field[0]! & 0x80) {
    let value = field[0]! & 0x7f
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]!
    return value
  }
  const text = cString(field).trim()
  return text === '' ? 0 : Number.parseInt(text, 8)
}

function parsePax(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {}
  let at = 0
  while (at < body.length) {
    const space = body.indexOf(0x20, at)
    if (space < 0) break
    const length = Number.parseInt(body.subarray(at, space).toString('latin1'), 10)
    if (!Number.isSafeInteger(length) || length <= 0) break
    const record = body.subarray(space + 1, at + length - 1)
    const eq = record.indexOf(0x3d)
    if (eq > 0) {
      const key = record.subarray(0, eq).toString('utf8')
      out[key] = record
        .subarray(eq + 1)
        .toString(key.startsWith('SCHILY.xattr.') ? 'latin1' : 'utf8')
    }
    at += length
  }
  return out
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
