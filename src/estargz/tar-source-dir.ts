/**
 * Walks a directory tree into SourceEntries, in the order the reference tools walk it
 * (depth first, names in byte order), with a `./` entry for the root itself so its
 * mode and owner survive. Hardlinks are found by device and inode: the first name seen
 * carries the content, later names become `hardlink` entries pointing at it. xattrs
 * come from one `getfattr -R` run over the tree (Node has no xattr API; Debian `attr`).
 */
import { execFile } from 'node:child_process'
import type { Stats } from 'node:fs'
import { lstat, open, readdir, readlink, realpath } from 'node:fs/promises'
import { join } from 'node:path'
import { EdgestarError } from '../errors.js'
import { CONVERT_ERRORS, inputError } from './convert-errors.js'
import {
  type EntrySource,
  NO_XATTRS,
  noContent,
  type SkippedEntry,
  type SourceEntry,
  type SourceEntryType,
} from './tar-source.js'

/** xattrs a directory conversion drops by default: host labels, not image content. */
export const DEFAULT_SKIPPED_XATTRS = ['security.selinux']

/** Options of `walkDirectory`. */
export interface WalkDirectoryOptions {
  /** Keep only xattrs whose names start with one of these; default all but security.selinux. */
  xattrPrefixes?: string[]
  /** Called for skipped sockets and unreadable xattrs. */
  onWarning?: (message: string) => void
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Lists the tree under `root` as SourceEntries (metadata now, content on demand).
 * User and group names stay empty: the host's names say nothing about the image's.
 * Sockets are left out (listed in `skipped`). Throws INPUT_UNREADABLE,
 * INPUT_PERMISSION_DENIED, or ENTRY_UNSUPPORTED for a name that is not UTF-8.
 */
export async function walkDirectory(
  root: string,
  options: WalkDirectoryOptions = {},
): Promise<EntrySource> {
  const warn = options.onWarning ?? (() => {})
  const absRoot = await realpath(root)
  const xattrs = await readTreeXattrs(absRoot, options.xattrPrefixes, warn)
  const walker = new DirectoryWalker(xattrs, warn)
  await walker.visit(absRoot, '')
  const entries = walker.entries
  const totalBytes = entries.reduce((sum, e) => sum + e.sizeBytes, 0)
  return { entries, totalBytes, skipped: walker.skipped, close: async () => {} }
}

class DirectoryWalker {
  readonly entries: SourceEntry[] = []
  readonly skipped: SkippedEntry[] = []
  private readonly firstNameByInode = new Map<string, string>()

  constructor(
    private readonly xattrs: Map<string, Map<string, Buffer>>,
    private readonly warn: (message: string) => void,
  ) {}

  // `rel` is '' for the root, else the path relative to it. A directory's children are
  // stat'ed together (the thread pool overlaps them), then visited in order.
  async visit(path: string, rel: string, known?: Stats): Promise<void> {
    const stats = known ?? (await lstatOrThrow(path))
    if (stats.isSocket()) {
      const reason = 'socket (a layer cannot carry sockets)'
      this.skipped.push({ path: rel, reason })
      this.warn(`skipped ${rel}: ${reason}`)
      return
    }
    const name = rel === '' ? './' : stats.isDirectory() ? `${rel}/` : rel
    this.entries.push(await this.toEntry(path, name, stats))
    if (!stats.isDirectory()) return

    const children = await listSorted(path)
    const childStats = await mapLimited(children, STAT_CONCURRENCY, (child) =>
      lstatOrThrow(join(path, child)),
    )
    for (const [i, child] of children.entries()) {
      const childRel = rel === '' ? child : `${rel}/${child}`
      await this.visit(join(path, child), childRel, childStats[i])
    }
  }

  private async toEntry(path: string, name: string, stats: Stats): Promise<SourceEntry> {
    let type = entryType(stats, name)
    let linkName =
      type === 'symlink'
        ? await readlink(path).catch((cause: unknown) => {
            throw inputError(path, 'read the link', cause)
          })
        : ''
    let sizeBytes = type === 'reg' ? stats.size : 0

    if (type === 'reg' && stats.nlink > 1) {
      const inode = `${stats.dev}:${stats.ino}`
      const first = this.firstNameByInode.get(inode)
      if (first === undefined) this.firstNameByInode.set(inode, name)
      else {
        type = 'hardlink'
        linkName = first
        sizeBytes = 0
      }
    }

    const isDevice = type === 'char' || type === 'block'
    return {
      name,
      type,
      mode: stats.mode & 0o7777,
      uid: stats.uid,
      gid: stats.gid,
      userName: '',
      groupName: '',
      mtimeSec: Math.floor(stats.mtimeMs / 1000),
      linkName,
      devMajor: isDevice ? deviceMajor(stats.rdev) : 0,
      devMinor: isDevice ? deviceMinor(stats.rdev) : 0,
      sizeBytes,
      xattrs: this.xattrs.get(path) ?? NO_XATTRS,
      readContent: sizeBytes === 0 ? noContent : fileReader(path, sizeBytes, name),
    }
  }
}

// lstat calls in flight at once while walking a directory.
const STAT_CONCURRENCY = 32

async function mapLimited<T, R>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i] as T)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
  return results
}

function entryType(stats: Stats, name: string): SourceEntryType {
  if (stats.isDirectory()) return 'dir'
  if (stats.isFile()) return 'reg'
  if (stats.isSymbolicLink()) return 'symlink'
  if (stats.isFIFO()) return 'fifo'
  if (stats.isCharacterDevice()) return 'char'
  if (stats.isBlockDevice()) return 'block'
  throw new EdgestarError(CONVERT_ERRORS.ENTRY_UNSUPPORTED, `"${name}" has an unknown file type`)
}

