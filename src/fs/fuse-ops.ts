import type { Logger } from '../log.js'
import type { DirEntry, ImageView, LentBytes, NodeType, ViewNode } from './image-view.js'
import { childPath, NodeTable, parentPath, type Xattrs } from './kernel/node-table.js'
import {
  type Attr,
  cString,
  type Dirent,
  direntBytes,
  direntPlusBytes,
  encodeAttr,
  encodeEntry,
  encodeOpen,
  encodeStatfs,
  encodeXattrSize,
  FOPEN_CACHE_DIR,
  FOPEN_KEEP_CACHE,
  Opcode,
  parseBatchForget,
  parseForget,
  parseOpenFlags,
  parseRead,
  parseReleaseHandle,
  parseXattrName,
  parseXattrSize,
  type RequestHeader,
  type Validity,
  writeDirent,
  writeDirentPlus,
} from './kernel/protocol.js'
import { type Answer, Errno, type Handler } from './kernel/session.js'

const S_IFMT_BITS: Record<NodeType, number> = {
  fifo: 0o010000,
  char: 0o020000,
  dir: 0o040000,
  block: 0o060000,
  reg: 0o100000,
  symlink: 0o120000,
}

const O_ACCMODE = 3
const BLOCK_BYTES = 4096
const NAME_MAX = 255
const OK: readonly Buffer[] = []
// One warning per file and minute when reads fail: a reader retrying a dead file would
// otherwise fill the log.
const READ_FAILURE_LOG_INTERVAL_MS = 60_000

export interface FuseOpsOptions {
  entryTimeoutSec: number
  attrTimeoutSec: number
  /** Keep file pages and directory listings in the kernel's caches across opens. */
  kernelCache: boolean
}

/** One entry of a listing; `path` is unset for `.` and `..`. */
interface ListedEntry {
  name: string
  node: ViewNode
  path?: string
}

/**
 * An open directory. Its listing (`.`, `..`, then the view's) is taken at the first
 * READDIR, not at OPENDIR: the kernel answers later opens of a directory it has listed
 * from its own cache, and then sends only OPENDIR and RELEASEDIR.
 */
interface OpenDirectory {
  path: string
  node: ViewNode
  listing?: Promise<ListedEntry[]>
  listed?: ListedEntry[]
}

/**
 * The request handlers, by FUSE opcode, for a read-only `ImageView`. Node ids name view
 * paths (`NodeTable`); attributes carry the view's inode numbers, so hardlinks share one.
 * Handlers answer through promises unless the bytes are already in memory, so the event
 * loop never waits; a failure becomes EIO for the kernel (the view's owner logs causes).
 */
