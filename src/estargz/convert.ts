/**
 * The converter's public API: turn a directory, a tar, or a gzip/zstd-compressed tar
 * into a gzip eStargz or zstd:chunked layer blob the reference implementation reads.
 */
import { open, realpath, rename, rm, stat } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { basename, dirname, join, resolve, sep } from 'node:path'
import { EdgestarError } from '../errors.js'
import { CONVERT_ERRORS, outputError } from './convert-errors.js'
import { type LayerOrder, layerEntries, orderEntries } from './convert-order.js'
import { withReadAhead } from './convert-read-ahead.js'
import {
  type ConvertFormat,
  type ConvertOptions,
  type ConvertResult,
  DEFAULT_CHUNK_SIZE_BYTES,
  DEFAULT_GZIP_LEVEL,
  DEFAULT_ZSTD_LEVEL,
  type LayerWriteResult,
  MAX_CHUNK_SIZE_BYTES,
  MIN_CHUNK_SIZE_BYTES,
} from './convert-types.js'
import { openEntrySource } from './tar-source-open.js'
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK } from './types.js'
import { type BlobSink, LayerWriter, type LayerWriterOptions } from './writer.js'

export {
  CONVERT_ERRORS,
  type ConvertErrorCode,
  inputError,
  outputError,
} from './convert-errors.js'
export * from './convert-types.js'
export type { EntrySource, SkippedEntry, SourceEntry, SourceEntryType } from './tar-source.js'
export { type InputKind, openEntrySource } from './tar-source-open.js'
export { type BlobSink, LayerWriter, type LayerWriterOptions } from './writer.js'

// Below this much content, compressing on the main thread beats starting workers.
const INLINE_BELOW_BYTES = 8 << 20

const MEDIA_TYPES: Record<ConvertFormat, string> = {
  estargz: 'application/vnd.oci.image.layer.v1.tar+gzip',
  'zstd-chunked': 'application/vnd.oci.image.layer.v1.tar+zstd',
}

/**
 * Converts `inputPath` (directory, tar, tar.gz or tar.zst) into a layer blob at
 * `outPath` (written to a temporary name, then renamed). Streams chunk by chunk:
 * memory holds the entry metadata and a few chunks in flight, never the layer.
 * Throws EdgestarError with a CONVERT_ERRORS code (input, option, output problems).
 */
export async function convertLayer(
  inputPath: string,
  outPath: string,
  options: ConvertOptions = {},
): Promise<ConvertResult> {
  const settings = checkOptions(options)
  await checkOutsideInput(inputPath, outPath)
  await checkNotDirectory(outPath)
  const source = await openEntrySource(inputPath, {
    xattrPrefixes: options.xattrPrefixes,
    onWarning: options.onWarning,
    tempDir: options.tempDir,
  })
  try {
    const skipped = [...(source.skipped ?? [])]
    const entries = layerEntries(source.entries, options.onWarning ?? (() => {}), skipped)
    const order = orderEntries(entries, options.prioritizedPaths ?? [])
    if (order.missed.length > 0 && !options.allowMissingPrioritized) throw missing(order.missed)

    const tmpPath = `${outPath}.tmp-${process.pid}`
    const hasPriority = (options.prioritizedPaths ?? []).length > 0
    const result = await writeToFile(tmpPath, outPath, (sink) =>
      writeLayer(sink, order, hasPriority, {
        ...settings,
        // Threads only pay once there is more to compress than starting them costs.
        workers:
          settings.workers ?? (source.totalBytes < INLINE_BELOW_BYTES ? 0 : availableParallelism()),
        totalBytes: source.totalBytes,
        onProgress: options.onProgress,
      }),
    )
    await rename(tmpPath, outPath).catch(async (cause: unknown) => {
      await rm(tmpPath, { force: true })
      throw outputError(outPath, cause)
    })
    return {
      ...result,
      format: settings.format,
      mediaType: MEDIA_TYPES[settings.format],
      missedPrioritized: order.missed,
      skipped,
    }
  } finally {
    await source.close()
  }
}

// Prioritized entries, the landmark, the rest; then the TOC and footer.
async function writeLayer(
  sink: BlobSink,
  order: LayerOrder,
  hasPriority: boolean,
  writerOptions: LayerWriterOptions,
): Promise<LayerWriteResult> {
  const writer = new LayerWriter(sink, writerOptions)
  try {
    for await (const entry of withReadAhead(order.prioritized)) await writer.add(entry)
    await writer.addLandmark(hasPriority ? PREFETCH_LANDMARK : NO_PREFETCH_LANDMARK)
    for await (const entry of withReadAhead(order.rest)) await writer.add(entry)
    return await writer.finish()
  } catch (err) {
    await writer.abort()
    throw err
  }
}

