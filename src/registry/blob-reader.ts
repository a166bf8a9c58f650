import { EdgestarError, redactUrl } from '../errors.js'
import type { RandomAccessReader } from '../estargz/types.js'
import { forEachLimited } from '../limit.js'
import { moduleLogger } from '../log.js'
import type { BlobLocation, SendOptions } from './blob-location.js'
import { parseContentRange, readMultipartRanges } from './multipart.js'
import { responseError } from './response-error.js'
import {
  headerValue,
  isTransientNetworkError,
  type RegistryTransport,
  type TransportResponse,
} from './transport.js'
import type { ByteRange, RangeReadOptions } from './types.js'

const log = moduleLogger('registry')

/**
 * Random access to one registry blob by HTTP Range. Reads are retried, resumed and
 * checked for length; adjacent ranges passed together to `readRanges` go out as one
 * request up to the client's coalescing limit. Throws EDGESTAR_REGISTRY_* errors.
 */
export interface BlobReader extends RandomAccessReader {
  readonly digest: string
  /**
   * Reads several ranges; result i holds the bytes of ranges[i] (short only at blob end).
   * `options` report progress and retries as they happen, and may bound each request.
   */
  readRanges(ranges: readonly ByteRange[], options?: RangeReadOptions): Promise<Buffer[]>
}

/** Tuning of a reader, from the client options. */
export interface BlobReaderTuning {
  maxCoalesceBytes: number
  maxCoalesceGapBytes: number
  maxRangesPerRequest: number
  /** Origins seen refusing multi-range requests; shared by a client's readers. */
  noMultiRange: Set<string>
}

/** A contiguous span of the blob fetched in one go, and the caller ranges inside it. */
interface Span {
  start: number
  end: number
  members: { index: number; offset: number; length: number }[]
}

/** A body that is not the blob (an HTML page, the wrong length) is retried, then reported. */
class NotTheBlob extends Error {}

/**
 * The HTTP implementation of BlobReader. A read tracks the next byte it needs and,
 * when a body drops, stalls or comes up short, asks again from there. A registry or
 * CDN that ignores Range (200 with the whole blob) is read by skipping to the offset.
 */
export class HttpBlobReader implements BlobReader {
  readonly sizeBytes: number
  readonly digest: string

  constructor(
    private readonly transport: RegistryTransport,
    private readonly location: BlobLocation,
    sizeBytes: number,
    private readonly tuning: BlobReaderTuning,
  ) {
    this.sizeBytes = sizeBytes
    this.digest = location.digest
  }

  async readAt(offset: number, length: number): Promise<Buffer> {
    const [buf] = await this.readRanges([{ offset, length }])
    return buf as Buffer
  }

  async readRanges(
    ranges: readonly ByteRange[],
    options: RangeReadOptions = {},
  ): Promise<Buffer[]> {
    const results: Buffer[] = ranges.map(() => Buffer.alloc(0))
    const spans = coalesce(
      this.clamp(ranges),
      this.tuning.maxCoalesceBytes,
      this.tuning.maxCoalesceGapBytes,
    )
    const fetched = await this.fetchSpans(spans, options)

    spans.forEach((span, i) => {
      const data = fetched[i] as Buffer
      for (const m of span.members)
        results[m.index] = data.subarray(m.offset - span.start, m.offset - span.start + m.length)
    })
    return results
  }

  private clamp(ranges: readonly ByteRange[]): { index: number; offset: number; length: number }[] {
    return ranges.map((r, index) => {
      if (
        !Number.isSafeInteger(r.offset) ||
        !Number.isSafeInteger(r.length) ||
        r.offset < 0 ||
        r.length < 0
      )
        throw new RangeError(`invalid range ${r.offset}+${r.length} of blob ${this.digest}`)
      const offset = Math.min(r.offset, this.sizeBytes)
      return { index, offset, length: Math.min(r.length, this.sizeBytes - offset) }
    })
  }

  private async fetchSpans(spans: Span[], options: RangeReadOptions): Promise<Buffer[]> {
    const out: (Buffer | undefined)[] = spans.map((s) =>
      s.end === s.start ? Buffer.alloc(0) : undefined,
    )
    const pending = spans.map((s, i) => ({ s, i })).filter(({ i }) => out[i] === undefined)

    if (this.tuning.maxRangesPerRequest > 1 && pending.length > 1) {
      for (
        let i = 0;
        i < pending.length && !this.multiRangeRefused();
        i += this.tuning.maxRangesPerRequest
      ) {
        const batch = pending.slice(i, i + this.tuning.maxRangesPerRequest)
        const got = await this.tryMultiRange(
          batch.map((b) => b.s),
          options,
        )
        batch.forEach((b, j) => {
          if (got[j]) out[b.i] = got[j]
        })
      }
    }
    // Whatever multi-range did not deliver goes one span per request, a few at a time.
    const rest = pending.filter(({ i }) => out[i] === undefined)
    await forEachLimited(rest, 4, async ({ s, i }) => {
      out[i] = await this.fetchSpan(s.start, s.end, options)
    })
    return out as Buffer[]
  }

