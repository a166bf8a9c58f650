import type { Command } from 'commander'
import { FileReader, type VerifyReport, verifyLayer } from '../../estargz/index.js'
import { type ErrorBody, printResult } from '../output.js'
import { parseBytes } from './inspect.js'

/**
 * `edgestar verify BLOB [--toc-digest D] [--diff-id D] [--json]`: checks the footer, the
 * TOC, every chunk and the whole stream; exit 0 only when everything verifies.
 */
export function register(program: Command): void {
  program
    .command('verify')
    .description('check every chunk of a layer blob, its TOC digest and its diffID')
    .argument('<blob>', 'path of an eStargz, zstd:chunked or plain gzip/zstd layer blob')
    .option('--toc-digest <digest>', 'expected TOC digest (sha256:...)')
    .option('--diff-id <digest>', 'expected diffID: sha256 of the decompressed layer')
    .option(
      '--max-toc-bytes <n>',
      'refuse TOCs larger than this many bytes (default 64 MiB)',
      parseBytes,
    )
    .option('--json', 'print {ok, error?, tocDigest, diffID, entries, chunks, errors}')
    .action(async (blob: string, options: VerifyOptions) => {
      const reader = await FileReader.open(blob)
      let report: VerifyReport
      try {
        report = await verifyLayer(reader, {
          ...(options.tocDigest ? { tocDigest: options.tocDigest } : {}),
          ...(options.diffId ? { diffID: options.diffId } : {}),
          ...(options.maxTocBytes ? { maxTocBytes: options.maxTocBytes } : {}),
        })
      } finally {
        await reader.close()
      }

      const { ok, tocDigest, diffID, entries, chunks, errors } = report
      const failure = ok ? {} : { error: summaryError(blob, report) }
      printResult(options, { ok, ...failure, tocDigest, diffID, entries, chunks, errors }, () =>
        humanText(blob, report),
      )
      if (!ok) process.exitCode = 1
    })
}

interface VerifyOptions {
  json?: boolean
  tocDigest?: string
  diffId?: string
  maxTocBytes?: number
}

const SHOWN_PROBLEMS = 20

// A failed verify is a failure like any other: `error` names the first problem, so a
// script reads the same {ok, error} from every command; `errors` lists them all.
function summaryError(blob: string, r: VerifyReport): ErrorBody {
  const first = r.errors[0]
  const more = r.errors.length > 1 ? ` (and ${r.errors.length - 1} more problems)` : ''
  return {
    code: first?.code ?? 'EDGESTAR_ESTARGZ_VERIFY_FAILED',
    message: `${blob}: ${first?.message ?? 'verification failed'}${more}`,
    hint: 'the blob is damaged or is not the one expected; `errors` lists every problem',
  }
}

function humanText(blob: string, r: VerifyReport): string {
  const lines = [
    `${r.ok ? 'verified' : 'FAILED'}: ${blob}`,
    `format:     ${r.format ?? 'unknown'}`,
    `TOC digest: ${r.tocDigest ?? '(none)'}`,
    `diffID:     ${r.diffID ?? '(not computed)'}`,
    `entries:    ${r.entries}`,
    `chunks:     ${r.chunks} verified`,
  ]
  // A badly damaged blob fails in every chunk; the first few say what is wrong.
  for (const e of r.errors.slice(0, SHOWN_PROBLEMS)) lines.push(`error ${e.code}: ${e.message}`)
  const more = r.errors.length - SHOWN_PROBLEMS
  if (more > 0) lines.push(`... and ${more} more problems (--json lists every one)`)
  return lines.join('\n')
}
