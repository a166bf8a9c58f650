import type { Logger } from '../log.js'
import type { ImageView, NodeType, ViewNode } from './image-view.js'

/** Linux errno values as fuse-native wants them (negative). */
const ENOENT = -2
const EIO = -5
const ENOTDIR = -20
const EISDIR = -21
const EINVAL = -22
const EROFS = -30
const ENODATA = -61

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
const ST_RDONLY = 1
const NAME_MAX = 255

/** The stat fields fuse-native turns into a `struct stat` (times in milliseconds). */
export interface FuseStat {
  mode: number
  uid: number
  gid: number
  size: number
  nlink: number
  ino: number
  rdev: number
  blksize: number
  blocks: number
  atime: number
  mtime: number
  ctime: number
}

type Cb = (code: number, ...values: unknown[]) => void

/**
 * The fuse-native handler table for a read-only `ImageView`. Every handler answers
 * through a promise, so the event loop is never blocked; failures become an errno for
 * the kernel and one debug line in `log` (the view's owner logs the cause once).
 */
export function buildFuseOps(view: ImageView, log: Logger): Record<string, unknown> {
  const answer = (op: string, path: string, cb: Cb, work: () => Promise<void>): void => {
    work().catch((err: unknown) => {
      log.debug({ op, path, err }, 'fuse op failed')
      cb(EIO)
    })
  }

  return {
    getattr(path: string, cb: Cb): void {
      answer('getattr', path, cb, async () => {
        const node = await view.lookup(toViewPath(path))
        if (!node) return cb(ENOENT)
        cb(0, toStat(node))
      })
    },

    readdir(path: string, cb: Cb): void {
      answer('readdir', path, cb, async () => {
        const dirPath = toViewPath(path)
        const [dir, listing] = await Promise.all([view.lookup(dirPath), view.readdir(dirPath)])
        if (!dir) return cb(ENOENT)
        if (!listing) return cb(ENOTDIR)

        const parent = dirPath === '' ? dir : await view.lookup(parentOf(dirPath))
        const names = ['.', '..']
        const stats = [toStat(dir), toStat(parent ?? dir)]
        for (const child of listing) {
          names.push(child.name)
          stats.push(toStat(child.node))
        }
        cb(0, names, stats)
      })
    },

    open(path: string, flags: number, cb: Cb): void {
      answer('open', path, cb, async () => {
        if ((flags & O_ACCMODE) !== 0) return cb(EROFS)
        const node = await view.lookup(toViewPath(path))
        if (!node) return cb(ENOENT)
        if (node.type === 'dir') return cb(EISDIR)
        cb(0, 0)
      })
    },

    read(path: string, _fd: number, buf: Buffer, length: number, offset: number, cb: Cb): void {
      const viewPath = toViewPath(path)
      const ready = readIfReady(view, viewPath, offset, length, buf)
      if (ready !== undefined) {
        cb(ready)
        return
      }
      answer('read', path, cb, async () => {
        // Straight into the kernel's reply buffer when the view can (no copy, no garbage).
        if (view.readInto) return cb(await view.readInto(viewPath, offset, length, buf))
        const data = await view.read(viewPath, offset, length)
        data.copy(buf)
        cb(data.length)
      })
    },

    readlink(path: string, cb: Cb): void {
      answer('readlink', path, cb, async () => {
        const node = await view.lookup(toViewPath(path))
        if (!node) return cb(ENOENT)
        if (node.type !== 'symlink') return cb(EINVAL)
        cb(0, node.linkName)
      })
    },

    getxattr(path: string, name: string, _position: number, cb: Cb): void {
      answer('getxattr', path, cb, async () => {
        const node = await view.lookup(toViewPath(path))
        if (!node) return cb(ENOENT)
        const value = node.xattrs[name]
        if (!value) return cb(ENODATA)
        cb(0, value)
      })
    },

    listxattr(path: string, cb: Cb): void {
      answer('listxattr', path, cb, async () => {
        const node = await view.lookup(toViewPath(path))
        if (!node) return cb(ENOENT)
        cb(0, Object.keys(node.xattrs))
      })
    },

    statfs(path: string, cb: Cb): void {
      answer('statfs', path, cb, async () => {
        const stats = await view.statfs()
        cb(0, {
          bsize: BLOCK_BYTES,
          frsize: BLOCK_BYTES,
          blocks: Math.ceil(stats.sizeBytes / BLOCK_BYTES),
          bfree: 0,
          bavail: 0,
          files: stats.entryCount,
          ffree: 0,
          favail: 0,
          fsid: 0,
          flag: ST_RDONLY,
          namemax: NAME_MAX,
        })
      })
    },
  }
}

// A throw here would escape into fuse-native's native dispatch: leave it to the awaited
// path, which turns failures into EIO.
function readIfReady(
  view: ImageView,
  path: string,
  offset: number,
  length: number,
  target: Buffer,
): number | undefined {
  try {
    return view.readIntoIfReady?.(path, offset, length, target)
  } catch {
    return undefined
  }
}

/** A view node as fuse-native's stat object (mode with type bits, rdev encoded). */
export function toStat(node: ViewNode): FuseStat {
  const mtime = Math.max(0, node.mtimeMs)
  return {
    mode: S_IFMT_BITS[node.type] | (node.mode & 0o7777),
    uid: node.uid,
    gid: node.gid,
    size: node.sizeBytes,
    nlink: node.nlink,
    ino: node.ino,
    rdev: makeDev(node.devMajor, node.devMinor),
    blksize: BLOCK_BYTES,
    blocks: Math.ceil(node.sizeBytes / 512),
    atime: mtime,
    mtime,
    ctime: mtime,
  }
}

/** glibc's makedev() for the 32 bits fuse-native carries (major < 4096). */
function makeDev(major: number, minor: number): number {
  return (((major & 0xfff) << 8) | (minor & 0xff) | ((minor & 0xfff00) << 12)) >>> 0
}

function toViewPath(fusePath: string): string {
  return fusePath.replace(/^\/+/, '').replace(/\/+$/, '')
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf('/')
  return slash < 0 ? '' : path.slice(0, slash)
}
