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

const TYPES: Record<string, TarEntryType> = {
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
  let pax: Map<string, Buffer> = new Map()
  let longName: string | undefined
  let longLink: string | undefined

  for (;;) {
    const have = await source.fill(BLOCK_BYTES)
    if (have === 0) break
    if (have < BLOCK_BYTES) throw corrupt('tar stream ends inside a header')
    const block = source.take(BLOCK_BYTES)
    if (block.every((b) => b === 0)) break
    checkChecksum(block)

    const typeflag = String.fromCharCode(block[156]!)
    const size = parseNumber(block.subarray(124, 136), 'size')
    const padded = Math.ceil(size / BLOCK_BYTES) * BLOCK_BYTES

    // Metadata entries describe the entry after them.
    // NOTE: a global PAX header ('g') is read and dropped; layer writers do not use it.
    if ('xgLK'.includes(typeflag)) {
      const body = await readMeta(source, size, padded)
      if (typeflag === 'x') pax = parsePax(body)
      else if (typeflag === 'L') longName = cString(body)
      else if (typeflag === 'K') longLink = cString(body)
      continue
    }

    const entry = toEntry(block, typeflag, size, pax, longName, longLink)
    pax = new Map()
    longName = undefined
    longLink = undefined

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

function toEntry(
  block: Buffer,
  typeflag: string,
  size: number,
  pax: Map<string, Buffer>,
  longName: string | undefined,
  longLink: string | undefined,
): LayerTarEntry {
  const type = TYPES[typeflag]
  if (!type) throw corrupt(`tar entry type ${JSON.stringify(typeflag)} is not supported`)

  const isUstar = block.toString('latin1', 257, 263) === 'ustar\0'
  const prefix = isUstar ? cString(block.subarray(345, 500)) : ''
  const headerName = cString(block.subarray(0, 100))
  const rawName =
    paxText(pax, 'path') ?? longName ?? (prefix ? `${prefix}/${headerName}` : headerName)
  const rawLink = paxText(pax, 'linkpath') ?? longLink ?? cString(block.subarray(157, 257))

  const entry: LayerTarEntry = {
    name: cleanEntryName(rawName),
    rawName,
    type,
    size: type === 'reg' ? (paxNumber(pax, 'size') ?? size) : 0,
    mode: parseNumber(block.subarray(100, 108), 'mode'),
    uid: ownerId(paxNumber(pax, 'uid') ?? parseNumber(block.subarray(108, 116), 'uid'), 'uid'),
    gid: ownerId(paxNumber(pax, 'gid') ?? parseNumber(block.subarray(116, 124), 'gid'), 'gid'),
    mtimeSec: paxNumber(pax, 'mtime', true) ?? parseNumber(block.subarray(136, 148), 'mtime'),
    devMajor:
      type === 'char' || type === 'block' ? parseNumber(block.subarray(329, 337), 'devmajor') : 0,
    devMinor:
      type === 'char' || type === 'block' ? parseNumber(block.subarray(337, 345), 'devminor') : 0,
    xattrs: {},
  }
  const userName = paxText(pax, 'uname') ?? cString(block.subarray(265, 297))
  const groupName = paxText(pax, 'gname') ?? cString(block.subarray(297, 329))
  if (userName) entry.userName = userName
  if (groupName) entry.groupName = groupName
  if (type === 'symlink') entry.linkName = rawLink
  if (type === 'hardlink') entry.linkName = cleanEntryName(rawLink, 'hardlink target')
  for (const [key, value] of pax) {
    if (key.startsWith('SCHILY.xattr.')) entry.xattrs[key.slice('SCHILY.xattr.'.length)] = value
  }
  return entry
}

function checkChecksum(block: Buffer): void {
  const stored = parseNumber(block.subarray(148, 156), 'checksum')
  let sum = 0
  for (let i = 0; i < BLOCK_BYTES; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!
  if (sum !== stored) throw corrupt('tar header checksum does not match')
}

function parseNumber(field: Buffer, what: string): number {
  // GNU base-256: high bit set, big-endian binary in the remaining bits.
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

function parsePax(body: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>()
  let at = 0
  while (at < body.length) {
    const space = body.indexOf(0x20, at)
    if (space < 0) break
    const length = Number.parseInt(body.toString('latin1', at, space), 10)
    if (!Number.isSafeInteger(length) || length <= space - at || at + length > body.length)
      throw corrupt('tar PAX record has a bad length')
    const record = body.subarray(space + 1, at + length - 1)
    const eq = record.indexOf(0x3d)
    if (eq < 0) throw corrupt('tar PAX record has no "="')
    records.set(record.toString('utf8', 0, eq), Buffer.from(record.subarray(eq + 1)))
    at += length
  }
  return records
}

function paxText(pax: Map<string, Buffer>, key: string): string | undefined {
  return pax.get(key)?.toString('utf8')
}

// PAX times may be negative (before 1970) and fractional; ids and sizes may not.
function paxNumber(
  pax: Map<string, Buffer>,
  key: string,
  allowNegative = false,
): number | undefined {
  const text = paxText(pax, key)
  if (text === undefined) return undefined
  const value = Math.floor(Number(text))
  if (!Number.isSafeInteger(value) || (value < 0 && !allowNegative))
    throw corrupt(`tar PAX ${key} is not a number`)
  return value
}

// Linux owner ids are 32 bits; a larger one cannot be set on any file.
function ownerId(value: number, what: string): number {
  if (value > 0xffffffff) throw corrupt(`tar ${what} ${value} is beyond 32 bits`)
  return value
}

// TODO(estargz): a name that is not UTF-8 decodes with U+FFFD, so extract writes an
// altered name; the TOC (JSON) cannot carry the raw bytes either.
function cString(field: Buffer): string {
  const end = field.indexOf(0)
  return field.toString('utf8', 0, end < 0 ? field.length : end)
}

function corrupt(message: string): EdgestarError {
  return new EdgestarError(ESTARGZ_ERRORS.STREAM_CORRUPT, message, {
    hint: 'the layer stream is corrupt; fetch or convert it again',
  })
}
