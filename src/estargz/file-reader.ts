import type { FileHandle } from 'node:fs/promises'
import { notImplemented } from './not-implemented.js'
import type { RandomAccessReader } from './types.js'

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

  /** Opens `path` read-only. Throws READ_FAILED when it cannot be opened. */
  static async open(_path: string): Promise<FileReader> {
    return notImplemented('FileReader.open')
  }

  /** Reads `length` bytes at `offset` (fewer only at the end of the file). */
  async readAt(_offset: number, _length: number): Promise<Buffer> {
    return notImplemented('FileReader.readAt')
  }

  /** Closes the file. */
  async close(): Promise<void> {
    await this.handle.close()
  }
}
