/**
 * Indexes a plain (uncompressed) tar file into SourceEntries: headers are parsed once
 * (USTAR, GNU long names, PAX with binary-safe xattr values), content stays in the file
 * and is read by offset when the writer asks. Follows the reference converter's import
 * rules: landmark and TOC entries of an earlier conversion are dropped, and when a name
 * repeats, the later entry wins and takes the later position.
 */
import type { FileHandle } from 'node:fs/promises'
import { EdgestarError } from '../errors.js'
import { CONVERT_ERRORS } from './convert-errors.js'
import {
  cleanEntryName,
  type EntrySource,
  NO_XATTRS,
  noContent,
  type SourceEntry,
  type SourceEntryType,
} from './tar-source.js'
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, TOC_TAR_NAME } from './types.js'
import { TAR_BLOCK_BYTES, tarPaddingBytes } from './writer-tar-header.js'

const TYPES: Record<string, SourceEntryType> = {
  '0': 'reg',
  '\u0000': 'reg',
  '7': 'reg',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
}

const XATTR_PREFIX = 'SCHILY.xattr.'

// A long name or PAX body bigger than this is refused: no real tar needs it.
const MAX_META_BYTES = 1 << 20

/**
 * Indexes the tar at `handle` (which stays open until the source is closed).
 * Throws TAR_CORRUPT naming `label` and the offset, or ENTRY_UNSUPPORTED.
 */
export async function indexTarFile(handle: FileHandle, label: string): Promise<EntrySource> {
  const parser = new TarIndexer(handle, label, (await handle.stat()).size)
  const entries = await parser.run()
  const totalBytes = entries.reduce((sum, e) => sum + e.sizeBytes, 0)
  return { entries, totalBytes, close: () => handle.close() }
}

interface PendingMeta {
  pax: Map<string, Buffer>
  longName?: string
  longLink?: string
}

class TarIndexer {
  private offset = 0
  private readonly kept: (SourceEntry | undefined)[] = []
  private readonly byName = new Map<string, number>()

  constructor(
    private readonly handle: FileHandle,
    private readonly label: string,
    private readonly fileBytes: number,
  ) {}

  async run(): Promise<SourceEntry[]> {
    let meta: PendingMeta = { pax: new Map() }
    for (;;) {
      const block = await this.readBlock()
      if (block === undefined && (meta.pax.size > 0 || meta.longName || meta.longLink))
        throw this.corrupt('ends after an extended header, before its entry')
      if (block === undefined || isZeroBlock(block)) break
      this.checkChecksum(block)
      const typeflag = String.fromCharCode(block[156] ?? 0)
      const size = this.parseNumber(block, 124, 12)
      const dataOffset = this.offset

      if (typeflag === 'x' || typeflag === 'L' || typeflag === 'K' || typeflag === 'g') {
        const body = await this.readMeta(size)
        if (typeflag === 'x') meta.pax = this.parsePax(body)
        if (typeflag === 'L') meta.longName = cString(body)
        if (typeflag === 'K') meta.longLink = cString(body)
        // NOTE: global PAX headers ('g') are skipped; image layers carry none we need.
        continue
      }
      this.addEntry(this.toEntry(block, typeflag, size, dataOffset, meta))
      meta = { pax: new Map() }
    }
    return this.kept.filter((e): e is SourceEntry => e !== undefined)
  }

  private addEntry(entry: SourceEntry): void {
    const clean = cleanEntryName(entry.name)
    if (clean === PREFETCH_LANDMARK || clean === NO_PREFETCH_LANDMARK) return
    if (clean === TOC_TAR_NAME) return
    const earlier = this.byName.get(clean)
    if (earlier !== undefined) this.kept[earlier] = undefined
    this.byName.set(clean, this.kept.length)
    this.kept.push(entry)
  }

