import { EdgestarError } from '../errors.js'
import type { BlobReader } from '../registry/index.js'
import type { TokenBucket } from './token-bucket.js'

/** Waits `ms` milliseconds; tests pass one driven by a fake clock. */
export type Sleep = (ms: number) => Promise<void>

/** How `readPaced` is paced and what it reports. */
export interface PacedReadOptions {
  bucket: TokenBucket
  /** The largest piece, asked again before each piece (the cap may change meanwhile). */
  pieceBytes: () => number
  sleep: Sleep
  /** True once the fetch must stop: the read then fails with EDGESTAR_FETCH_CLOSED. */
  isClosed: () => boolean
  /** Called with each piece's size as it arrives: what the link carried, when it did. */
  onBytes: (bytes: number) => void
}

/** Longest single wait, so a bandwidth change at run time applies to a read under way. */
const MAX_WAIT_MS = 1000

/**
 * Reads `length` bytes at `offset` of a blob in pieces no larger than the bucket allows,
 * each paid for before it is asked, so a cap holds over short windows too: one 4 MiB
 * chunk fetched at once would be eight seconds of a 512 KiB/s budget in one gulp. The
 * caller has paid for the first piece; a short answer returns what came. Bytes are
 * reported per piece as they arrive: a counter bumped only when a whole unit is in shows
 * a rate well under the cap while a few large units are being paced side by side.
 */
export async function readPaced(
  reader: Pick<BlobReader, 'readRanges'>,
  offset: number,
  length: number,
  options: PacedReadOptions,
): Promise<Buffer> {
  const target = Buffer.allocUnsafe(length)
  for (let done = 0; done < length; ) {
    const piece = Math.min(options.pieceBytes(), length - done)
    if (done > 0) await takeTokens(piece, options)
    const [part] = await reader.readRanges([{ offset: offset + done, length: piece }])
    const got = part === undefined ? 0 : part.copy(target, done, 0, piece)
    options.onBytes(got)
    // A short answer ends the read; the caller's size check then rejects the unit.
    if (got !== piece) return target.subarray(0, done + got)
    done += piece
  }
  return target
}

/** Waits until the bucket grants `bytes`. */
export async function takeTokens(bytes: number, options: PacedReadOptions): Promise<void> {
  for (;;) {
    if (options.isClosed())
      throw new EdgestarError('EDGESTAR_FETCH_CLOSED', 'the fetch scheduler was closed')
    const waitMs = options.bucket.tryTake(bytes)
    if (waitMs === 0) return
    await options.sleep(Math.min(waitMs, MAX_WAIT_MS))
  }
}
