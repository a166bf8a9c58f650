import { execFile } from 'node:child_process'
import { constants } from 'node:fs'
import {
  chmod,
  type FileHandle,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  realpath,
  rm,
  stat,
  symlink,
  utimes,
} from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Command } from 'commander'
import { EdgestarError } from '../../errors.js'
import {
  assertDiffId,
  checkDigestOption,
  detectLayerFormat,
  ESTARGZ_ERRORS,
  FileReader,
  isFormatMetaEntry,
  type LayerIndex,
  type LayerTarEntry,
  openLayer,
  sha256Hasher,
  walkLayer,
} from '../../estargz/index.js'
import { printResult } from '../output.js'

const run = promisify(execFile)

/** Error codes of `edgestar extract` beyond the format layer's. */
export const EXTRACT_ERRORS = {
  /** An entry would be written through a symlink or non-directory inside DIR. */
  UNSAFE_PATH: 'EDGESTAR_EXTRACT_UNSAFE_PATH',
  /** Setting an extended attribute failed. */
  XATTR_FAILED: 'EDGESTAR_EXTRACT_XATTR_FAILED',
  /** Creating a device node or fifo failed. */
  SPECIAL_FAILED: 'EDGESTAR_EXTRACT_SPECIAL_FAILED',
  /** DIR is not a directory, or writing below it failed (no space, read-only, denied). */
  WRITE_FAILED: 'EDGESTAR_EXTRACT_WRITE_FAILED',
} as const

/** What an extraction wrote. */
export interface ExtractReport {
  format: string
  diffID: string
  entries: number
  files: number
  bytes: number
  /** Entries not written, with why (device nodes when not root). */
  skipped: { name: string; reason: string }[]
}

/** Options of extractLayer. */
export interface ExtractOptions {
  tocDigest?: string
  diffID?: string
}

/**
 * `edgestar extract BLOB DIR`: writes the layer's files into DIR (all entry types,
 * modes, owners when root, xattrs, hardlinks, symlinks as links, whiteout files as they
 * are in the layer), never writing outside DIR.
 */
export function register(program: Command): void {
  program
    .command('extract')
    .description("write a layer's files into a directory, never outside it")
    .addHelpText(
      'after',
      '\nAn entry below a symlink or a non-directory is refused (EDGESTAR_EXTRACT_UNSAFE_PATH).\n' +
        'Owners and device nodes are set only when run as root; xattrs need python3.',
    )
    .argument('<blob>', 'path of an eStargz, zstd:chunked or plain gzip/zstd layer blob')
    .argument('<dir>', 'directory to write into (created when missing)')
    .option('--toc-digest <digest>', 'expected TOC digest (sha256:...)')
    .option('--diff-id <digest>', 'expected diffID: sha256 of the decompressed layer')
    .option('--json', 'print {format, diffID, entries, files, bytes, skipped}')
    .action(async (blob: string, dir: string, options: ExtractCliOptions) => {
      const report = await extractLayer(blob, dir, {
        ...(options.tocDigest ? { tocDigest: options.tocDigest } : {}),
        ...(options.diffId ? { diffID: options.diffId } : {}),
      })
      printResult(options, report, () =>
        [
          `extracted ${report.entries} entries (${report.files} files, ${report.bytes} bytes) into ${dir}`,
          `diffID: ${report.diffID}`,
          ...report.skipped.map((s) => `skipped ${s.name}: ${s.reason}`),
        ].join('\n'),
      )
    })
}

interface ExtractCliOptions {
  json?: boolean
  tocDigest?: string
  diffId?: string
}

interface PendingMeta {
  path: string
  entry: LayerTarEntry
  /** xattr name → base64 value, set before modes. */
  xattrs?: Record<string, string>
}

/**
 * Extracts the layer in `blobPath` into `destDir`. With a TOC, names are validated by
 * openLayer first and every regular file is checked against its TOC digest as it is
 * written. A parent that is a symlink or not a directory is refused (UNSAFE_PATH), so
 * nothing lands outside `destDir`. Modes and times are applied last (directories after
 * their contents), owners only when running as root.
 * Throws the format layer's codes, UNSAFE_PATH, XATTR_FAILED, SPECIAL_FAILED and
 * WRITE_FAILED (DIR not a directory, no space, read-only; DIR then holds a partial tree).
 */
