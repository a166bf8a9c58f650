/**
 * Opens a converter input by what it is: a directory is walked; a tar is indexed in
 * place; a gzip or zstd tar (a plain layer, or an earlier eStargz/zstd:chunked blob) is
 * first decompressed to a temporary file, as the reference converter does, so that
 * entries can be read by offset in any order (prioritized files go first).
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, open, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createGunzip } from 'node:zlib'
import { DecompressStream } from 'zstd-napi'
import { EdgestarError } from '../errors.js'
import { CONVERT_ERRORS, inputError } from './convert-errors.js'
import type { EntrySource } from './tar-source.js'
import { type WalkDirectoryOptions, walkDirectory } from './tar-source-dir.js'
import { indexTarFile } from './tar-source-tar.js'

/** Options of `openEntrySource`. */
export interface OpenSourceOptions extends WalkDirectoryOptions {
  /** Where a compressed input is decompressed to; default the OS temp directory. */
  tempDir?: string
}

/** The kind of input detected. */
export type InputKind = 'directory' | 'tar' | 'tar+gzip' | 'tar+zstd'

/**
 * Opens `inputPath` as an EntrySource. Throws INPUT_UNREADABLE, INPUT_UNSUPPORTED
 * (not a directory or a tar), TAR_CORRUPT. The caller must `close()` the source.
 */
export async function openEntrySource(
  inputPath: string,
  options: OpenSourceOptions = {},
): Promise<EntrySource & { kind: InputKind }> {
  const stats = await stat(inputPath).catch((cause: unknown) => {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT')
      throw new EdgestarError(
        CONVERT_ERRORS.INPUT_UNREADABLE,
        `no such file or directory: ${inputPath}`,
        { hint: 'give an existing directory, tar, tar.gz or tar.zst file', cause },
      )
    throw inputError(inputPath, 'read input', cause)
  })
  if (stats.isDirectory())
    return { ...(await walkDirectory(inputPath, options)), kind: 'directory' }

  const kind = await sniffFile(inputPath)
  if (kind === 'tar')
    return { ...(await indexTarFile(await openInput(inputPath), inputPath)), kind }
  return { ...(await openDecompressed(inputPath, kind, options.tempDir)), kind }
}

async function openDecompressed(
  inputPath: string,
  kind: 'tar+gzip' | 'tar+zstd',
  tempDir: string | undefined,
): Promise<EntrySource> {
  const dir = await mkdtemp(join(tempDir ?? tmpdir(), 'edgestar-convert-'))
  const plainPath = join(dir, 'input.tar')
  try {
    const decompress = kind === 'tar+gzip' ? createGunzip() : new DecompressStream()
    await pipeline(createReadStream(inputPath), decompress, createWriteStream(plainPath))
    const source = await indexTarFile(await open(plainPath), inputPath)
    return {
      ...source,
      close: async () => {
        await source.close()
        await rm(dir, { recursive: true, force: true })
      },
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    if (err instanceof EdgestarError) throw err
    throw new EdgestarError(
      CONVERT_ERRORS.TAR_CORRUPT,
      `input ${inputPath} does not decompress as ${kind === 'tar+gzip' ? 'gzip' : 'zstd'}`,
      { hint: 'the file is truncated or corrupt; fetch or produce it again', cause: err },
    )
  }
}

// Magic numbers: gzip 1f 8b; zstd frame 28 b5 2f fd; a tar has "ustar" at 257 or at
// least a header block whose checksum adds up.
async function sniffFile(inputPath: string): Promise<'tar' | 'tar+gzip' | 'tar+zstd'> {
  const head = Buffer.alloc(512)
  const handle = await openInput(inputPath)
  const { bytesRead } = await handle.read(head, 0, 512, 0).finally(() => handle.close())
  if (bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'tar+gzip'
  if (bytesRead >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'tar+zstd'
  if (bytesRead === 0 || (bytesRead === 512 && looksLikeTar(head))) return 'tar'
  throw new EdgestarError(
    CONVERT_ERRORS.INPUT_UNSUPPORTED,
    `input ${inputPath} is neither a directory nor a tar (plain, gzip or zstd)`,
    { hint: 'give a directory, or a layer tar as .tar, .tar.gz or .tar.zst' },
  )
}

function openInput(inputPath: string): ReturnType<typeof open> {
  return open(inputPath).catch((cause: unknown) => {
    throw inputError(inputPath, 'open', cause)
  })
}

function looksLikeTar(block: Buffer): boolean {
  if (block.toString('latin1', 257, 262) === 'ustar') return true
  if (block.every((b) => b === 0)) return true
  const stored = Number.parseInt(block.toString('latin1', 148, 156).replace(/[\0 ]/g, ''), 8)
  let sum = 0
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0)
  return stored === sum
}
