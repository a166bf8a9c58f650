import type { Command } from 'commander'
import { EdgestarError } from '../../errors.js'
import {
  detectLayerFormat,
  FileReader,
  type LayerFormat,
  openLayer,
  type TocEntry,
  walkLayer,
} from '../../estargz/index.js'
import { printResult } from '../output.js'

/** What `edgestar inspect` reports about a blob. */
export interface InspectResult {
  format: LayerFormat
  blobSizeBytes: number
  tocDigest: string | null
  tocOffset: number | null
  footerSizeBytes: number | null
  landmark: 'prefetch' | 'no-prefetch' | 'none'
  /** Non-chunk TOC entries (tar entries for a plain layer). */
  entryCount: number
  chunkCount: number
  /** The TOC entries, cleaned and validated (JSON output only; empty for a plain layer). */
  entries: TocEntry[]
}

/** `edgestar inspect BLOB [--json]`: format, TOC digest, entry count, landmark state. */
export function register(program: Command): void {
  program
    .command('inspect')
    .description('show a layer blob: format, TOC digest, entry count, landmark state')
    .argument('<blob>', 'path of an eStargz, zstd:chunked or plain gzip/zstd layer blob')
    .option('--json', 'print one JSON object, with the TOC entries')
    .option(
      '--max-toc-bytes <n>',
      'refuse TOCs larger than this many bytes (default 64 MiB)',
      parseBytes,
    )
    .action(async (blob: string, options: { json?: boolean; maxTocBytes?: number }) => {
      const result = await inspectBlob(blob, options.maxTocBytes)
      printResult(options, result, () => humanText(blob, result))
    })
}

/** Reads a blob's footer and TOC (or, for a plain layer, walks its tar stream). */
export async function inspectBlob(blobPath: string, maxTocBytes?: number): Promise<InspectResult> {
  const reader = await FileReader.open(blobPath)
  try {
    const format = await detectLayerFormat(reader)
    if (format === 'gzip' || format === 'zstd') {
      let entryCount = 0
      await walkLayer(reader, format, async () => void entryCount++)
      return {
        format,
        blobSizeBytes: reader.sizeBytes,
        tocDigest: null,
        tocOffset: null,
        footerSizeBytes: null,
        landmark: 'none',
        entryCount,
        chunkCount: 0,
        entries: [],
      }
    }

    const index = await openLayer(reader, maxTocBytes ? { maxTocBytes } : {})
    return {
      format,
      blobSizeBytes: index.blobSizeBytes,
      tocDigest: index.tocDigest,
      tocOffset: index.tocOffset,
      footerSizeBytes: index.footerSizeBytes,
      landmark: index.landmark,
      entryCount: index.byName.size,
      chunkCount: index.chunks.length,
      entries: index.entries,
    }
  } finally {
    await reader.close()
  }
}

function humanText(blob: string, r: InspectResult): string {
  return [
    `blob:       ${blob} (${r.blobSizeBytes} bytes)`,
    `format:     ${r.format}`,
    `TOC digest: ${r.tocDigest ?? '(none: plain layer)'}`,
    `entries:    ${r.entryCount}`,
    `chunks:     ${r.chunkCount}`,
    `landmark:   ${r.landmark}`,
  ].join('\n')
}

/** Parses --max-toc-bytes. Throws EDGESTAR_CLI_INVALID_OPTION. */
export function parseBytes(value: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new EdgestarError(
      'EDGESTAR_CLI_INVALID_OPTION',
      `--max-toc-bytes must be a positive byte count, got "${value}"`,
      { hint: 'give a whole number of bytes, for example --max-toc-bytes 67108864' },
    )
  return n
}
