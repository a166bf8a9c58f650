import { EdgestarError } from '../errors.js'
import { ByteSource } from './byte-source.js'
import { cleanEntryName } from './entry-name.js'
import { ESTARGZ_ERRORS } from './error-codes.js'

const BLOCK_BYTES = 512
// PAX records and GNU long names bigger than this are not metadata but an attack.
const MAX_META_BYTES = 1024 * 1024

/** The entry types a layer tar may hold, in the TOC's words. */
export type TarEntryType = 'reg' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo'

/** One tar entry met while walking a layer's decompressed stream. */
export interface LayerTarEntry {
  /** Cleaned name (see TocEntry). */
  name: string
  /** The name as the tar header (or PAX/GNU long name) spells it. */
  rawName: string
  type: TarEntryType
  /** Content bytes (`reg` only). */
  size: number
  /** Tar header mode: permission bits plus setuid, setgid, sticky. */
  mode: number
  uid: number
  gid: number
  userName?: string
  groupName?: string
  mtimeSec: number
  /** Symlink target verbatim; hardlink target cleaned. */
  linkName?: string
  devMajor: number
  devMinor: number
  /** xattr name → raw value (PAX `SCHILY.xattr.*`). */
  xattrs: Record<string, Buffer>
}

/** Tar typeflag → entry type, in the TOC's words (`7`, contiguous, is a regular file). */
export const TAR_ENTRY_TYPES: Readonly<Record<string, TarEntryType>> = {
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

/**
 * True for the typeflags of entries that describe the next one: PAX (`x`), global PAX
 * (`g`, read and dropped: layer writers do not use it), GNU long name (`L`) and long link
 * target (`K`). Their content is the metadata; parse it with `parsePaxRecords` or
 * `tarCString`.
 */
export function isTarMetaType(typeflag: string): boolean {
  return typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K'
}

/** Metadata the entries before a header gathered for it (PAX records, GNU long names). */
export interface TarMeta {
  /** PAX records, values as raw bytes (xattrs can be binary). */
  pax: ReadonlyMap<string, Buffer>
  longName?: string
  longLink?: string
}

/** Builds a parser error; each caller turns it into its own error code. */
export type TarCorrupt = (what: string) => Error

/**
 * One tar header with its PAX records and GNU long names applied, binary-safe: names as
 * spelled (not cleaned), xattr values as raw bytes. Numbers come from PAX when present.
 */
export interface TarHeader {
  typeflag: string
  /** Undefined for a typeflag a layer cannot carry (sparse, volume header...). */
  type: TarEntryType | undefined
  /** PAX `path`, GNU long name, or ustar prefix + name. */
  rawName: string
  /** PAX `linkpath`, GNU long link, or the header's link name. */
  rawLinkName: string
  /** The header's size field: the bytes of content that follow in the stream. */
  blockSize: number
  /** PAX `size` when given, else `blockSize`. */
  size: number
  /** The mode field as written (callers mask what they keep). */
  mode: number
  uid: number
  gid: number
  /** Whole seconds; PAX times may be negative and fractional (floored). */
  mtimeSec: number
  userName: string
  groupName: string
  devMajor: number
  devMinor: number
  /** `SCHILY.xattr.*` records, name → raw value. */
  xattrs: Map<string, Buffer>
}

const XATTR_PREFIX = 'SCHILY.xattr.'

/**
 * Parses one 512-byte header block (checksum not checked: see `tarChecksumMatches`) and
 * applies `meta`. Throws what `corrupt` builds for a malformed numeric field or PAX number.
 */
export function parseTarHeader(block: Buffer, meta: TarMeta, corrupt: TarCorrupt): TarHeader {
  const typeflag = String.fromCharCode(block[156]!)
  const type = TAR_ENTRY_TYPES[typeflag]
  const { pax } = meta
  const field = (from: number, to: number, what: string): number =>
    readTarNumber(block.subarray(from, to), what, corrupt)
  const paxNumber = (key: string): number | undefined => readPaxNumber(pax, key, corrupt)

  const blockSize = field(124, 136, 'size')
  const isDevice = type === 'char' || type === 'block'
  const xattrs = new Map<string, Buffer>()
  for (const [key, value] of pax)
    if (key.startsWith(XATTR_PREFIX)) xattrs.set(key.slice(XATTR_PREFIX.length), value)
  return {
    typeflag,
    type,
    rawName: paxText(pax, 'path') ?? meta.longName ?? headerName(block),
    rawLinkName: paxText(pax, 'linkpath') ?? meta.longLink ?? tarCString(block.subarray(157, 257)),
    blockSize,
    size: paxNumber('size') ?? blockSize,
    mode: field(100, 108, 'mode'),
    uid: paxNumber('uid') ?? field(108, 116, 'uid'),
    gid: paxNumber('gid') ?? field(116, 124, 'gid'),
    mtimeSec: readPaxNumber(pax, 'mtime', corrupt, true) ?? field(136, 148, 'mtime'),
    userName: paxText(pax, 'uname') ?? tarCString(block.subarray(265, 297)),
    groupName: paxText(pax, 'gname') ?? tarCString(block.subarray(297, 329)),
    devMajor: isDevice ? field(329, 337, 'devmajor') : 0,
    devMinor: isDevice ? field(337, 345, 'devminor') : 0,
    xattrs,
  }
}

// USTAR joins prefix and name; GNU tars use the prefix field for times, so only "ustar\0".
function headerName(block: Buffer): string {
  const name = tarCString(block.subarray(0, 100))
  const isUstar = block.toString('latin1', 257, 263) === 'ustar\0'
  const prefix = isUstar ? tarCString(block.subarray(345, 500)) : ''
  return prefix === '' ? name : `${prefix}/${name}`
}

/** True when a header's checksum adds up (unsigned, or signed as some old tars wrote it). */
export function tarChecksumMatches(block: Buffer, corrupt: TarCorrupt): boolean {
  const stored = readTarNumber(block.subarray(148, 156), 'checksum', corrupt)
  let unsigned = 0
  let signed = 0
  for (let i = 0; i < BLOCK_BYTES; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i]!
    unsigned += byte
    signed += byte > 127 ? byte - 256 : byte
  }
  return stored === unsigned || stored === signed
}

