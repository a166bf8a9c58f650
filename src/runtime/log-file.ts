import { type FileHandle, open, readFile, rename, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import type { LogLimits } from './types.js'

const CURRENT = 'container.log'

/**
 * A container's output as size-limited files: `container.log` grows to
 * `maxFileBytes`, then shifts to `container.log.1` (and .1 to .2 ...), keeping at most
 * `maxFiles` files. Writes are queued so they land in order; a failed write is
 * dropped rather than stalling the container.
 */
export class RotatingLog {
  readonly dir: string
  private readonly limits: LogLimits
  private handle: FileHandle | undefined
  private sizeBytes = 0
  private queue: Promise<void> = Promise.resolve()

  constructor(dir: string, limits: LogLimits) {
    this.dir = dir
    this.limits = limits
  }

  /** Appends bytes; returns when they are written (callers need not wait). */
  write(chunk: Buffer | string): Promise<void> {
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    this.queue = this.queue.then(() => this.append(data)).catch(() => undefined)
    return this.queue
  }

  /** Waits for queued writes and closes the current file. */
  async close(): Promise<void> {
    await this.queue
    await this.handle?.close()
    this.handle = undefined
  }

  private async append(data: Buffer): Promise<void> {
    const handle = await this.current()
    if (this.sizeBytes > 0 && this.sizeBytes + data.length > this.limits.maxFileBytes) {
      await this.rotate()
      return this.append(data)
    }
    await handle.write(data)
    this.sizeBytes += data.length
  }

  private async current(): Promise<FileHandle> {
    if (this.handle !== undefined) return this.handle
    const file = path.join(this.dir, CURRENT)
    this.handle = await open(file, 'a')
    this.sizeBytes = (await this.handle.stat()).size
    return this.handle
  }

  private async rotate(): Promise<void> {
    await this.handle?.close()
    this.handle = undefined
    const files = logFileNames(this.limits.maxFiles)
    await rm(path.join(this.dir, files[files.length - 1] as string), { force: true })
    for (let i = files.length - 2; i >= 0; i--) {
      const from = path.join(this.dir, files[i] as string)
      await rename(from, path.join(this.dir, files[i + 1] as string)).catch(() => undefined)
    }
  }
}

/** Log file names, newest first: container.log, container.log.1, ... */
export function logFileNames(maxFiles: number): string[] {
  const names = [CURRENT]
  for (let i = 1; i < Math.max(1, maxFiles); i++) names.push(`${CURRENT}.${i}`)
  return names
}

/** Everything kept in a container's log files, oldest first. */
export async function readLogs(dir: string, maxFiles: number): Promise<Buffer> {
  return (await readLogsForFollow(dir, maxFiles)).data
}

/**
 * Like `readLogs`, with how many bytes of the current file it holds: the offset from
 * which a follower reads on, so no output is lost or repeated in between.
 */
export async function readLogsForFollow(
  dir: string,
  maxFiles: number,
): Promise<{ data: Buffer; currentBytes: number }> {
  const parts: Buffer[] = []
  let currentBytes = 0
  for (const name of logFileNames(maxFiles).reverse()) {
    const data = await readFile(path.join(dir, name)).catch(() => undefined)
    if (data !== undefined) parts.push(data)
    if (name === CURRENT) currentBytes = data?.length ?? 0
  }
  return { data: Buffer.concat(parts), currentBytes }
}

/** Size of the current log file (0 when missing), for `logs -f` to follow. */
export async function currentLogSize(dir: string): Promise<number> {
  const info = await stat(path.join(dir, CURRENT)).catch(() => undefined)
  return info?.size ?? 0
}

/** Bytes of the current log file from `offset` on. */
export async function readCurrentLogFrom(dir: string, offset: number): Promise<Buffer> {
  const handle = await open(path.join(dir, CURRENT), 'r').catch(() => undefined)
  if (handle === undefined) return Buffer.alloc(0)
  try {
    const size = (await handle.stat()).size
    if (size <= offset) return Buffer.alloc(0)
    const buffer = Buffer.alloc(size - offset)
    await handle.read(buffer, 0, buffer.length, offset)
    return buffer
  } finally {
    await handle.close()
  }
}
