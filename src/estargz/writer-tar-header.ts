/**
 * Tar header encoding for the converter: USTAR when an entry fits, a PAX extended
 * header in front when it does not (long or non-ASCII names, big ids or sizes, xattrs).
 * Written by hand because the tar library's encoder keeps PAX values as text, and an
 * xattr value is raw bytes (POSIX.1-2008 pax: values are octets; GNU tar and Go agree).
 */
import { EdgestarError } from '../errors.js'
import { CONVERT_ERRORS } from './convert-errors.js'
import { NO_XATTRS, type SourceEntry, type SourceEntryType } from './tar-source.js'

/** Tar block size; headers and content padding are multiples of it. */
export const TAR_BLOCK_BYTES = 512

/** Two zero blocks end a tar archive. */
export const TAR_END_BYTES = 2 * TAR_BLOCK_BYTES

const TYPEFLAGS: Record<SourceEntryType, string> = {
  reg: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
}

// Largest values the USTAR octal fields hold (7 and 11 digits).
const MAX_OCTAL_7 = 0o7777777
const MAX_OCTAL_11 = 0o77777777777

/** What a tar header says about one entry: a SourceEntry without its content. */
export type TarHeaderFields = Omit<SourceEntry, 'readContent'>

/** Header fields of a bare regular file (owner root, mode 0, no mtime), as the reference
 * writes its landmark and TOC entries. */
export function bareFileHeader(name: string, sizeBytes: number): TarHeaderFields {
  return {
    name,
    type: 'reg',
    mode: 0,
    uid: 0,
    gid: 0,
    userName: '',
    groupName: '',
    mtimeSec: 0,
    linkName: '',
    devMajor: 0,
    devMinor: 0,
    sizeBytes,
    xattrs: NO_XATTRS,
  }
}

/** Bytes of zero padding after `sizeBytes` of content. */
export function tarPaddingBytes(sizeBytes: number): number {
  const rest = sizeBytes % TAR_BLOCK_BYTES
  return rest === 0 ? 0 : TAR_BLOCK_BYTES - rest
}

/**
 * Encodes the header block(s) of one entry: an optional PAX header (with its records)
 * and the USTAR header. Throws ENTRY_UNSUPPORTED for device numbers no tar can carry.
 */
export function encodeTarHeader(fields: TarHeaderFields): Buffer {
  const pax = new Map<string, Buffer>()
  const split = splitUstarName(fields.name)
  if (split === undefined) pax.set('path', Buffer.from(fields.name))
  if (!fitsUstar(fields.linkName, 100)) pax.set('linkpath', Buffer.from(fields.linkName))
  if (!fitsUstar(fields.userName, 32)) pax.set('uname', Buffer.from(fields.userName))
  if (!fitsUstar(fields.groupName, 32)) pax.set('gname', Buffer.from(fields.groupName))
  if (fields.uid > MAX_OCTAL_7) pax.set('uid', Buffer.from(String(fields.uid)))
  if (fields.gid > MAX_OCTAL_7) pax.set('gid', Buffer.from(String(fields.gid)))
  if (fields.sizeBytes > MAX_OCTAL_11) pax.set('size', Buffer.from(String(fields.sizeBytes)))
  if (fields.mtimeSec < 0 || fields.mtimeSec > MAX_OCTAL_11)
    pax.set('mtime', Buffer.from(String(fields.mtimeSec)))
  for (const [key, value] of [...fields.xattrs].sort(([a], [b]) => compareBytes(a, b)))
    pax.set(`SCHILY.xattr.${key}`, value)
  checkDeviceNumbers(fields)

  const ustar = ustarBlock(fields, split ?? { prefix: '', name: asciiPrefix(fields.name, 100) })
  if (pax.size === 0) return ustar
  return Buffer.concat([paxBlocks(fields, pax), ustar])
}

function ustarBlock(fields: TarHeaderFields, split: { prefix: string; name: string }): Buffer {
  const block = Buffer.alloc(TAR_BLOCK_BYTES)
  block.write(split.name, 0, 100, 'utf8')
  writeOctal(block, 100, 8, fields.mode & 0o7777)
  writeOctal(block, 108, 8, Math.min(fields.uid, MAX_OCTAL_7))
  writeOctal(block, 116, 8, Math.min(fields.gid, MAX_OCTAL_7))
  writeOctal(block, 124, 12, Math.min(fields.sizeBytes, MAX_OCTAL_11))
  writeOctal(block, 136, 12, Math.min(Math.max(fields.mtimeSec, 0), MAX_OCTAL_11))
  block.write(TYPEFLAGS[fields.type], 156, 1, 'latin1')
  if (fitsUstar(fields.linkName, 100)) block.write(fields.linkName, 157, 100, 'utf8')
  block.write('ustar\u000000', 257, 8, 'latin1')
  if (fitsUstar(fields.userName, 32)) block.write(fields.userName, 265, 32, 'utf8')
  if (fitsUstar(fields.groupName, 32)) block.write(fields.groupName, 297, 32, 'utf8')
  writeOctal(block, 329, 8, fields.devMajor)
  writeOctal(block, 337, 8, fields.devMinor)
  block.write(split.prefix, 345, 155, 'utf8')
  writeChecksum(block)
  return block
}