export function buildFuseHandlers(
  view: ImageView,
  log: Logger,
  options: FuseOpsOptions,
): Partial<Record<number, Handler>> {
  const nodes = new NodeTable()
  const directories = new Map<number, OpenDirectory>()
  let nextDirHandle = 1
  const valid: Validity = { entrySec: options.entryTimeoutSec, attrSec: options.attrTimeoutSec }
  const readFailures = new Map<string, number>()

  const nodeAt = async (header: RequestHeader): Promise<ViewNode | undefined> => {
    const path = nodes.pathOf(header.nodeId)
    return path === undefined ? undefined : view.lookup(path)
  }

  // `answer` given the node's xattrs: from the node table when it knows them (at once,
  // no view query), else from the view (the root); ENOENT for an unknown node.
  const withXattrs = (header: RequestHeader, answer: (xattrs: Xattrs) => Answer) => {
    const known = nodes.xattrsOf(header.nodeId)
    if (known) return answer(known)
    return nodeAt(header).then((node) => (node ? answer(node.xattrs) : Errno.ENOENT))
  }

  const noteReadFailure = (path: string, err: unknown): Answer => {
    const now = Date.now()
    if (now - (readFailures.get(path) ?? 0) >= READ_FAILURE_LOG_INTERVAL_MS) {
      readFailures.set(path, now)
      log.warn({ path: `/${path}`, err }, 'read failed; the reader got EIO')
    }
    return Errno.EIO
  }

  const handlers: Partial<Record<number, Handler>> = {
    [Opcode.LOOKUP]: async (header, body) => {
      const parent = nodes.pathOf(header.nodeId)
      if (parent === undefined) return Errno.ENOENT
      const path = childPath(parent, cString(body))
      const node = await view.lookup(path)
      // Node id 0 is a negative answer the kernel caches for entry_valid seconds.
      if (!node) return encodeEntry(0, undefined, valid)
      return encodeEntry(nodes.remember(path, node.xattrs), toAttr(node), valid)
    },

    [Opcode.FORGET]: (header, body) => {
      nodes.forget(header.nodeId, parseForget(body))
      return undefined
    },

    [Opcode.BATCH_FORGET]: (_header, body) => {
      for (const { nodeId, count } of parseBatchForget(body)) nodes.forget(nodeId, count)
      return undefined
    },

    [Opcode.GETATTR]: async (header) => {
      const node = await nodeAt(header)
      return node ? encodeAttr(toAttr(node), options.attrTimeoutSec) : Errno.ENOENT
    },

    [Opcode.READLINK]: async (header) => {
      const node = await nodeAt(header)
      if (!node) return Errno.ENOENT
      return node.type === 'symlink' ? Buffer.from(node.linkName) : Errno.EINVAL
    },

    // Answered without asking the view: only regular files come here (directories get
    // OPENDIR; the kernel opens devices and FIFOs itself), and a known id is one.
    [Opcode.OPEN]: (header, body) => {
      if ((parseOpenFlags(body) & O_ACCMODE) !== 0) return Errno.EROFS
      if (nodes.pathOf(header.nodeId) === undefined) return Errno.ENOENT
      return encodeOpen(0, options.kernelCache ? FOPEN_KEEP_CACHE : 0)
    },

    [Opcode.READ]: (header, body) => {
      const path = nodes.pathOf(header.nodeId)
      if (path === undefined) return Errno.EBADF
      const { offset, size } = parseRead(body)
      const failed = (err: unknown): Answer => noteReadFailure(path, err)

      // Slices of the view's memory go to the kernel as they are, without a copy.
      if (view.readSlices) {
        const ready = sliceIfReady(view, path, offset, size)
        if (ready) return lendReply(ready)
        return view.readSlices(path, offset, size).then(lendReply, failed)
      }
      return view.read(path, offset, size).catch(failed)
    },

    // FLUSH has no handler: its ENOSYS tells the kernel to stop sending one at every
    // close(2), a round trip a read-only file system has no use for.
    [Opcode.RELEASE]: () => OK,

    [Opcode.OPENDIR]: async (header) => {
      const path = nodes.pathOf(header.nodeId)
      if (path === undefined) return Errno.ENOENT
      const node = await view.lookup(path)
      if (!node) return Errno.ENOENT
      if (node.type !== 'dir') return Errno.ENOTDIR
      const handle = nextDirHandle++
      directories.set(handle, { path, node })
      // KEEP_CACHE as well: without it the kernel drops the cached listing at each open
      // (Linux 6.18 here: a second `ls` of 100k entries took as long as the first).
      return encodeOpen(handle, options.kernelCache ? FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE : 0)
    },

    [Opcode.READDIR]: (_header, body) => {
      const { fileHandle, offset, size } = parseRead(body)
      const dir = directories.get(fileHandle)
      if (!dir) return Errno.EBADF
      return withListing(view, dir, (entries) => fillDirents(entries, offset, size))
    },

    [Opcode.READDIRPLUS]: (_header, body) => {
      const { fileHandle, offset, size } = parseRead(body)
      const dir = directories.get(fileHandle)
      if (!dir) return Errno.EBADF
      const fill = (entries: ListedEntry[]) => fillDirentsPlus(entries, offset, size, nodes, valid)
      return withListing(view, dir, fill)
    },

    [Opcode.RELEASEDIR]: (_header, body) => {
      directories.delete(parseReleaseHandle(body))
      return OK
    },

    [Opcode.GETXATTR]: (header, body) =>
      withXattrs(header, (xattrs) => {
        // Own names only: any name reaches here (the kernel passes them through), and
        // `constructor` or `__proto__` would otherwise find the object's prototype chain.
        const name = parseXattrName(body)
        const value = Object.hasOwn(xattrs, name) ? xattrs[name] : undefined
        return value ? sized(value, parseXattrSize(body)) : Errno.ENODATA
      }),

    [Opcode.LISTXATTR]: (header, body) =>
      withXattrs(header, (xattrs) => {
        const names = Object.keys(xattrs).map((name) => `${name}\0`)
        return sized(Buffer.from(names.join('')), parseXattrSize(body))
      }),

    [Opcode.STATFS]: async () => {
      const stats = await view.statfs()
      return encodeStatfs({
        blocks: Math.ceil(stats.sizeBytes / BLOCK_BYTES),
        files: stats.entryCount,
        blockBytes: BLOCK_BYTES,
        nameMax: NAME_MAX,
      })
    },
  }
  // An image without xattrs (most are) answers ENOSYS: the kernel then stops asking for
  // good, where `ls -l` otherwise sends two GETXATTR requests per file it lists.
  if (view.hasXattrs === false) {
    delete handlers[Opcode.GETXATTR]
    delete handlers[Opcode.LISTXATTR]
  }
  return handlers
}