  private multiRangeRefused(): boolean {
    return this.tuning.noMultiRange.has(new URL(this.location.blobUrl).origin)
  }

  /** One request for several spans; a span the answer lacks stays undefined. */
  private async tryMultiRange(
    spans: Span[],
    options: RangeReadOptions,
  ): Promise<(Buffer | undefined)[]> {
    const spec = spans.map((s) => `${s.start}-${s.end - 1}`).join(',')
    let res: TransportResponse
    try {
      res = await this.location.send(
        'GET',
        { range: `bytes=${spec}`, 'accept-encoding': 'identity' },
        sendOptions(options),
      )
    } catch (err) {
      if (!isTransientNetworkError(err)) throw err
      return spans.map(() => undefined)
    }

    const contentType = headerValue(res.headers, 'content-type') ?? ''
    if (res.status === 206 && contentType.startsWith('multipart/byteranges')) {
      const parts = await readMultipartRanges(
        this.transport,
        res,
        spans,
        this.sizeBytes,
        options.onBytes,
      )
      if (parts) return parts
    }
    this.transport.drop(res)
    // Only these answers say "no multi-range here"; a 5xx or 404 is left to single ranges.
    if (![200, 206, 400, 416].includes(res.status)) return spans.map(() => undefined)
    this.tuning.noMultiRange.add(new URL(this.location.blobUrl).origin)
    log.warn(
      { digest: this.digest, status: res.status, url: redactUrl(res.url) },
      'multi-range refused, falling back to single ranges',
    )
    return spans.map(() => undefined)
  }

  /** Fetches [start, end) completely, resuming and retrying until done or out of attempts. */
  async fetchSpan(start: number, end: number, options: RangeReadOptions = {}): Promise<Buffer> {
    const out = Buffer.allocUnsafe(end - start)
    const maxAttempts = options.patience?.maxAttempts ?? this.transport.retry.maxAttempts
    let pos = start
    let failures = 0

    while (pos < end) {
      options.signal?.throwIfAborted()
      let lastError: unknown
      try {
        const res = await this.location.send(
          'GET',
          { range: `bytes=${pos}-${end - 1}`, 'accept-encoding': 'identity' },
          sendOptions(options),
        )
        const copied = await this.copyResponse(res, out, { start, pos, end }, options.onBytes)
        pos += copied
        // Progress means the server is alive: ask for the rest at once, no backoff.
        if (copied > 0) {
          failures = 0
          continue
        }
        lastError = 'the response carried none of the wanted bytes'
      } catch (err) {
        if (!(err instanceof NotTheBlob) && !isTransientNetworkError(err)) throw err
        lastError = err
      }
      if (++failures >= maxAttempts) throw this.gaveUp(pos, end, lastError, failures)
      options.onRetry?.(lastError)
      await this.transport.backoff(
        this.location.blobUrl,
        failures,
        undefined,
        lastError,
        options.signal,
      )
    }
    return out
  }

  /**
   * Copies the part of a response body that belongs in `out` (which holds [start, end))
   * from absolute offset `pos`. Returns the bytes copied; a body error after some bytes
   * still counts them (the caller resumes). Throws NotTheBlob for a body that is not it.
   */
  private async copyResponse(
    res: TransportResponse,
    out: Buffer,
    { start, pos, end }: { start: number; pos: number; end: number },
    onBytes: ((bytes: number) => void) | undefined,
  ): Promise<number> {
    let skip = 0
    if (res.status === 206) {
      // A range that starts earlier (some CDNs align starts) is fine: skip to `pos`.
      const header = headerValue(res.headers, 'content-range')
      const range = parseContentRange(header)
      const covers =
        range !== undefined &&
        range.first <= pos &&
        range.last >= pos &&
        (range.total === undefined || range.total === this.sizeBytes)
      if (!covers) {
        this.transport.drop(res)
        throw new NotTheBlob(`206 with Content-Range ${header} for bytes ${pos}-${end - 1}`)
      }
      skip = pos - range.first
    } else if (res.status === 200) {
      this.checkWholeBody(res)
      skip = pos
    } else if (res.status === 416) {
      await this.transport.discard(res)
      throw new EdgestarError(
        'EDGESTAR_REGISTRY_BAD_RESPONSE',
        `registry refused bytes ${pos}-${end - 1} of blob ${this.digest} (416): ` +
          `the blob is smaller than its ${this.sizeBytes}-byte descriptor`,
      )
    } else {
      throw await responseError(this.transport, res, `blob ${this.digest}`)
    }
    return this.copyBody(res, out, { outOffset: pos - start, want: end - pos, skip }, onBytes)
  }