export async function extractLayer(
  blobPath: string,
  destDir: string,
  opts: ExtractOptions = {},
): Promise<ExtractReport> {
  if (opts.diffID) checkDigestOption(opts.diffID, 'diffID')
  const reader = await FileReader.open(blobPath)
  try {
    return await extractFrom(reader, destDir, opts)
  } catch (err) {
    throw asWriteError(err, destDir)
  } finally {
    await reader.close()
  }
}

// Reads the footer and TOC before touching DIR, so a bad blob leaves no directory behind.
async function extractFrom(
  reader: FileReader,
  destDir: string,
  opts: ExtractOptions,
): Promise<ExtractReport> {
  const format = await detectLayerFormat(reader)
  const isPlain = format === 'gzip' || format === 'zstd'
  if (isPlain && opts.tocDigest) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.NO_TOC,
      `a plain ${format} layer has no TOC to check against ${opts.tocDigest}`,
      { hint: 'drop --toc-digest for this layer, or check it with --diff-id' },
    )
  }
  const index = isPlain
    ? undefined
    : await openLayer(reader, opts.tocDigest ? { tocDigest: opts.tocDigest } : {})

  const existing = await stat(destDir).catch(() => undefined)
  if (existing && !existing.isDirectory()) {
    throw new EdgestarError(
      EXTRACT_ERRORS.WRITE_FAILED,
      `cannot extract into ${JSON.stringify(destDir)}: it is not a directory`,
      { hint: 'name a directory, or a path where one can be created' },
    )
  }
  await mkdir(destDir, { recursive: true })
  const writer = new TreeWriter(await realpath(destDir), index)
  const streamed = await walkLayer(reader, format, (entry, content) => writer.write(entry, content))
  await writer.finish()
  if (opts.diffID) assertDiffId(streamed.diffID, opts.diffID)
  return { format, diffID: streamed.diffID, ...writer.counts() }
}

// Node reads a negative number of seconds as "now"; a Date keeps times before 1970.
// Beyond what a Date holds, the time is clamped (filesystems clamp further).
function fileTime(entry: LayerTarEntry): Date {
  const limitMs = 8.64e15
  return new Date(Math.max(-limitMs, Math.min(limitMs, entry.mtimeSec * 1000)))
}

const HOLE_BLOCK_BYTES = 4096
const ZERO_BLOCK = Buffer.alloc(HOLE_BLOCK_BYTES)

// Writes `piece` at `position` of a new file, leaving all-zero blocks unwritten: they
// read back as zeros and take no disk, so a sparse file (a huge lastlog, a disk image)
// or a layer of compressed zeros does not fill the disk. The caller sets the final size.
async function writeSkippingZeros(
  handle: FileHandle,
  piece: Buffer,
  position: number,
): Promise<void> {
  let runStart = 0
  for (let at = 0; at < piece.length; at += HOLE_BLOCK_BYTES) {
    const end = Math.min(at + HOLE_BLOCK_BYTES, piece.length)
    if (ZERO_BLOCK.compare(piece, at, end, 0, end - at) !== 0) continue
    if (at > runStart) await writeAll(handle, piece.subarray(runStart, at), position + runStart)
    runStart = end
  }
  if (piece.length > runStart) {
    await writeAll(handle, piece.subarray(runStart), position + runStart)
  }
}

async function writeAll(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done)
    done += bytesWritten
  }
}

const ERRNO_TEXT: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'the filesystem is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a parent is not a directory',
  EEXIST: 'something is already there',
  ENAMETOOLONG: 'the name is too long for the filesystem',
}