/** An xattr answer: the size alone when the caller asked with size 0, else the value. */
function sized(value: Buffer, callerSize: number): Answer {
  if (callerSize === 0) return encodeXattrSize(value.length)
  return callerSize < value.length ? Errno.ERANGE : value
}

// A throw here would escape into the session's dispatch as EIO without the view's own
// error; leave failures to the awaited path, which logs them.
function sliceIfReady(
  view: ImageView,
  path: string,
  offset: number,
  length: number,
): LentBytes | undefined {
  try {
    return view.sliceIfReady?.(path, offset, length)
  } catch {
    return undefined
  }
}

function lendReply(lent: LentBytes): Answer {
  return { parts: lent.parts, written: lent.release }
}

/** `fill` applied to the listing of `dir`, at once when it has been taken already. */
function withListing(
  view: ImageView,
  dir: OpenDirectory,
  fill: (entries: ListedEntry[]) => Buffer,
): Buffer | Promise<Buffer> {
  if (dir.listed) return fill(dir.listed)
  dir.listing ??= listDirectory(view, dir).then((entries) => {
    dir.listed = entries
    return entries
  })
  return dir.listing.then(fill)
}

// The view is immutable and OPENDIR found a directory at `path`: an absent one is a bug.
// Cookies are indexes into this listing, so its order must be the same at every open
// (the kernel's cache may continue a listing begun under another handle).
async function listDirectory(view: ImageView, dir: OpenDirectory): Promise<ListedEntry[]> {
  const { path, node } = dir
  const [listing, parent] = await Promise.all([
    view.readdir(path),
    path === '' ? node : view.lookup(parentPath(path)),
  ])
  if (!listing) throw new Error(`directory /${path} is gone from an immutable view`)
  return [
    { name: '.', node },
    { name: '..', node: parent ?? node },
    ...listing.map((child: DirEntry) => ({ ...child, path: childPath(path, child.name) })),
  ]
}

/** Entries from index `offset` that fit in `size` bytes; each entry's cookie is its index + 1. */
function fillDirents(entries: ListedEntry[], offset: number, size: number): Buffer {
  const out = Buffer.allocUnsafe(size)
  let used = 0
  for (let index = offset; index < entries.length; index++) {
    const { name, node } = entries[index]!
    if (used + direntBytes(name) > size) break
    used += writeDirent(out, used, direntOf(name, node, index))
  }
  return out.subarray(0, used)
}

/**
 * `fillDirents` with each entry's lookup answer. Every entry sent with a node id counts as
 * a lookup the kernel will forget later. `.`, `..` and subdirectories go with node id 0
 * (no attributes): a listing knows a subdirectory's attributes but not its link count,
 * which needs that directory's own listing, so the kernel looks it up by itself.
 */
function fillDirentsPlus(
  entries: ListedEntry[],
  offset: number,
  size: number,
  nodes: NodeTable,
  valid: Validity,
): Buffer {
  const out = Buffer.allocUnsafe(size)
  let used = 0
  for (let index = offset; index < entries.length; index++) {
    const { name, node, path } = entries[index]!
    if (used + direntPlusBytes(name) > size) break
    const nodeId = path === undefined || node.type === 'dir' ? 0 : nodes.remember(path, node.xattrs)
    used += writeDirentPlus(out, used, direntOf(name, node, index), nodeId, toAttr(node), valid)
  }
  return out.subarray(0, used)
}

function direntOf(name: string, node: ViewNode, index: number): Dirent {
  return { ino: node.ino, nextOffset: index + 1, mode: S_IFMT_BITS[node.type], name }
}

/** A view node as the kernel's attributes (mode with type bits, rdev encoded). */
export function toAttr(node: ViewNode): Attr {
  return {
    ino: node.ino,
    sizeBytes: node.sizeBytes,
    blocks: Math.ceil(node.sizeBytes / 512),
    mtimeMs: node.mtimeMs,
    mode: S_IFMT_BITS[node.type] | (node.mode & 0o7777),
    nlink: node.nlink,
    uid: node.uid,
    gid: node.gid,
    rdev: makeDev(node.devMajor, node.devMinor),
    blksize: BLOCK_BYTES,
  }
}

/** The kernel's 32-bit device encoding (`new_encode_dev`; major < 4096). */
function makeDev(major: number, minor: number): number {
  return (((major & 0xfff) << 8) | (minor & 0xff) | ((minor & 0xfff00) << 12)) >>> 0
}
