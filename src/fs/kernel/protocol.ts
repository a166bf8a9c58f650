/**
 * The parts of the Linux FUSE wire protocol (linux/fuse.h, version 7.31 as negotiated
 * here) a read-only filesystem needs: request headers in, reply structs out. Everything
 * is little-endian on the machines edgestar runs on (x86-64, arm64, armv7).
 */

/** Protocol version this server speaks; the kernel uses the smaller of its own and this. */
export const PROTOCOL_MAJOR = 7
export const PROTOCOL_MINOR = 31

export const ROOT_NODE_ID = 1

export const Opcode = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  READLINK: 5,
  OPEN: 14,
  READ: 15,
  STATFS: 17,
  RELEASE: 18,
  GETXATTR: 22,
  LISTXATTR: 23,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  ACCESS: 34,
  INTERRUPT: 36,
  DESTROY: 38,
  BATCH_FORGET: 42,
  READDIRPLUS: 44,
} as const

/** INIT flags this server asks for (each only when the kernel offers it). */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
} as const

/** `fuse_open_out.open_flags`: keep the file's pages cached across opens. */
export const FOPEN_KEEP_CACHE = 1 << 1
/** `fuse_open_out.open_flags` for directories: cache the listing in the kernel. */
export const FOPEN_CACHE_DIR = 1 << 3

export const IN_HEADER_BYTES = 40
export const OUT_HEADER_BYTES = 16
const ATTR_BYTES = 88
const ENTRY_OUT_BYTES = 40 + ATTR_BYTES
const ATTR_OUT_BYTES = 16 + ATTR_BYTES
const DIRENT_HEADER_BYTES = 24
const STATFS_OUT_BYTES = 80
const INIT_OUT_BYTES = 64

/** The fixed part of every request. */
export interface RequestHeader {
  opcode: number
  unique: bigint
  nodeId: number
  uid: number
  gid: number
  pid: number
}

export function parseHeader(request: Buffer): RequestHeader {
  return {
    opcode: request.readUInt32LE(4),
    unique: request.readBigUInt64LE(8),
    // Node ids are handed out by this server and stay far below 2^53.
    nodeId: Number(request.readBigUInt64LE(16)),
    uid: request.readUInt32LE(24),
    gid: request.readUInt32LE(28),
    pid: request.readUInt32LE(32),
  }
}

/** The request body after the header. */
export function bodyOf(request: Buffer): Buffer {
  return request.subarray(IN_HEADER_BYTES)
}

/** A NUL-terminated name at the start of `body` (LOOKUP, GETXATTR after its struct). */
export function cString(body: Buffer, start = 0): string {
  const end = body.indexOf(0, start)
  return body.toString('utf8', start, end < 0 ? body.length : end)
}

export interface InitRequest {
  major: number
  minor: number
  maxReadahead: number
  flags: number
}

export function parseInit(body: Buffer): InitRequest {
  return {
    major: body.readUInt32LE(0),
    minor: body.readUInt32LE(4),
    maxReadahead: body.readUInt32LE(8),
    flags: body.readUInt32LE(12),
  }
}

export interface InitReply {
  maxReadahead: number
  flags: number
  maxBackground: number
  congestionThreshold: number
  maxWrite: number
  maxPages: number
}

export function encodeInit(reply: InitReply): Buffer {
  const out = Buffer.alloc(INIT_OUT_BYTES)
  out.writeUInt32LE(PROTOCOL_MAJOR, 0)
  out.writeUInt32LE(PROTOCOL_MINOR, 4)
  out.writeUInt32LE(reply.maxReadahead, 8)
  out.writeUInt32LE(reply.flags >>> 0, 12)
  out.writeUInt16LE(reply.maxBackground, 16)
  out.writeUInt16LE(reply.congestionThreshold, 18)
  out.writeUInt32LE(reply.maxWrite, 20)
  out.writeUInt32LE(1, 24) // time_gran: nanoseconds
  out.writeUInt16LE(reply.maxPages, 28)
  return out
}

