import { constants } from 'node:fs'
import { type FileHandle, open } from 'node:fs/promises'
import { EdgestarError } from '../errors.js'
import { ESTARGZ_ERRORS } from './error-codes.js'
import type { RandomAccessReader } from './types.js'

const OPEN_FAILURES: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  ENOTDIR: 'a parent is not a directory',
  ELOOP: 'too many symlinks',
  EMFILE: 'too many open files',
}

/** A RandomAccessReader over a local file. Close it when done. */
export class FileReader implements RandomAccessReader {
  readonly sizeBytes: number
  readonly path: string
  private readonly handle: FileHandle

  private constructor(path: string, handle: FileHandle, sizeBytes: number) {
    this.path = path
    this.handle = handle
    this.sizeBytes = sizeBytes
  }

  /** Opens `path` read-only. Throws READ_FAILED when it cannot be opened or is no file. */
  static async open(path: string): Promise<FileReader> {
    let handle: FileHandle
    try {
      // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever; it changes
      // nothing for a regular file.
      handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK)
    } catch (cause) {
      const err = cause as NodeJS.ErrnoException
      const reason = OPEN_FAILURES[err.code ?? ''] ?? err.message
      throw new EdgestarError(ESTARGZ_ERRORS.READ_FAILED, `cannot open blob ${path}: ${reason}`, {
        hint: 'check that the path exists and is readable',
        cause,
      })
    }

    const stat = await handle.stat()
    if (!stat.isFile()) {
      await handle.close()
      throw new EdgestarError(ESTARGZ_ERRORS.READ_FAILED, `blob ${path} is not a regular file`, {
        hint: 'pass the path of a layer blob file',
      })
    }
    return new FileReader(path, handle, stat.size)
  }

  /** Reads `length` bytes at `offset` (fewer only at the end of the file). */
  async readAt(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(this.sizeBytes, offset + Math.max(0, length))
    if (offset < 0 || offset >= end) return Buffer.alloc(0)

    const buf = Buffer.allocUnsafe(end - offset)
    let filled = 0
    while (filled < buf.length) {
      const { bytesRead } = await this.handle.read(
        buf,
        filled,
        buf.length - filled,
        offset + filled,
      )
      if (bytesRead === 0) break
      filled += bytesRead
    }
    return filled === buf.length ? buf : buf.subarray(0, filled)
  }

  /** Closes the file. */
  async close(): Promise<void> {
    await this.handle.close()
  }
}
