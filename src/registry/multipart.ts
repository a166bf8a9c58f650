import type { RegistryTransport, TransportResponse } from './transport.js'
import { headerValue } from './transport.js'

/** Per-part overhead allowed on top of the data (boundary, headers). */
const PART_OVERHEAD_BYTES = 1024

/**
 * Reads a `multipart/byteranges` answer (RFC 9110 §14.6) to a multi-range request and
 * returns the bytes of each wanted span, or undefined when the answer does not cover
 * them all exactly. Each part's length comes from its Content-Range, never from
 * searching the boundary, so blob bytes that look like a boundary do no harm.
 */
export async function readMultipartRanges(
  transport: RegistryTransport,
  res: TransportResponse,
  spans: readonly { start: number; end: number }[],
  blobSizeBytes: number,
  onBytes?: (bytes: number) => void,
): Promise<(Buffer | undefined)[] | undefined> {
  const boundary = /boundary="?([^";]+)"?/i.exec(
    headerValue(res.headers, 'content-type') ?? '',
  )?.[1]
  if (!boundary) return undefined
  const wanted = spans.reduce(
    (n, s) => n + (s.end - s.start) + PART_OVERHEAD_BYTES,
    PART_OVERHEAD_BYTES,
  )
  let body: Buffer
  try {
    body = await transport.readAll(res, wanted, onBytes)
  } catch {
    return undefined
  }

  const parts = new Map<number, Buffer>()
  const delimiter = Buffer.from(`--${boundary}`)
  let pos = body.indexOf(delimiter)
  while (pos >= 0) {
    pos += delimiter.length
    if (body.subarray(pos, pos + 2).toString() === '--') break
    const headerEnd = body.indexOf('\r\n\r\n', pos)
    if (headerEnd < 0) return undefined
    const headers = body.subarray(pos, headerEnd).toString('latin1')
    const range = parseContentRange(/content-range:\s*([^\r\n]+)/i.exec(headers)?.[1])
    if (!range || (range.total !== undefined && range.total !== blobSizeBytes)) return undefined
    const dataStart = headerEnd + 4
    const dataEnd = dataStart + (range.last - range.first + 1)
    if (dataEnd > body.length) return undefined
    parts.set(range.first, body.subarray(dataStart, dataEnd))
    pos = body.indexOf(delimiter, dataEnd)
  }

  const result = spans.map((s) => {
    const part = parts.get(s.start)
    return part && part.length === s.end - s.start ? part : undefined
  })
  return result.every((p) => p !== undefined) ? result : undefined
}

/** Parses `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`). */
export function parseContentRange(
  header: string | undefined,
): { first: number; last: number; total?: number } | undefined {
  const m = header ? /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/.exec(header.trim()) : null
  if (!m) return undefined
  const first = Number(m[1])
  const last = Number(m[2])
  if (last < first) return undefined
  return m[3] === '*' ? { first, last } : { first, last, total: Number(m[3]) }
}