// A filesystem error while writing is the machine's condition, not a bug: give it a code,
// the path it hit, and what to do.
function asWriteError(err: unknown, destDir: string): unknown {
  const errno = err as NodeJS.ErrnoException
  // Only system errors (ENOSPC, EROFS...) are the machine's condition; others are bugs.
  if (err instanceof EdgestarError || typeof errno?.errno !== 'number' || !errno.code) return err
  const where = shorten(errno.path ?? destDir)
  const why = ERRNO_TEXT[errno.code] ?? errno.message
  return new EdgestarError(
    EXTRACT_ERRORS.WRITE_FAILED,
    `cannot write ${JSON.stringify(where)}: ${why} (${errno.code})`,
    {
      hint: `${WRITE_HINTS[errno.code] ?? WRITE_HINTS.default}; ${destDir} may hold a partial tree`,
      cause: err,
    },
  )
}

const WRITE_HINTS: Record<string, string> = {
  ENOSPC: 'free space or extract onto a larger filesystem',
  EDQUOT: 'free space or extract onto a larger filesystem',
  ENAMETOOLONG: 'the layer holds a path longer than this system allows; use a shorter DIR',
  default: 'extract into a writable directory',
}

// A hostile layer can make paths thousands of characters long; the message keeps both ends.
function shorten(path: string): string {
  return path.length <= 200 ? path : `${path.slice(0, 120)}…${path.slice(-60)}`
}

class TreeWriter {
  private readonly isRoot = process.getuid?.() === 0
  // Modes, times and xattrs to apply last, by path, in write order. An entry that
  // replaces a path drops what is pending for it (and below it), so nothing is ever
  // applied through a symlink a later entry put there.
  private readonly metas = new Map<string, PendingMeta>()
  private readonly deferredLinks = new Map<string, PendingMeta>()
  private readonly skipped: { name: string; reason: string }[] = []
  // Directories already checked to be real directories below the root; cleared
  // whenever an entry replaces something, since a directory may become a symlink.
  private readonly checkedDirs = new Set<string>()
  private entries = 0
  private files = 0
  private bytes = 0

  // TOC entries the stream has not held yet; the reference writer may list the root
  // directory without a tar entry.
  private readonly unseen: Set<string>

  constructor(
    private readonly root: string,
    private readonly index: LayerIndex | undefined,
  ) {
    this.unseen = new Set(index?.byName.keys() ?? [])
    this.unseen.delete('')
  }

  // The TOC (checked against its digest) is what a lazy mount shows; the stream must
  // hold the same entries, or a verified TOC would vouch for files it never listed.
  private checkListed(entry: LayerTarEntry): void {
    if (!this.index) return
    const listed = this.index.byName.get(entry.name)
    if (listed && listed.type === entry.type) return
    throw new EdgestarError(
      ESTARGZ_ERRORS.TOC_INVALID,
      listed
        ? `${JSON.stringify(entry.name)} is a ${entry.type} in the tar stream but a ` +
            `${listed.type} in the TOC`
        : `tar stream holds ${JSON.stringify(entry.name)}, which the TOC does not list`,
      { hint: 'the blob was altered or built wrongly; do not use it' },
    )
  }

  counts(): Omit<ExtractReport, 'format' | 'diffID'> {
    return { entries: this.entries, files: this.files, bytes: this.bytes, skipped: this.skipped }
  }

  async write(entry: LayerTarEntry, content: AsyncIterable<Buffer>): Promise<void> {
    this.unseen.delete(entry.name)
    if (entry.name === '' || isFormatMetaEntry(entry.name)) return
    this.checkListed(entry)
    this.entries++
    const path = join(this.root, entry.name)
    await this.ensureParents(entry.name, true)
    this.metas.delete(path)
    this.deferredLinks.delete(path)
    await this.clearFor(path, entry)

    if (entry.type === 'hardlink' && !(await this.linkIfPresent(path, entry))) {
      this.deferredLinks.set(path, { path, entry })
      return
    }
    if (entry.type === 'reg') await this.writeFile(path, entry, content)
    else if (entry.type === 'dir') await mkdir(path, { recursive: true })
    else if (entry.type === 'symlink') await symlink(entry.linkName ?? '', path)
    else if (entry.type !== 'hardlink' && !(await this.makeSpecial(path, entry))) return

    if (entry.type === 'hardlink') return
    if (this.isRoot) await lchown(path, entry.uid, entry.gid)
    const xattrs = Object.entries(entry.xattrs)
    this.metas.set(path, {
      path,
      entry,
      ...(xattrs.length > 0
        ? { xattrs: Object.fromEntries(xattrs.map(([k, v]) => [k, v.toString('base64')])) }
        : {}),
    })
  }