  private checkWholeBody(res: TransportResponse): void {
    const type = headerValue(res.headers, 'content-type') ?? ''
    const length = headerValue(res.headers, 'content-length')
    if (
      /text\/html|application\/json|text\/plain/i.test(type) ||
      (length !== undefined && Number(length) !== this.sizeBytes)
    ) {
      this.transport.drop(res)
      throw new NotTheBlob(
        `200 with ${type || 'no type'} and ${length ?? 'no'} Content-Length is not blob ${this.digest}`,
      )
    }
    log.debug({ digest: this.digest, url: redactUrl(res.url) }, 'range ignored, skipping to offset')
  }

  private async copyBody(
    res: TransportResponse,
    out: Buffer,
    { outOffset, want, skip }: { outOffset: number; want: number; skip: number },
    onBytes: ((bytes: number) => void) | undefined,
  ): Promise<number> {
    let copied = 0
    let toSkip = skip
    let isInterrupted = false
    try {
      for await (let chunk of this.transport.chunks(res.body, onBytes)) {
        if (toSkip > 0) {
          const n = Math.min(toSkip, chunk.length)
          toSkip -= n
          chunk = chunk.subarray(n)
        }
        const n = Math.min(chunk.length, want - copied)
        chunk.copy(out, outOffset + copied, 0, n)
        copied += n
        if (copied >= want) break
      }
    } catch (err) {
      if (!isTransientNetworkError(err)) throw err
      isInterrupted = true
      log.debug(
        { digest: this.digest, copied, reason: (err as Error).message },
        'blob body interrupted',
      )
    } finally {
      if (copied >= want || toSkip > 0) this.transport.drop(res)
    }
    if (toSkip > 0 && !isInterrupted)
      throw new NotTheBlob(`body ended before offset ${skip} of blob ${this.digest}`)
    return copied
  }

  private gaveUp(pos: number, end: number, reason: unknown, attempts: number): EdgestarError {
    const why = reason instanceof Error ? reason.message : String(reason)
    const unreachable =
      reason instanceof EdgestarError && reason.code === 'EDGESTAR_REGISTRY_UNREACHABLE'
    if (unreachable) return reason
    return new EdgestarError(
      reason instanceof NotTheBlob
        ? 'EDGESTAR_REGISTRY_BAD_RESPONSE'
        : 'EDGESTAR_REGISTRY_UNREACHABLE',
      `reading bytes ${pos}-${end - 1} of blob ${this.digest} failed ` +
        `after ${attempts} attempts: ${why}`,
      {
        hint: 'the registry or the link keeps failing; edgestar retried with backoff',
        cause: reason,
      },
    )
  }
}

// A reader's options as the transport takes them, per request.
function sendOptions({ patience, onRetry, signal }: RangeReadOptions): SendOptions {
  const options: SendOptions = {}
  if (patience !== undefined) {
    options.maxAttempts = patience.maxAttempts
    options.timeoutMs = patience.timeoutMs
  }
  if (onRetry !== undefined) options.onRetry = onRetry
  if (signal !== undefined) options.signal = signal
  return options
}

/**
 * Sorts ranges and merges those at most `gapBytes` apart into spans no longer than
 * `maxBytes` (a single range longer than that stays one span).
 */
export function coalesce(
  ranges: { index: number; offset: number; length: number }[],
  maxBytes: number,
  gapBytes: number,
): Span[] {
  const spans: Span[] = []
  const sorted = [...ranges].sort((a, b) => a.offset - b.offset)
  for (const r of sorted) {
    const last = spans.at(-1)
    const end = r.offset + r.length
    if (
      last &&
      r.offset <= last.end + gapBytes &&
      Math.max(end, last.end) - last.start <= maxBytes
    ) {
      last.end = Math.max(last.end, end)
      last.members.push(r)
      continue
    }
    spans.push({ start: r.offset, end, members: [r] })
  }
  return spans
}