// A PAX 'x' header named like Go's archive/tar names it, then the records, padded.
function paxBlocks(fields: TarHeaderFields, records: Map<string, Buffer>): Buffer {
  const body = Buffer.concat([...records].map(([key, value]) => paxRecord(key, value)))
  // Go: path.Join(path.Split(name)'s dir, "PaxHeaders.0", its file).
  const slash = fields.name.lastIndexOf('/')
  const dir = fields.name.slice(0, slash + 1)
  const base = fields.name.slice(slash + 1)
  const joined = [dir.replace(/\/+$/, ''), 'PaxHeaders.0', base].filter((p) => p !== '')
  const headerName = asciiPrefix(joined.join('/'), 100)

  const block = Buffer.alloc(TAR_BLOCK_BYTES)
  block.write(headerName, 0, 100, 'latin1')
  writeOctal(block, 100, 8, 0)
  writeOctal(block, 108, 8, 0)
  writeOctal(block, 116, 8, 0)
  writeOctal(block, 124, 12, body.length)
  writeOctal(block, 136, 12, 0)
  block.write('x', 156, 1, 'latin1')
  block.write('ustar\u000000', 257, 8, 'latin1')
  writeChecksum(block)
  return Buffer.concat([block, body, Buffer.alloc(tarPaddingBytes(body.length))])
}

// "%d %s=%s\n" where the leading length counts the whole record, itself included.
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.byteLength(key) + value.length + 3
  let length = rest + String(rest).length
  if (String(length).length !== String(rest).length) length = rest + String(length).length
  return Buffer.concat([Buffer.from(`${length} ${key}=`), value, Buffer.from('\n')])
}

// USTAR keeps a longer name as prefix (155) + '/' + name (100), ASCII only; the split
// point is chosen as Go's archive/tar splitUSTARPath chooses it, so headers match Go's.
function splitUstarName(name: string): { prefix: string; name: string } | undefined {
  if (fitsUstar(name, 100)) return { prefix: '', name }
  if (!isAscii(name)) return undefined
  let length = name.length
  if (length > 156) length = 156
  else if (name.endsWith('/')) length--
  const slash = name.lastIndexOf('/', length - 1)
  const suffixBytes = name.length - slash - 1
  if (slash <= 0 || suffixBytes > 100 || suffixBytes === 0 || slash > 155) return undefined
  return { prefix: name.slice(0, slash), name: name.slice(slash + 1) }
}

function checkDeviceNumbers(fields: TarHeaderFields): void {
  if (fields.devMajor <= MAX_OCTAL_7 && fields.devMinor <= MAX_OCTAL_7) return
  throw new EdgestarError(
    CONVERT_ERRORS.ENTRY_UNSUPPORTED,
    `device numbers ${fields.devMajor}:${fields.devMinor} of "${fields.name}" do not fit a tar header`,
    { hint: 'leave this device node out of the layer; the runtime creates devices itself' },
  )
}

function fitsUstar(value: string, maxBytes: number): boolean {
  return value.length <= maxBytes && isAscii(value)
}

// NUL cannot sit inside a header field, and bytes above 0x7f make the field non-ASCII.
function isAscii(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i)
    if (code === 0 || code > 0x7f) return false
  }
  return true
}

function asciiPrefix(value: string, maxBytes: number): string {
  let out = ''
  for (const char of value) out += isAscii(char) ? char : '_'
  return out.slice(0, maxBytes)
}

// Octal, zero-padded to width-1 digits and NUL-terminated, as Go and GNU tar write it.
function writeOctal(block: Buffer, offset: number, width: number, value: number): void {
  const text = value.toString(8).padStart(width - 1, '0')
  block.write(`${text}\u0000`, offset, width, 'latin1')
}

// The checksum is the byte sum of the header with the checksum field read as spaces.
function writeChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156)
  let sum = 0
  for (const byte of block) sum += byte
  block.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'latin1')
}

/** Byte-order comparison of two strings as UTF-8 (Go's string order). */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b))
}
