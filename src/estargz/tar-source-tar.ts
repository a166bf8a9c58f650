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
import {
  isTarMetaType,
  parsePaxRecords,
  parseTarHeader,
  readTarNumber,
  type TarHeader,
  type TarMeta,
  tarChecksumMatches,
  tarCString,
} from './tar-walk.js'
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, TOC_TAR_NAME } from './types.js'
import { TAR_BLOCK_BYTES, tarPaddingBytes } from './writer-tar-header.js'

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
    const corrupt = (what: string): EdgestarError =>
      this.corrupt(`is malformed (${what.replace(/^tar /, '')})`)
    let meta: TarMeta = { pax: new Map() }
    for (;;) {
      const block = await this.readBlock()
      if (block === undefined && (meta.pax.size > 0 || meta.longName || meta.longLink))
        throw this.corrupt('ends after an extended header, before its entry')
      if (block === undefined || isZeroBlock(block)) break
      if (!tarChecksumMatches(block, corrupt)) throw this.corrupt('has a header checksum error')
      const typeflag = String.fromCharCode(block[156] ?? 0)
      const size = readTarNumber(block.subarray(124, 136), 'size', corrupt)
      const dataOffset = this.offset

      // Global PAX headers ('g') are read and dropped; image layers carry none we need.
      if (isTarMetaType(typeflag)) {
        const body = await this.readMeta(size)
        if (typeflag === 'x') meta = { ...meta, pax: parsePaxRecords(body, corrupt) }
        if (typeflag === 'L') meta = { ...meta, longName: tarCString(body) }
        if (typeflag === 'K') meta = { ...meta, longLink: tarCString(body) }
        continue
      }
      const header = parseTarHeader(block, meta, corrupt)
      this.addEntry(this.toEntry(header, dataOffset))
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

  private toEntry(header: TarHeader, dataOffset: number): SourceEntry {
    const name = header.rawName
    let type = header.type
    if (type === undefined) throw this.unsupported(name, header.typeflag)
    // Old tars mark directories only by the trailing slash (Go's archive/tar does the same).
    if (type === 'reg' && header.typeflag !== '7' && name.endsWith('/')) type = 'dir'

    const sizeBytes = type === 'reg' ? header.size : 0
    const dataBytes = isHeaderOnly(type) ? 0 : header.size
    if (dataOffset + dataBytes > this.fileBytes)
      throw this.corrupt(`ends inside the content of "${name}"`)
    this.offset = dataOffset + dataBytes + tarPaddingBytes(dataBytes)

    const isDevice = type === 'char' || type === 'block'
    return {
      name,
      type,
      mode: header.mode & 0o7777,
      uid: header.uid,
      gid: header.gid,
      userName: header.userName,
      groupName: header.groupName,
      mtimeSec: header.mtimeSec,
      linkName: header.rawLinkName,
      devMajor: isDevice ? header.devMajor : 0,
      devMinor: isDevice ? header.devMinor : 0,
      sizeBytes,
      xattrs: header.xattrs.size === 0 ? NO_XATTRS : header.xattrs,
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
