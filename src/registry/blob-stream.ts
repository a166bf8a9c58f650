import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { EdgestarError, redactUrl } from '../errors.js'
import { moduleLogger } from '../log.js'
import type { BlobLocation } from './blob-location.js'
import { parseContentRange } from './multipart.js'
import { responseError } from './response-error.js'
import {
  headerValue,
  isTransientNetworkError,
  type RegistryTransport,
  type TransportResponse,
} from './transport.js'

const log = moduleLogger('registry')

/**
 * Streams a whole blob. A dropped or stalled body is resumed with a Range request from
 * the next byte needed (a server that ignores Range is skipped forward instead); at the
 * end the bytes are checked against the digest and the stream errors with
 * EDGESTAR_REGISTRY_DIGEST_MISMATCH when they differ. `sizeBytes` may be undefined
 * (taken from the first response).
 */
export function streamBlob(
  transport: RegistryTransport,
  location: BlobLocation,
  sizeBytes?: number,
): Readable {
  return Readable.from(blobChunks(transport, location, sizeBytes), { objectMode: false })
}

async function* blobChunks(
  transport: RegistryTransport,
  location: BlobLocation,
  knownSize?: number,
): AsyncGenerator<Buffer> {
  const [algorithm, expectedHex] = location.digest.split(':') as [string, string]
  const hash = createHash(algorithm === 'sha512' ? 'sha512' : 'sha256')
  let size = knownSize
  let pos = 0
  let failures = 0

  while (size === undefined || pos < size) {
    const headers: Record<string, string> = { 'accept-encoding': 'identity' }
    if (pos > 0) headers.range = `bytes=${pos}-`
    const before = pos
    let reason: unknown
    try {
      const res = await location.send('GET', headers)
      const { skip, total } = await startOf(transport, res, location, pos)
      size ??= total
      for await (const piece of skipBytes(transport.chunks(res.body), skip)) {
        const take = size === undefined ? piece : piece.subarray(0, Math.max(0, size - pos))
        hash.update(take)
        pos += take.length
        yield take
        if (size !== undefined && pos >= size) break
      }
      if (size === undefined) size = pos
      if (pos >= size) break
      reason = `body ended ${size - pos} bytes short`
    } catch (err) {
      if (!isTransientNetworkError(err)) throw err
      reason = err
    }
    // Progress means the server is alive: ask for the rest at once, no backoff.
    if (pos > before) {
      failures = 0
      continue
    }
    if (++failures >= transport.retry.maxAttempts) {
      throw new EdgestarError(
        'EDGESTAR_REGISTRY_UNREACHABLE',
        `download of blob ${location.digest} stopped at byte ${pos} after ${failures} attempts: ` +
          String((reason as Error)?.message ?? reason),
        {
          hint: 'the registry or the link keeps failing; run the command again to resume',
          cause: reason,
        },
      )
    }
    await transport.backoff(location.blobUrl, failures, undefined, reason)
  }

  const actual = hash.digest('hex')
  if (actual !== expectedHex) {
    throw new EdgestarError(
      'EDGESTAR_REGISTRY_DIGEST_MISMATCH',
      `blob ${location.digest} from ${redactUrl(location.blobUrl)} hashed to ${algorithm}:${actual}`,
      { hint: 'the registry or something on the way served corrupt data; nothing was kept' },
    )
  }
}

/** Checks the response and says how many leading bytes to drop to land at `pos`. */
async function startOf(
  transport: RegistryTransport,
  res: TransportResponse,
  location: BlobLocation,
  pos: number,
): Promise<{ skip: number; total: number | undefined }> {
  const type = headerValue(res.headers, 'content-type') ?? ''
  if ((res.status === 200 || res.status === 206) && /text\/html/i.test(type)) {
    transport.drop(res)
    throw new EdgestarError(
      'EDGESTAR_REGISTRY_BAD_RESPONSE',
      `blob ${location.digest} came back as an HTML page from ${redactUrl(res.url)}`,
      {
        hint: 'a proxy or captive portal is answering instead of the registry',
      },
    )
  }
  if (res.status === 200) {
    const length = headerValue(res.headers, 'content-length')
    if (pos > 0) log.debug({ digest: location.digest }, 'range ignored on resume, skipping forward')
    return { skip: pos, total: length === undefined ? undefined : Number(length) }
  }
  if (res.status === 206) {
    const range = parseContentRange(headerValue(res.headers, 'content-range'))
    if (range && range.first <= pos && range.last >= pos)
      return { skip: pos - range.first, total: range.total }
    transport.drop(res)
    throw new EdgestarError(
      'EDGESTAR_REGISTRY_BAD_RESPONSE',
      `blob ${location.digest}: resume at ${pos} answered with another range`,
    )
  }
  throw await responseError(transport, res, `blob ${location.digest}`)
}

async function* skipBytes(chunks: AsyncIterable<Buffer>, skip: number): AsyncGenerator<Buffer> {
  let left = skip
  for await (const chunk of chunks) {
    if (left >= chunk.length) {
      left -= chunk.length
      continue
    }
    yield left > 0 ? chunk.subarray(left) : chunk
    left = 0
  }
}