/** Attributes as the kernel caches them. Times in milliseconds since the epoch. */
export interface Attr {
  ino: number
  sizeBytes: number
  blocks: number
  mtimeMs: number
  /** File type and permission bits, as in `st_mode`. */
  mode: number
  nlink: number
  uid: number
  gid: number
  /** Device number in the kernel's 32-bit encoding (`new_encode_dev`). */
  rdev: number
  blksize: number
}

function writeAttr(out: Buffer, at: number, attr: Attr): void {
  // The kernel takes the seconds as signed (time64_t): an image may hold times before
  // 1970, which `edgestar extract` keeps too. The nanoseconds are never negative.
  const seconds = Math.floor(attr.mtimeMs / 1000)
  const nanos = Math.round((attr.mtimeMs - seconds * 1000) * 1e6)
  out.writeBigUInt64LE(BigInt(attr.ino), at)
  out.writeBigUInt64LE(BigInt(attr.sizeBytes), at + 8)
  out.writeBigUInt64LE(BigInt(attr.blocks), at + 16)
  for (const field of [24, 32, 40]) out.writeBigInt64LE(BigInt(seconds), at + field)
  for (const field of [48, 52, 56]) out.writeUInt32LE(nanos, at + field)
  out.writeUInt32LE(attr.mode, at + 60)
  out.writeUInt32LE(attr.nlink, at + 64)
  out.writeUInt32LE(attr.uid, at + 68)
  out.writeUInt32LE(attr.gid, at + 72)
  out.writeUInt32LE(attr.rdev, at + 76)
  out.writeUInt32LE(attr.blksize, at + 80)
}

/** Cache lifetimes the kernel keeps for a name and for its attributes, in seconds. */
export interface Validity {
  entrySec: number
  attrSec: number
}

function writeEntry(out: Buffer, at: number, nodeId: number, attr: Attr, valid: Validity): void {
  out.writeBigUInt64LE(BigInt(nodeId), at)
  out.writeBigUInt64LE(0n, at + 8) // generation: node ids are never reused with other meaning
  out.writeBigUInt64LE(BigInt(valid.entrySec), at + 16)
  out.writeBigUInt64LE(BigInt(valid.attrSec), at + 24)
  writeAttr(out, at + 40, attr)
}

/** LOOKUP reply. Node id 0 with no attributes is a cached negative answer. */
export function encodeEntry(nodeId: number, attr: Attr | undefined, valid: Validity): Buffer {
  const out = Buffer.alloc(ENTRY_OUT_BYTES)
  if (attr) writeEntry(out, 0, nodeId, attr, valid)
  else out.writeBigUInt64LE(BigInt(valid.entrySec), 16)
  return out
}

export function encodeAttr(attr: Attr, attrSec: number): Buffer {
  const out = Buffer.alloc(ATTR_OUT_BYTES)
  out.writeBigUInt64LE(BigInt(attrSec), 0)
  writeAttr(out, 16, attr)
  return out
}

export function encodeOpen(fileHandle: number, openFlags: number): Buffer {
  const out = Buffer.alloc(16)
  out.writeBigUInt64LE(BigInt(fileHandle), 0)
  out.writeUInt32LE(openFlags, 8)
  return out
}

export interface ReadRequest {
  fileHandle: number
  offset: number
  size: number
}

export function parseRead(body: Buffer): ReadRequest {
  return {
    fileHandle: Number(body.readBigUInt64LE(0)),
    offset: Number(body.readBigUInt64LE(8)),
    size: body.readUInt32LE(16),
  }
}

/** RELEASE / RELEASEDIR: the handle being closed. */
export function parseReleaseHandle(body: Buffer): number {
  return Number(body.readBigUInt64LE(0))
}

/** OPEN: the open(2) flags. */
export function parseOpenFlags(body: Buffer): number {
  return body.readUInt32LE(0)
}

/** GETXATTR / LISTXATTR: the caller's buffer size (0 asks for the size only). */
export function parseXattrSize(body: Buffer): number {
  return body.readUInt32LE(0)
}