/**
 * A numeric header field: octal text, or GNU base-256 when the first byte's top bit is
 * set. Throws what `corrupt` builds for text that is not octal, a negative value or one
 * past 2^53.
 */
export function readTarNumber(field: Buffer, what: string, corrupt: TarCorrupt): number {
  if (field[0]! & 0x80) {
    if (field[0]! & 0x40) throw corrupt(`tar header ${what} is negative`)
    let value = field[0]! & 0x3f
    for (const byte of field.subarray(1)) value = value * 256 + byte
    if (!Number.isSafeInteger(value)) throw corrupt(`tar header ${what} is too large`)
    return value
  }
  const text = field.toString('latin1').replace(/\0.*$/s, '').trim()
  if (text === '') return 0
  if (!/^[0-7]+$/.test(text)) throw corrupt(`tar header ${what} is not octal`)
  const value = Number.parseInt(text, 8)
  if (!Number.isSafeInteger(value)) throw corrupt(`tar header ${what} is too large`)
  return value
}

/**
 * PAX records (`"%d %s=%s\n"`) of an extended header body, values as raw bytes. Throws
 * what `corrupt` builds for a record with a bad length, no `=` or no newline.
 */
export function parsePaxRecords(body: Buffer, corrupt: TarCorrupt): Map<string, Buffer> {
  const records = new Map<string, Buffer>()
  let at = 0
  while (at < body.length) {
    // Writers pad the body with NULs to the block; nothing follows them.
    if (body[at] === 0) break
    const space = body.indexOf(0x20, at)
    const length = space < 0 ? Number.NaN : Number(body.toString('latin1', at, space))
    if (!Number.isSafeInteger(length) || length <= space - at || at + length > body.length)
      throw corrupt('tar PAX record has a bad length')
    const record = body.subarray(space + 1, at + length - 1)
    const eq = record.indexOf(0x3d)
    if (eq < 0 || body[at + length - 1] !== 0x0a) throw corrupt('tar PAX record is malformed')
    records.set(record.toString('utf8', 0, eq), Buffer.from(record.subarray(eq + 1)))
    at += length
  }
  return records
}

// TODO(estargz): a name that is not UTF-8 decodes with U+FFFD, so extract writes an
// altered name; the TOC (JSON) cannot carry the raw bytes either.
/** A NUL-terminated header field (or a GNU long name body) as UTF-8 text. */
export function tarCString(field: Buffer): string {
  const end = field.indexOf(0)
  return field.toString('utf8', 0, end < 0 ? field.length : end)
}

function paxText(pax: ReadonlyMap<string, Buffer>, key: string): string | undefined {
  return pax.get(key)?.toString('utf8')
}