  /** Deferred hardlinks, xattrs, then modes and times (deepest and latest first). */
  async finish(): Promise<void> {
    if (this.unseen.size > 0) {
      const first = [...this.unseen].slice(0, 3).map((n) => JSON.stringify(n))
      throw new EdgestarError(
        ESTARGZ_ERRORS.TOC_INVALID,
        `TOC lists ${this.unseen.size} entries missing from the tar stream (${first.join(', ')})`,
        { hint: 'the blob was altered or built wrongly; do not use it' },
      )
    }
    for (const { path, entry } of this.deferredLinks.values()) {
      await this.ensureParents(entry.name, true)
      if (!(await this.linkIfPresent(path, entry))) {
        throw new EdgestarError(
          ESTARGZ_ERRORS.HARDLINK_MISSING,
          `hardlink ${JSON.stringify(entry.name)} names missing ${JSON.stringify(entry.linkName)}`,
          {
            hint: 'the layer is malformed; rebuild it',
          },
        )
      }
    }
    await this.applyXattrs()

    for (const { path, entry } of [...this.metas.values()].reverse()) {
      // Belt and braces: chmod and utimes follow symlinks; what is pending is never one.
      const isLink = (await lstat(path)).isSymbolicLink()
      if (isLink !== (entry.type === 'symlink')) continue
      if (entry.type === 'symlink') {
        await lutimes(path, fileTime(entry), fileTime(entry))
        continue
      }
      await chmod(path, entry.mode & 0o7777)
      await utimes(path, fileTime(entry), fileTime(entry))
    }
  }

  // Walks every parent of `name` below the root: creates missing ones (or, when not
  // creating, reports them missing), refuses a symlink or a non-directory, so no write
  // can be redirected outside the root.
  private async ensureParents(name: string, create: boolean): Promise<boolean> {
    const parts = name.split('/').slice(0, -1)
    let current = this.root
    for (const part of parts) {
      current = join(current, part)
      if (this.checkedDirs.has(current)) continue
      const stat = await lstat(current).catch(() => undefined)
      if (stat?.isDirectory()) {
        this.checkedDirs.add(current)
        continue
      }
      if (!stat && !create) return false
      if (!stat) {
        await mkdir(current, { mode: 0o755 })
        this.checkedDirs.add(current)
        continue
      }
      const what = stat.isSymbolicLink() ? 'symlink' : 'non-directory'
      throw new EdgestarError(
        EXTRACT_ERRORS.UNSAFE_PATH,
        `${JSON.stringify(name)} would be written through ${what} ${JSON.stringify(current)}`,
        {
          hint:
            'a layer may not write through a symlink (it could reach outside DIR); do not use ' +
            'this layer, or, if DIR already held that symlink, extract into an empty directory',
        },
      )
    }
    return true
  }

  // Tar semantics: a new entry replaces what is at its path, except that a directory
  // over a directory keeps the existing one (and its contents).
  private async clearFor(path: string, entry: LayerTarEntry): Promise<void> {
    const stat = await lstat(path).catch(() => undefined)
    if (!stat) return
    if (stat.isDirectory() && entry.type === 'dir') return
    this.checkedDirs.clear()
    if (stat.isDirectory()) this.forgetBelow(path)
    await rm(path, { recursive: true, force: true })
  }

  private forgetBelow(dir: string): void {
    const prefix = `${dir}/`
    for (const pending of [this.metas, this.deferredLinks]) {
      for (const path of pending.keys()) if (path.startsWith(prefix)) pending.delete(path)
    }
  }