/** GETXATTR: the attribute name after `fuse_getxattr_in`. */
export function parseXattrName(body: Buffer): string {
  return cString(body, 8)
}

export function encodeXattrSize(size: number): Buffer {
  const out = Buffer.alloc(8)
  out.writeUInt32LE(size, 0)
  return out
}

export function parseForget(body: Buffer): number {
  return Number(body.readBigUInt64LE(0))
}

/** BATCH_FORGET: pairs of node id and lookup count to drop. */
export function parseBatchForget(body: Buffer): Array<{ nodeId: number; count: number }> {
  const count = body.readUInt32LE(0)
  const forgets = []
  for (let i = 0; i < count; i++) {
    const at = 8 + i * 16
    forgets.push({
      nodeId: Number(body.readBigUInt64LE(at)),
      count: Number(body.readBigUInt64LE(at + 8)),
    })
  }
  return forgets
}

export interface StatfsReply {
  blocks: number
  files: number
  blockBytes: number
  nameMax: number
}

export function encodeStatfs(stats: StatfsReply): Buffer {
  const out = Buffer.alloc(STATFS_OUT_BYTES)
  out.writeBigUInt64LE(BigInt(stats.blocks), 0)
  out.writeBigUInt64LE(BigInt(stats.files), 24)
  out.writeUInt32LE(stats.blockBytes, 40)
  out.writeUInt32LE(stats.nameMax, 44)
  out.writeUInt32LE(stats.blockBytes, 48)
  return out
}

/** One directory entry of a READDIR reply. */
export interface Dirent {
  ino: number
  /** The cookie the kernel passes back to continue after this entry. */
  nextOffset: number
  /** File type and permission bits; only the type is sent. */
  mode: number
  name: string
}

const align8 = (n: number): number => (n + 7) & ~7

/** Bytes `dirent` takes in a READDIR reply. */
export function direntBytes(name: string): number {
  return align8(DIRENT_HEADER_BYTES + Buffer.byteLength(name))
}

/** Bytes `dirent` takes in a READDIRPLUS reply. */
export function direntPlusBytes(name: string): number {
  return ENTRY_OUT_BYTES + direntBytes(name)
}

/** Writes `dirent` at `at` in `out`; returns the bytes used. */
export function writeDirent(out: Buffer, at: number, dirent: Dirent): number {
  const nameBytes = out.write(dirent.name, at + DIRENT_HEADER_BYTES, 'utf8')
  out.writeBigUInt64LE(BigInt(dirent.ino), at)
  out.writeBigUInt64LE(BigInt(dirent.nextOffset), at + 8)
  out.writeUInt32LE(nameBytes, at + 16)
  out.writeUInt32LE((dirent.mode >>> 12) & 0o17, at + 20)
  const size = align8(DIRENT_HEADER_BYTES + nameBytes)
  out.fill(0, at + DIRENT_HEADER_BYTES + nameBytes, at + size)
  return size
}

/**
 * Writes a READDIRPLUS entry: the lookup answer (node id 0 for `.` and `..`, which the
 * kernel does not count as lookups) followed by the dirent. Returns the bytes used.
 */
export function writeDirentPlus(
  out: Buffer,
  at: number,
  dirent: Dirent,
  nodeId: number,
  attr: Attr,
  valid: Validity,
): number {
  out.fill(0, at, at + ENTRY_OUT_BYTES)
  if (nodeId !== 0) writeEntry(out, at, nodeId, attr, valid)
  return ENTRY_OUT_BYTES + writeDirent(out, at + ENTRY_OUT_BYTES, dirent)
}

/** A reply header for `unique` with `error` (a negative errno, or 0) and `bodyBytes`. */
export function encodeReplyHeader(unique: bigint, error: number, bodyBytes: number): Buffer {
  const out = Buffer.allocUnsafe(OUT_HEADER_BYTES)
  out.writeUInt32LE(OUT_HEADER_BYTES + bodyBytes, 0)
  out.writeInt32LE(error, 4)
  out.writeBigUInt64LE(unique, 8)
  return out
}
