import { EdgestarError, isEdgestarError } from '../errors.js'
import { decodeChunkAsync } from './decode-chunk.js'
import { checkDigestOption, sha256Hasher } from './digest.js'
import { ESTARGZ_ERRORS } from './error-codes.js'
import { detectLayerFormat, walkLayer } from './layer-stream.js'
import { openLayer } from './open-layer.js'
import type { LayerFormat, LayerIndex, RandomAccessReader } from './types.js'
import { isFormatMetaEntry } from './types.js'

/** What to check a layer against. */
export interface VerifyLayerOptions {
  /** Expected TOC digest (`sha256:<hex>`). */
  tocDigest?: string
  /** Expected diffID: sha256 of the whole decompressed stream. */
  diffID?: string
  maxTocBytes?: number
}

/** One failed check. */
export interface VerifyProblem {
  code: string
  message: string
}

/** The outcome of verifyLayer; `ok` only when every check passed. */
export interface VerifyReport {
  ok: boolean
  format: LayerFormat | null
  tocDigest: string | null
  diffID: string | null
  /** Non-chunk TOC entries, or tar entries for a plain layer. */
  entries: number
  /** Chunks decoded and verified. */
  chunks: number
  errors: VerifyProblem[]
}

/**
 * Checks a layer blob end to end: its footer and TOC (against `tocDigest` when given),
 * every chunk against its chunkDigest, every file against its whole-file digest, that
 * the tar stream holds the entries the TOC lists, and the whole decompressed stream
 * against `diffID` when given. A plain gzip/zstd tar gets the stream checks only.
 * Collects problems instead of stopping at the first (a broken TOC stops the chunk
 * checks). Throws only for bad options (DIGEST_INVALID) and I/O failures.
 */
export async function verifyLayer(
  reader: RandomAccessReader,
  opts: VerifyLayerOptions = {},
): Promise<VerifyReport> {
  if (opts.tocDigest) checkDigestOption(opts.tocDigest, 'TOC digest')
  if (opts.diffID) checkDigestOption(opts.diffID, 'diffID')
  const report: VerifyReport = {
    ok: false,
    format: null,
    tocDigest: null,
    diffID: null,
    entries: 0,
    chunks: 0,
    errors: [],
  }

  const format = await collect(report, () => detectLayerFormat(reader))
  if (!format) return report
  report.format = format

  let index: LayerIndex | undefined
  if (format !== 'gzip' && format !== 'zstd') {
    index = await collect(report, () => openLayer(reader, opts))
    if (!index) return report
    report.tocDigest = index.tocDigest
    report.entries = index.byName.size
    await verifyChunks(reader, index, report)
  } else if (opts.tocDigest) {
    report.errors.push(
      problem(
        ESTARGZ_ERRORS.NO_TOC,
        `a plain ${format} layer has no TOC to check against ${opts.tocDigest}`,
      ),
    )
  }

  await verifyStream(reader, format, index, opts.diffID, report)
  report.ok = report.errors.length === 0
  return report
}

async function verifyChunks(
  reader: RandomAccessReader,
  index: LayerIndex,
  report: VerifyReport,
): Promise<void> {
  for (const [name, chunks] of index.chunksByName) {
    const fileHash = sha256Hasher()
    let isWhole = true
    for (const chunk of chunks) {
      const data = await collect(report, async () => {
        const compressed = chunk.isZeros
          ? Buffer.alloc(0)
          : await reader.readAt(chunk.compressedOffset, chunk.compressedSize)
        return decodeChunkAsync(index.compression, compressed, chunk)
      })
      if (!data) {
        isWhole = false
        continue
      }
      fileHash.update(data)
      report.chunks++
    }

    const expected = index.byName.get(name)?.digest
    const actual = fileHash.digest()
    if (isWhole && expected && expected !== actual) {
      report.errors.push(
        problem(
          ESTARGZ_ERRORS.FILE_DIGEST_MISMATCH,
          `file ${JSON.stringify(name)} has digest ${actual}, TOC says ${expected}`,
        ),
      )
    }
  }
}

async function verifyStream(
  reader: RandomAccessReader,
  format: LayerFormat,
  index: LayerIndex | undefined,
  expectedDiffID: string | undefined,
  report: VerifyReport,
): Promise<void> {
  const unseen = new Set(index ? index.byName.keys() : [])
  let tarEntries = 0
  const result = await collect(report, () =>
    walkLayer(reader, format, async (entry) => {
      tarEntries++
      unseen.delete(entry.name)
      const listed = index?.byName.get(entry.name)
      if (index && !listed && !isFormatMetaEntry(entry.name)) {
        report.errors.push(
          problem(
            ESTARGZ_ERRORS.TOC_INVALID,
            `tar stream holds ${JSON.stringify(entry.name)}, which the TOC does not list`,
          ),
        )
      } else if (listed && listed.type !== entry.type) {
        report.errors.push(
          problem(
            ESTARGZ_ERRORS.TOC_INVALID,
            `${JSON.stringify(entry.name)} is a ${entry.type} in the tar stream ` +
              `but a ${listed.type} in the TOC`,
          ),
        )
      }
    }),
  )
  if (!result) return

  report.diffID = result.diffID
  if (!index) report.entries = tarEntries
  // The reference writer may list the root directory in the TOC without a tar entry.
  unseen.delete('')
  if (unseen.size > 0) {
    const first = [...unseen]
      .slice(0, 3)
      .map((n) => JSON.stringify(n))
      .join(', ')
    report.errors.push(
      problem(
        ESTARGZ_ERRORS.TOC_INVALID,
        `TOC lists ${unseen.size} entries missing from the tar stream (${first})`,
      ),
    )
  }
  if (expectedDiffID && expectedDiffID !== result.diffID) {
    report.errors.push(
      problem(
        ESTARGZ_ERRORS.DIFFID_MISMATCH,
        `decompressed stream has diffID ${result.diffID}, expected ${expectedDiffID}`,
      ),
    )
  }
}

async function collect<T>(report: VerifyReport, step: () => Promise<T>): Promise<T | undefined> {
  try {
    return await step()
  } catch (err) {
    if (!isEdgestarError(err) || err.code === ESTARGZ_ERRORS.READ_FAILED) throw err
    report.errors.push(problem(err.code, err.message))
    return undefined
  }
}

function problem(code: string, message: string): VerifyProblem {
  return { code, message }
}

/** Throws DIFFID_MISMATCH unless `actual` equals `expected`. */
export function assertDiffId(actual: string, expected: string): void {
  if (actual === expected) return
  throw new EdgestarError(
    ESTARGZ_ERRORS.DIFFID_MISMATCH,
    `decompressed stream has diffID ${actual}, expected ${expected}`,
    {
      hint: 'the blob is not the layer the image config names; fetch it again',
    },
  )
}