  private toEntry(
    block: Buffer,
    typeflag: string,
    headerSize: number,
    dataOffset: number,
    meta: PendingMeta,
  ): SourceEntry {
    const pax = meta.pax
    let name = meta.longName ?? this.headerName(block)
    name = paxText(pax, 'path') ?? name
    let type = TYPES[typeflag]
    if (type === undefined) throw this.unsupported(name, typeflag)
    // Old tars mark directories only by the trailing slash (Go's archive/tar does the same).
    if (type === 'reg' && typeflag !== '7' && name.endsWith('/')) type = 'dir'

    const sizeBytes = type === 'reg' ? (paxNumber(pax, 'size') ?? headerSize) : 0
    const dataBytes = isHeaderOnly(type) ? 0 : (paxNumber(pax, 'size') ?? headerSize)
    if (dataOffset + dataBytes > this.fileBytes)
      throw this.corrupt(`ends inside the content of "${name}"`)
    this.offset = dataOffset + dataBytes + tarPaddingBytes(dataBytes)

    let xattrs: ReadonlyMap<string, Buffer> = NO_XATTRS
    for (const [key, value] of pax) {
      if (!key.startsWith(XATTR_PREFIX)) continue
      if (xattrs === NO_XATTRS) xattrs = new Map()
      ;(xattrs as Map<string, Buffer>).set(key.slice(XATTR_PREFIX.length), value)
    }

    return {
      name,
      type,
      mode: this.parseNumber(block, 100, 8) & 0o7777,
      uid: paxNumber(pax, 'uid') ?? this.parseNumber(block, 108, 8),
      gid: paxNumber(pax, 'gid') ?? this.parseNumber(block, 116, 8),
      userName: paxText(pax, 'uname') ?? cString(block.subarray(265, 297)),
      groupName: paxText(pax, 'gname') ?? cString(block.subarray(297, 329)),
      mtimeSec: Math.floor(paxNumber(pax, 'mtime') ?? this.parseNumber(block, 136, 12)),
      linkName: paxText(pax, 'linkpath') ?? meta.longLink ?? cString(block.subarray(157, 257)),
      devMajor: type === 'char' || type === 'block' ? this.parseNumber(block, 329, 8) : 0,
      devMinor: type === 'char' || type === 'block' ? this.parseNumber(block, 337, 8) : 0,
      sizeBytes,
      xattrs,
      readContent: sizeBytes === 0 ? noContent : this.contentReader(dataOffset, sizeBytes, name),
    }
  }

  private contentReader(offset: number, sizeBytes: number, name: string) {
    const handle = this.handle
    const label = this.label
    return async function* readContent(
      pieceBytes: number,
      alloc?: (sizeBytes: number) => Buffer,
    ): AsyncIterable<Buffer> {
      for (let done = 0; done < sizeBytes; ) {
        const want = Math.min(pieceBytes, sizeBytes - done)
        const piece = alloc?.(want) ?? Buffer.allocUnsafe(want)
        const { bytesRead } = await handle.read(piece, 0, want, offset + done)
        if (bytesRead !== want)
          throw new EdgestarError(
            CONVERT_ERRORS.TAR_CORRUPT,
            `tar ${label} ends inside the content of "${name}"`,
            { hint: 'the tar is truncated; produce it again' },
          )
        done += want
        yield piece
      }
    }
  }

  // USTAR joins prefix and name; GNU tars use that field for times, so only for "ustar\0".
  private headerName(block: Buffer): string {
    const name = cString(block.subarray(0, 100))
    const isUstar = block.toString('latin1', 257, 263) === 'ustar\u0000'
    const prefix = isUstar ? cString(block.subarray(345, 500)) : ''
    return prefix === '' ? name : `${prefix}/${name}`
  }

  private async readBlock(): Promise<Buffer | undefined> {
    const block = Buffer.alloc(TAR_BLOCK_BYTES)
    const { bytesRead } = await this.handle.read(block, 0, TAR_BLOCK_BYTES, this.offset)
    if (bytesRead === 0) return undefined
    if (bytesRead < TAR_BLOCK_BYTES) throw this.corrupt('ends inside a header block')
    this.offset += TAR_BLOCK_BYTES
    return block
  }

