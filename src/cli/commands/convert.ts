import { readFile } from 'node:fs/promises'
import { SingleBar } from 'cli-progress'
import type { Command } from 'commander'
import { EdgestarError } from '../../errors.js'
import {
  CONVERT_ERRORS,
  type ConvertFormat,
  type ConvertOptions,
  type ConvertProgress,
  type ConvertResult,
  convertLayer,
} from '../../estargz/index.js'
import { isInteractive, printResult } from '../output.js'
import {
  addPushOptions,
  type ConvertPushCliOptions,
  convertPushText,
  runConvertPush,
  usesRegistry,
} from './convert-push.js'

/** The options of `edgestar convert` as commander hands them over. */
export interface ConvertCliOptions {
  json?: boolean
  format: string
  chunkSize?: string
  prioritize?: string[]
  prioritizeFrom?: string
  allowMissingPrioritized?: boolean
  level?: string
  workers?: string
}

type CliOptions = ConvertCliOptions & ConvertPushCliOptions

/** What `edgestar convert --json` prints (the layer descriptor a manifest needs, and more). */
export type ConvertOutput = ConvertResult

const USAGE_LINES = [
  'edgestar convert INPUT OUT',
  'edgestar convert INPUT [OUT] --push REF',
  'edgestar convert SRC-REF OUT-DIR|--push DST-REF',
]

const USAGE_FORMS = `
Forms:
  ${USAGE_LINES[0]}                 a directory or layer tar into the blob file OUT
  ${USAGE_LINES[1]}    also publish it as a single-layer image REF
  ${USAGE_LINES[2]}
      every layer of a registry image (SRC-REF names its registry, e.g.
      docker.io/library/alpine:3); OUT-DIR keeps the converted blobs as
      layer-0.blob, layer-1.blob... (created if missing; an existing non-directory
      is refused), --push DST-REF publishes the converted image.
An INPUT without a registry host (no "." or ":" in its first component, not
localhost) is always a local path.`

// Below this much content a progress bar only flickers.
const PROGRESS_MIN_BYTES = 32 << 20

/**
 * `edgestar convert INPUT OUT [--format estargz|zstd-chunked] [--chunk-size BYTES]
 * [--prioritize PATH]... [--prioritize-from FILE] [--level N] [--json]`, plus
 * `INPUT [OUT] --push REF [--platform P]` and `SRC-REF [--push DST-REF]` (convert-push.ts).
 */
export function register(program: Command): void {
  const command = program
    .command('convert')
    .description('convert a directory or a layer tar into an eStargz or zstd:chunked layer blob')
    .argument('<input>', 'a directory, a tar, or a gzip/zstd-compressed tar (a plain layer)')
    .argument(
      '[out]',
      'where to write the layer blob (optional with --push); for a registry INPUT, a ' +
        'directory for the converted blobs (layer-N.blob), created if missing',
    )
    .addHelpText('after', USAGE_FORMS)
  const withPush = addPushOptions(addConvertOptions(command))
  withPush.action(async (input: string, out: string | undefined, opts: CliOptions) => {
    // A registry INPUT (SRC-REF) or --push REF: the registry module does the rest.
    if (usesRegistry(input, opts)) {
      const runLocal = (i: string, o: string): Promise<ConvertResult> => runConvert(i, o, opts)
      const options = await convertOptionsFrom(opts)
      const done = await runConvertPush(input, out, opts, { options, runLocal })
      printResult(opts, done, () => convertPushText(done))
      return
    }
    if (out === undefined)
      throw new EdgestarError(
        CONVERT_ERRORS.MISSING_ARGUMENT,
        'missing OUT: where to write the layer blob',
        { hint: `usage: ${USAGE_LINES.join('; or ')}` },
      )
    const result = await runConvert(input, out, opts)
    printResult(opts, result, () => humanText(out, result))
  })
}

/**
 * Declares every option of `convert`: the one place to add more (a registry push
 * option goes here, read back in `runConvert`).
 */
export function addConvertOptions(command: Command): Command {
  return command
    .option('--format <format>', 'estargz (gzip) or zstd-chunked', 'estargz')
    .option('--chunk-size <bytes>', 'largest chunk of a file, e.g. 4194304 or 4MiB (default 4MiB)')
    .option(
      '--prioritize <path>',
      'place this file first, before the prefetch landmark (repeatable)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--prioritize-from <file>', 'read prioritized paths from a file, one per line')
    .option('--allow-missing-prioritized', 'skip prioritized paths that are not in the input')
    .option('--level <n>', 'compression level: gzip 0-9 (default 9), zstd 1-22 (default 3)')
    .option('--workers <n>', 'compression threads (default: one per CPU; 0 = inline)')
    .option('--json', 'print {digest, size, tocDigest, diffID, uncompressedSize, ...} as JSON')
}