// Linux dev_t layout (glibc gnu_dev_major/minor): 12 bits of major, 20 of minor, split.
function deviceMajor(rdev: number): number {
  return Number(((BigInt(rdev) >> 8n) & 0xfffn) | ((BigInt(rdev) >> 32n) & ~0xfffn))
}

function deviceMinor(rdev: number): number {
  return Number((BigInt(rdev) & 0xffn) | ((BigInt(rdev) >> 12n) & ~0xffn))
}

function fileReader(path: string, sizeBytes: number, name: string) {
  return async function* readContent(
    pieceBytes: number,
    alloc?: (sizeBytes: number) => Buffer,
  ): AsyncIterable<Buffer> {
    const handle = await open(path, 'r').catch((cause: unknown) => {
      throw inputError(path, 'open', cause)
    })
    try {
      for (let done = 0; done < sizeBytes; ) {
        const want = Math.min(pieceBytes, sizeBytes - done)
        const piece = alloc?.(want) ?? Buffer.allocUnsafe(want)
        const { bytesRead } = await handle.read(piece, 0, want, done)
        if (bytesRead !== want) throw changed(name, sizeBytes)
        done += want
        yield piece
      }
      const extra = await handle.read(Buffer.alloc(1), 0, 1, sizeBytes)
      if (extra.bytesRead !== 0) throw changed(name, sizeBytes)
    } finally {
      await handle.close()
    }
  }
}

function changed(name: string, sizeBytes: number): EdgestarError {
  return new EdgestarError(
    CONVERT_ERRORS.FILE_CHANGED,
    `"${name}" changed size during conversion (was ${sizeBytes} bytes)`,
    { hint: 'convert a tree nothing is writing to (stop the writer, or copy it first)' },
  )
}

async function lstatOrThrow(path: string): Promise<Stats> {
  try {
    return await lstat(path)
  } catch (cause) {
    throw inputError(path, 'stat', cause)
  }
}

// Names sorted by bytes, like Go's filepath.WalkDir.
// TODO(convert): a file name that is not UTF-8 is refused from a directory (Node's
// string paths would mangle it); only a tar input carries such names through.
async function listSorted(path: string): Promise<string[]> {
  const raw = await readdir(path, { encoding: 'buffer' }).catch((cause: unknown) => {
    throw inputError(path, 'list the directory', cause)
  })
  raw.sort(Buffer.compare)
  return raw.map((bytes) => {
    try {
      return utf8.decode(bytes)
    } catch {
      throw new EdgestarError(
        CONVERT_ERRORS.ENTRY_UNSUPPORTED,
        `a file name in ${path} is not UTF-8 (${bytes.toString('hex')})`,
        { hint: 'rename it, or convert a tar of the tree instead (tar names pass through)' },
      )
    }
  })
}

/**
 * Reads every xattr under `root` with one `getfattr -R` (values hex-encoded, names of
 * files octal-escaped by getfattr). Returns absolute path → name → value. Without
 * getfattr the conversion goes on without xattrs and says so through `warn`.
 */
async function readTreeXattrs(
  root: string,
  prefixes: string[] | undefined,
  warn: (message: string) => void,
): Promise<Map<string, Map<string, Buffer>>> {
  const args = ['--absolute-names', '-h', '-R', '-d', '-m', '-', '-e', 'hex', root]
  const output = await new Promise<Buffer | undefined>((resolve) => {
    execFile(
      'getfattr',
      args,
      { encoding: 'buffer', maxBuffer: 1 << 30 },
      (err, stdout, stderr) => {
        if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
          warn('xattrs not read: getfattr is missing (install the Debian package "attr")')
          return resolve(undefined)
        }
        if (err && stderr.length > 0) warn(`getfattr reported: ${stderr.toString().trim()}`)
        resolve(stdout)
      },
    )
  })
  return output === undefined ? new Map() : parseGetfattr(output, prefixes)
}

function parseGetfattr(
  output: Buffer,
  prefixes: string[] | undefined,
): Map<string, Map<string, Buffer>> {
  const result = new Map<string, Map<string, Buffer>>()
  let current: Map<string, Buffer> | undefined
  for (const line of output.toString('latin1').split('\n')) {
    if (line.startsWith('# file: ')) {
      const path = unescapeOctal(line.slice('# file: '.length)).replace(/\/+$/, '')
      current = new Map()
      result.set(path, current)
      continue
    }
    const equals = line.indexOf('=')
    if (current === undefined || equals <= 0) continue
    const key = Buffer.from(unescapeOctal(line.slice(0, equals)), 'latin1').toString('utf8')
    if (!isKept(key, prefixes)) continue
    const hex = line.slice(equals + 1)
    current.set(key, Buffer.from(hex.startsWith('0x') ? hex.slice(2) : '', 'hex'))
  }
  for (const [path, attrs] of result) if (attrs.size === 0) result.delete(path)
  return new Map([...result].map(([path, attrs]) => [latin1ToUtf8(path), attrs]))
}

function isKept(key: string, prefixes: string[] | undefined): boolean {
  if (prefixes === undefined) return !DEFAULT_SKIPPED_XATTRS.includes(key)
  return prefixes.some((prefix) => key.startsWith(prefix))
}

// getfattr writes bytes outside printable ASCII, '\' and '=' as \ooo (attr's quote()).
function unescapeOctal(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_m, octal: string) =>
    String.fromCharCode(Number.parseInt(octal, 8)),
  )
}

function latin1ToUtf8(text: string): string {
  return Buffer.from(text, 'latin1').toString('utf8')
}