// PAX times may be negative (before 1970) and fractional; ids and sizes may not.
function readPaxNumber(
  pax: ReadonlyMap<string, Buffer>,
  key: string,
  corrupt: TarCorrupt,
  allowNegative = false,
): number | undefined {
  const text = paxText(pax, key)
  if (text === undefined) return undefined
  const value = Math.floor(Number(text))
  if (!Number.isSafeInteger(value) || (value < 0 && !allowNegative))
    throw corrupt(`tar PAX ${key} is not a number`)
  return value
}

/**
 * Parses a tar stream (ustar, PAX and GNU long names) and calls `onEntry` for each
 * entry with an iterable of its content; content onEntry leaves unread is skipped.
 * Stops at the end-of-archive block or, as zstd:chunked streams do, at the end of the
 * input on a header boundary; the rest of the input is drained.
 * Throws STREAM_CORRUPT and NAME_ESCAPE.
 */
export async function walkTar(
  input: AsyncIterable<Buffer>,
  onEntry: (entry: LayerTarEntry, content: AsyncIterable<Buffer>) => Promise<void>,
): Promise<void> {
  const source = new ByteSource(input)
  let meta: { pax: Map<string, Buffer>; longName?: string; longLink?: string } = {
    pax: new Map(),
  }

  for (;;) {
    const have = await source.fill(BLOCK_BYTES)
    if (have === 0) break
    if (have < BLOCK_BYTES) throw corrupt('tar stream ends inside a header')
    const block = source.take(BLOCK_BYTES)
    if (block.every((b) => b === 0)) break
    if (!tarChecksumMatches(block, corrupt)) throw corrupt('tar header checksum does not match')

    const typeflag = String.fromCharCode(block[156]!)
    const size = readTarNumber(block.subarray(124, 136), 'size', corrupt)
    const padded = Math.ceil(size / BLOCK_BYTES) * BLOCK_BYTES

    // Metadata entries describe the entry after them.
    if (isTarMetaType(typeflag)) {
      const body = await readMeta(source, size, padded)
      if (typeflag === 'x') meta.pax = parsePaxRecords(body, corrupt)
      else if (typeflag === 'L') meta.longName = tarCString(body)
      else if (typeflag === 'K') meta.longLink = tarCString(body)
      continue
    }

    const entry = toEntry(parseTarHeader(block, meta, corrupt))
    meta = { pax: new Map() }

    const contentBytes = entry.type === 'reg' ? entry.size : size
    let consumed = 0
    const content = (async function* () {
      for await (const piece of source.stream(entry.type === 'reg' ? contentBytes : 0)) {
        consumed += piece.length
        yield piece
      }
    })()
    await onEntry(entry, content)

    const unread = contentBytes - consumed
    const padding = Math.ceil(contentBytes / BLOCK_BYTES) * BLOCK_BYTES - contentBytes
    if ((await source.skip(unread)) < unread)
      throw corrupt(`tar stream ends inside the content of ${JSON.stringify(entry.rawName)}`)
    await source.skip(padding)
  }
  await source.drain()
}

async function readMeta(source: ByteSource, size: number, padded: number): Promise<Buffer> {
  if (size > MAX_META_BYTES) throw corrupt(`tar extended header of ${size} bytes is too large`)
  if ((await source.fill(padded)) < padded) throw corrupt('tar stream ends inside a header')
  return Buffer.from(source.take(padded).subarray(0, size))
}

function toEntry(header: TarHeader): LayerTarEntry {
  const { type, rawName, rawLinkName } = header
  if (!type) throw corrupt(`tar entry type ${JSON.stringify(header.typeflag)} is not supported`)

  const entry: LayerTarEntry = {
    name: cleanEntryName(rawName),
    rawName,
    type,
    size: type === 'reg' ? header.size : 0,
    mode: header.mode,
    uid: ownerId(header.uid, 'uid'),
    gid: ownerId(header.gid, 'gid'),
    mtimeSec: header.mtimeSec,
    devMajor: header.devMajor,
    devMinor: header.devMinor,
    xattrs: Object.fromEntries(header.xattrs),
  }
  if (header.userName) entry.userName = header.userName
  if (header.groupName) entry.groupName = header.groupName
  if (type === 'symlink') entry.linkName = rawLinkName
  if (type === 'hardlink') entry.linkName = cleanEntryName(rawLinkName, 'hardlink target')
  return entry
}

// Linux owner ids are 32 bits; a larger one cannot be set on any file.
function ownerId(value: number, what: string): number {
  if (value > 0xffffffff) throw corrupt(`tar ${what} ${value} is beyond 32 bits`)
  return value
}

function corrupt(message: string): EdgestarError {
  return new EdgestarError(ESTARGZ_ERRORS.STREAM_CORRUPT, message, {
    hint: 'the layer stream is corrupt; fetch or convert it again',
  })
}