/**
 * Runs one conversion with a progress bar on a terminal. INPUT is a local path; a
 * registry reference as INPUT resolves to a local blob before `convertLayer`.
 */
export async function runConvert(
  input: string,
  out: string,
  opts: ConvertCliOptions,
): Promise<ConvertOutput> {
  const options = await convertOptionsFrom(opts)
  const progress = opts.json || !isInteractive() ? undefined : new ProgressView()
  try {
    return await convertLayer(input, out, {
      ...options,
      onProgress: progress?.update,
      onWarning: (message) => process.stderr.write(`warning: ${message}\n`),
    })
  } finally {
    progress?.stop()
  }
}

/** Turns the command's options into ConvertOptions; throws BAD_OPTION naming the option. */
export async function convertOptionsFrom(opts: ConvertCliOptions): Promise<ConvertOptions> {
  if (opts.format !== 'estargz' && opts.format !== 'zstd-chunked')
    throw optionError('--format', opts.format, 'estargz or zstd-chunked')
  const prioritizedPaths = [...(opts.prioritize ?? [])]
  if (opts.prioritizeFrom !== undefined)
    prioritizedPaths.push(...(await readPathList(opts.prioritizeFrom)))

  return {
    format: opts.format as ConvertFormat,
    chunkSizeBytes: opts.chunkSize === undefined ? undefined : parseBytes(opts.chunkSize),
    prioritizedPaths,
    allowMissingPrioritized: opts.allowMissingPrioritized === true,
    level: parseCount(opts.level, '--level'),
    workers: parseCount(opts.workers, '--workers'),
  }
}

// One path per line; blank lines and lines starting with # are skipped.
async function readPathList(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8').catch((cause: unknown) => {
    throw new EdgestarError(CONVERT_ERRORS.BAD_OPTION, `cannot read --prioritize-from ${file}`, {
      hint: 'give a readable text file with one path per line',
      cause,
    })
  })
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
}

const UNITS: Record<string, number> = { '': 1, k: 1024, kib: 1024, m: 1 << 20, mib: 1 << 20 }

function parseBytes(text: string): number {
  const match = /^(\d+)\s*([a-z]*)$/i.exec(text.trim())
  const unit = UNITS[(match?.[2] ?? '').toLowerCase()]
  if (match === null || unit === undefined)
    throw optionError('--chunk-size', text, 'a number of bytes, optionally with KiB or MiB')
  return Number(match[1]) * unit
}

function parseCount(text: string | undefined, option: string): number | undefined {
  if (text === undefined) return undefined
  if (!/^\d+$/.test(text)) throw optionError(option, text, 'a whole number')
  return Number(text)
}

function optionError(option: string, value: string, expected: string): EdgestarError {
  return new EdgestarError(CONVERT_ERRORS.BAD_OPTION, `invalid ${option} "${value}"`, {
    hint: `give ${expected}`,
  })
}

/** A progress bar over content bytes, shown only for inputs big enough to need one. */
class ProgressView {
  private bar: SingleBar | undefined

  update = (progress: ConvertProgress): void => {
    if (this.bar === undefined) {
      if (progress.totalBytes < PROGRESS_MIN_BYTES) return
      this.bar = new SingleBar({
        format: 'converting [{bar}] {percentage}% | {doneMiB}/{totalMiB} MiB',
        stream: process.stderr,
        hideCursor: true,
      })
      this.bar.start(progress.totalBytes, 0, mib(progress))
    }
    this.bar.update(progress.doneBytes, mib(progress))
  }

  stop(): void {
    this.bar?.stop()
  }
}

function mib(progress: ConvertProgress): Record<string, string> {
  return {
    doneMiB: (progress.doneBytes / (1 << 20)).toFixed(1),
    totalMiB: (progress.totalBytes / (1 << 20)).toFixed(1),
  }
}

function humanText(out: string, result: ConvertOutput): string {
  const ratio = result.uncompressedSize > 0 ? (result.size / result.uncompressedSize) * 100 : 0
  const lines = [
    `wrote ${out} (${result.format}, ${result.size} bytes, ` +
      `${ratio.toFixed(1)}% of ${result.uncompressedSize})`,
    `digest:     ${result.digest}`,
    `toc digest: ${result.tocDigest}`,
    `diff id:    ${result.diffID}`,
    `entries:    ${result.tocEntries} TOC entries`,
  ]
  for (const entry of result.skipped) lines.push(`skipped ${entry.path}: ${entry.reason}`)
  if (result.missedPrioritized.length > 0)
    lines.push(`skipped prioritized paths not in the input: ${result.missedPrioritized.join(', ')}`)
  return lines.join('\n')
}
