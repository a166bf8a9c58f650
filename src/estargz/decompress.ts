import { promisify } from 'node:util'
import { gunzip, gunzipSync } from 'node:zlib'
import zstdBinding from 'zstd-napi/binding.js'
import type { Compression } from './types.js'

/** Why a bounded decompression stopped short of a result. */
export type DecompressFailure = 'exceeded' | 'corrupt'

/** The result of decompressBounded: the bytes, or why there are none. */
export type BoundedResult = { ok: true; data: Buffer } | { ok: false; reason: DecompressFailure }

const ZSTD_OUT_STEP_BYTES = 1 << 20

/**
 * Decompresses a whole multi-member gzip or multi-frame zstd buffer (zstd skippable
 * frames are skipped), producing at most `limitBytes`. Never throws for bad input:
 * `exceeded` when the output would pass the limit, `corrupt` when the input does not
 * decompress or ends mid-stream.
 */
export function decompressBounded(
  compression: Compression,
  input: Buffer,
  limitBytes: number,
): BoundedResult {
  return compression === 'gzip'
    ? gunzipBounded(input, limitBytes)
    : unzstdBounded(input, limitBytes)
}

const gunzipAsync = promisify(gunzip)

/**
 * decompressBounded without blocking the event loop for gzip (zlib runs on the libuv
 * thread pool). zstd still decodes on the calling thread: zstd-napi has no async
 * one-shot API.
 */
export async function decompressBoundedAsync(
  compression: Compression,
  input: Buffer,
  limitBytes: number,
): Promise<BoundedResult> {
  if (compression === 'zstd') return unzstdBounded(input, limitBytes)
  try {
    return {
      ok: true,
      data: await gunzipAsync(input, { maxOutputLength: Math.max(1, limitBytes) }),
    }
  } catch (err) {
    const isTooLarge = err instanceof RangeError || hasCode(err, 'ERR_BUFFER_TOO_LARGE')
    return { ok: false, reason: isTooLarge ? 'exceeded' : 'corrupt' }
  }
}

function gunzipBounded(input: Buffer, limitBytes: number): BoundedResult {
  try {
    return { ok: true, data: gunzipSync(input, { maxOutputLength: Math.max(1, limitBytes) }) }
  } catch (err) {
    const isTooLarge = err instanceof RangeError || hasCode(err, 'ERR_BUFFER_TOO_LARGE')
    return { ok: false, reason: isTooLarge ? 'exceeded' : 'corrupt' }
  }
}

function unzstdBounded(input: Buffer, limitBytes: number): BoundedResult {
  const dctx = new zstdBinding.DCtx()
  const pieces: Buffer[] = []
  let total = 0
  let rest = input
  let isFrameOpen = false
  try {
    while (rest.length > 0 || isFrameOpen) {
      const room = Math.min(ZSTD_OUT_STEP_BYTES, limitBytes + 1 - total)
      const out = Buffer.allocUnsafe(Math.max(1, room))
      const [hint, produced, consumed] = dctx.decompressStream(out, rest)
      pieces.push(out.subarray(0, produced))
      total += produced
      rest = rest.subarray(consumed)
      isFrameOpen = hint !== 0
      if (total > limitBytes) return { ok: false, reason: 'exceeded' }
      // No progress with input left, or input gone mid-frame: the stream is cut short.
      if (produced === 0 && consumed === 0) return { ok: false, reason: 'corrupt' }
    }
  } catch {
    return { ok: false, reason: 'corrupt' }
  }
  return { ok: true, data: Buffer.concat(pieces, total) }
}

function hasCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code
}