  private async linkIfPresent(path: string, entry: LayerTarEntry): Promise<boolean> {
    const targetName = entry.linkName ?? ''
    if (!(await this.ensureParents(targetName, false))) return false
    const target = join(this.root, targetName)
    const stat = await lstat(target).catch(() => undefined)
    if (!stat) return false
    if (stat.isDirectory()) {
      throw new EdgestarError(
        ESTARGZ_ERRORS.HARDLINK_TO_DIR,
        `hardlink ${JSON.stringify(entry.name)} names directory ${JSON.stringify(targetName)}`,
        {
          hint: 'the layer is malformed; rebuild it',
        },
      )
    }
    // link(2) does not follow a symlink target, so a hardlink to a symlink stays one.
    await link(target, path)
    return true
  }

  private async writeFile(
    path: string,
    entry: LayerTarEntry,
    content: AsyncIterable<Buffer>,
  ): Promise<void> {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW
    const handle = await open(path, flags, 0o600)
    const hasher = sha256Hasher()
    let written = 0
    // Closed on every path: a write error (no space) must not leave the handle to the
    // garbage collector, which would crash the process.
    try {
      for await (const piece of content) {
        hasher.update(piece)
        await writeSkippingZeros(handle, piece, written)
        written += piece.length
      }
      await handle.truncate(written)
    } finally {
      await handle.close()
    }
    this.files++
    this.bytes += written

    const expected = this.index?.byName.get(entry.name)?.digest
    const actual = hasher.digest()
    if (expected && expected !== actual) {
      await rm(path, { force: true })
      throw new EdgestarError(
        ESTARGZ_ERRORS.FILE_DIGEST_MISMATCH,
        `file ${JSON.stringify(entry.name)} has digest ${actual}, TOC says ${expected}`,
        {
          hint: 'the blob was altered or damaged; fetch it again',
        },
      )
    }
  }

  private async makeSpecial(path: string, entry: LayerTarEntry): Promise<boolean> {
    if (entry.type !== 'fifo' && !this.isRoot) {
      this.skipped.push({ name: entry.name, reason: `${entry.type} device needs root` })
      this.entries--
      return false
    }
    const args =
      entry.type === 'fifo'
        ? ['mkfifo', ['-m', '600', path]]
        : [
            'mknod',
            [
              '-m',
              '600',
              path,
              entry.type === 'char' ? 'c' : 'b',
              `${entry.devMajor}`,
              `${entry.devMinor}`,
            ],
          ]
    try {
      await run(args[0] as string, args[1] as string[])
    } catch (cause) {
      throw new EdgestarError(
        EXTRACT_ERRORS.SPECIAL_FAILED,
        `cannot create ${entry.type} ${JSON.stringify(entry.name)}`,
        {
          hint: 'extract as root on a filesystem that allows device nodes',
          cause,
        },
      )
    }
    return true
  }

  // Node has no xattr API; python3 (installed by scripts/setup.sh) sets them in one run,
  // without following symlinks.
  private async applyXattrs(): Promise<void> {
    const jobs = [...this.metas.values()].filter((m) => m.xattrs)
    if (jobs.length === 0) return
    const script = [
      'import base64, json, os, sys',
      'for job in json.load(sys.stdin):',
      '    for name, value in job["xattrs"].items():',
      '        try:',
      '            os.setxattr(job["path"], name, base64.b64decode(value), follow_symlinks=False)',
      '        except OSError as err:',
      '            sys.exit(f"{job[\'path\']}: {name}: {err.strerror}")',
    ].join('\n')
    const child = execFile('python3', ['-c', script])
    const done = new Promise<void>((resolve, reject) => {
      let stderr = ''
      child.stderr?.on('data', (d) => (stderr += d))
      child.on('error', reject)
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(stderr.trim()))))
    })
    child.stdin?.end(JSON.stringify(jobs.map(({ path, xattrs }) => ({ path, xattrs }))))
    try {
      await done
    } catch (cause) {
      throw new EdgestarError(
        EXTRACT_ERRORS.XATTR_FAILED,
        `cannot set extended attributes: ${(cause as Error).message}`,
        {
          hint: 'extract onto a filesystem with user xattrs (ext4, xfs, tmpfs with user_xattr)',
          cause,
        },
      )
    }
  }
}