  private async readMeta(size: number): Promise<Buffer> {
    if (size > MAX_META_BYTES) throw this.corrupt(`has a ${size}-byte extended header`)
    const body = Buffer.alloc(size)
    const { bytesRead } = await this.handle.read(body, 0, size, this.offset)
    if (bytesRead !== size) throw this.corrupt('ends inside an extended header')
    this.offset += size + tarPaddingBytes(size)
    return body
  }

  // Records are "%d %s=%s\n"; values are raw bytes (xattrs can be binary).
  private parsePax(body: Buffer): Map<string, Buffer> {
    const records = new Map<string, Buffer>()
    for (let pos = 0; pos < body.length; ) {
      const space = body.indexOf(0x20, pos)
      const length = Number(body.toString('latin1', pos, space))
      if (space < 0 || !Number.isInteger(length) || length <= 0 || pos + length > body.length)
        throw this.corrupt('has a malformed PAX record')
      const record = body.subarray(space + 1, pos + length - 1)
      const equals = record.indexOf(0x3d)
      if (equals < 0 || body[pos + length - 1] !== 0x0a)
        throw this.corrupt('has a malformed PAX record')
      records.set(record.toString('utf8', 0, equals), Buffer.from(record.subarray(equals + 1)))
      pos += length
    }
    return records
  }

  // Octal text, or GNU base-256 when the top bit of the first byte is set.
  private parseNumber(block: Buffer, offset: number, width: number): number {
    const field = block.subarray(offset, offset + width)
    if (((field[0] ?? 0) & 0x80) !== 0) {
      let value = (field[0] ?? 0) & 0x7f
      for (const byte of field.subarray(1)) value = value * 256 + byte
      return value
    }
    const text = field
      .toString('latin1')
      .replace(/[\0 ]+$/, '')
      .replace(/^[\0 ]+/, '')
    if (text === '') return 0
    if (!/^[0-7]+$/.test(text)) throw this.corrupt(`has a bad numeric field "${text}"`)
    return Number.parseInt(text, 8)
  }

  private checkChecksum(block: Buffer): void {
    const stored = this.parseNumber(block, 148, 8)
    let unsigned = 0
    let signed = 0
    for (let i = 0; i < TAR_BLOCK_BYTES; i++) {
      const byte = i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0)
      unsigned += byte
      signed += byte > 127 ? byte - 256 : byte
    }
    if (stored !== unsigned && stored !== signed) throw this.corrupt('has a header checksum error')
  }

  private corrupt(what: string): EdgestarError {
    return new EdgestarError(
      CONVERT_ERRORS.TAR_CORRUPT,
      `tar ${this.label} ${what} at offset ${this.offset}`,
      { hint: 'check that the input is a complete tar (or tar.gz / tar.zst) file' },
    )
  }

  private unsupported(name: string, typeflag: string): EdgestarError {
    return new EdgestarError(
      CONVERT_ERRORS.ENTRY_UNSUPPORTED,
      `tar ${this.label} has entry "${name}" of type ${JSON.stringify(typeflag)}, which a layer cannot carry`,
      {
        hint: 'sparse files and tape volume headers are not supported; rewrite the tar without them',
      },
    )
  }
}

function isHeaderOnly(type: SourceEntryType): boolean {
  return type !== 'reg'
}

function isZeroBlock(block: Buffer): boolean {
  for (const byte of block) if (byte !== 0) return false
  return true
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0)
  return bytes.toString('utf8', 0, end < 0 ? bytes.length : end)
}

function paxText(pax: Map<string, Buffer>, key: string): string | undefined {
  return pax.get(key)?.toString('utf8')
}

function paxNumber(pax: Map<string, Buffer>, key: string): number | undefined {
  const text = paxText(pax, key)
  if (text === undefined) return undefined
  const value = Number(text)
  return Number.isFinite(value) ? value : undefined
}