interface Settings {
  format: ConvertFormat
  chunkSizeBytes: number
  level: number
  workers: number | undefined
}

function checkOptions(options: ConvertOptions): Settings {
  const format = options.format ?? 'estargz'
  if (format !== 'estargz' && format !== 'zstd-chunked')
    throw badOption(`format "${format}"`, 'use estargz or zstd-chunked')

  const chunkSizeBytes = options.chunkSizeBytes ?? DEFAULT_CHUNK_SIZE_BYTES
  if (
    !Number.isInteger(chunkSizeBytes) ||
    chunkSizeBytes < MIN_CHUNK_SIZE_BYTES ||
    chunkSizeBytes > MAX_CHUNK_SIZE_BYTES
  )
    throw badOption(
      `chunk size ${chunkSizeBytes}`,
      `give a whole number of bytes from ${MIN_CHUNK_SIZE_BYTES} to ${MAX_CHUNK_SIZE_BYTES}`,
    )

  const isGzip = format === 'estargz'
  const level = options.level ?? (isGzip ? DEFAULT_GZIP_LEVEL : DEFAULT_ZSTD_LEVEL)
  const [minLevel, maxLevel] = isGzip ? [0, 9] : [1, 22]
  if (!Number.isInteger(level) || level < minLevel || level > maxLevel)
    throw badOption(`${format} level ${level}`, `give a level from ${minLevel} to ${maxLevel}`)

  const workers = options.workers
  if (workers !== undefined && (!Number.isInteger(workers) || workers < 0 || workers > 256))
    throw badOption(`worker count ${workers}`, 'give 0 (compress inline) up to 256')
  return { format, chunkSizeBytes, level, workers }
}

// An output inside the input tree would be walked while it is being written.
async function checkOutsideInput(inputPath: string, outPath: string): Promise<void> {
  const input = await realpath(inputPath).catch(() => resolve(inputPath))
  const outDir = await realpath(dirname(resolve(outPath))).catch(() => dirname(resolve(outPath)))
  const out = join(outDir, basename(outPath))
  if (out === input || out.startsWith(`${input}${sep}`))
    throw badOption(`output ${outPath} (inside the input)`, 'write the blob outside the input tree')
}

// A directory as OUT would only fail at the final rename, after all the work.
async function checkNotDirectory(outPath: string): Promise<void> {
  const stats = await stat(outPath).catch(() => undefined)
  if (stats?.isDirectory()) {
    const cause = Object.assign(new Error(`EISDIR: illegal operation on a directory`), {
      code: 'EISDIR',
    })
    throw outputError(outPath, cause)
  }
}

// Writes through a sink into `path` (errors name `shownPath`, the output the user gave);
// removes the partial file on any failure.
async function writeToFile<T>(
  path: string,
  shownPath: string,
  body: (sink: BlobSink) => Promise<T>,
): Promise<T> {
  const handle = await open(path, 'w').catch((cause: unknown) => {
    throw outputError(shownPath, cause)
  })
  try {
    const sink: BlobSink = {
      write: async (data) => {
        await handle.write(data).catch((cause: unknown) => {
          throw outputError(shownPath, cause)
        })
      },
    }
    const result = await body(sink)
    await handle.close().catch((cause: unknown) => {
      throw outputError(shownPath, cause)
    })
    return result
  } catch (err) {
    await handle.close().catch(() => {})
    await rm(path, { force: true })
    throw err
  }
}

function badOption(what: string, hint: string): EdgestarError {
  return new EdgestarError(CONVERT_ERRORS.BAD_OPTION, `invalid ${what}`, { hint })
}

function missing(paths: string[]): EdgestarError {
  const shown = paths.slice(0, 5).join(', ')
  const more = paths.length > 5 ? ` and ${paths.length - 5} more` : ''
  return new EdgestarError(
    CONVERT_ERRORS.PRIORITIZED_MISSING,
    `prioritized path(s) not in the input: ${shown}${more}`,
    {
      hint: 'fix the paths (as inside the layer), or skip missing ones (--allow-missing-prioritized)',
    },
  )
}
