import type { Command } from 'commander'
import { optimizeImage } from '../../agent/index.js'
import { parseDuration } from '../../config.js'
import { EdgestarError } from '../../errors.js'
import { parseByteSize } from '../../fetch/index.js'
import { addCommonOptions, type CommonOptions, openServices, settingsFrom } from '../options.js'
import { isInteractive, printResult } from '../output.js'

interface OptimizeCommandOptions extends CommonOptions {
  runFor: string
  network: string
  format?: string
  chunkSize?: string
  allowFailure?: boolean
}

const HELP_AFTER = `
How it works: SRC is mounted lazily (FUSE), its command (or CMD after --) runs in a
container over that mount for at most --run-for, and every file the workload reads is
recorded in the order of its first read. A workload that exits non-zero is refused
(EDGESTAR_OPTIMIZE_WORKLOAD_FAILED, with its last lines of output) unless
--allow-failure; one stopped by --run-for is fine. Each layer of SRC is then converted
with those files first, followed by the prefetch landmark, and DST is pushed. A
deployment of DST fetches exactly that set before anything else, so the application
starts after the bytes it needs instead of after the whole image. SRC may be a plain
gzip or zstd image.

Example:
  edgestar optimize 127.0.0.1:5000/app:1 127.0.0.1:5000/app:1-esgz
  edgestar optimize 127.0.0.1:5000/app:1 127.0.0.1:5000/app:1-esgz --run-for 60s -- python3 /app/app.py`

/** `edgestar optimize SRC DST [-- CMD...]`: workload-based prefetch for an image. */
export function register(program: Command): void {
  const command = program
    .command('optimize')
    .description('run an image once and push it with the files it read prioritized (prefetch set)')
    .argument('<src>', 'image to optimize, e.g. 127.0.0.1:5000/app:1')
    .argument('<dst>', 'where to push the optimized image')
    .argument('[cmd...]', 'command to record instead of the image command (after --)')
    .option('--run-for <duration>', 'stop the recording run after this long', '30s')
    .option('--network <mode>', 'network of the recording run: none or host', 'none')
    .option('--format <format>', 'estargz or zstd-chunked', 'estargz')
    .option('--chunk-size <bytes>', 'chunk size of the converted layers, e.g. 4MiB')
    .option(
      '--allow-failure',
      'push even when the recorded workload exits non-zero (a run stopped by --run-for is fine)',
    )
    .addHelpText('after', HELP_AFTER)

  addCommonOptions(command).action(
    async (src: string, dst: string, cmd: string[], options: OptimizeCommandOptions) => {
      const network = checkNetwork(options.network)
      const format = checkFormat(options.format)
      const services = openServices(settingsFrom(options))
      const verbose = !options.json || isInteractive()
      try {
        const result = await optimizeImage(
          {
            store: services.store,
            registry: services.registry,
            images: services.images,
            stateDir: services.config.stateDir,
          },
          {
            source: src,
            destination: dst,
            ...(cmd.length > 0 ? { command: cmd } : {}),
            runForMs: parseDuration(options.runFor, '--run-for'),
            network,
            format,
            allowFailure: options.allowFailure === true,
            ...(options.chunkSize === undefined
              ? {}
              : { chunkSizeBytes: parseByteSize(options.chunkSize, '--chunk-size') }),
            onStep: (message) => {
              if (verbose) process.stderr.write(`optimize: ${message}\n`)
            },
          },
        )
        printResult(
          options,
          {
            ok: true,
            source: src,
            destination: dst,
            manifestDigest: result.pushed?.manifestDigest,
            recordingEnd: result.recordingEnd,
            prioritized: result.prioritized,
          },
          () =>
            `${dst} ${result.pushed?.manifestDigest ?? ''}\n` +
            `${result.prioritized.length} files prioritized (recording run ended: ` +
            `${describeEnd(result.recordingEnd)})`,
        )
      } finally {
        await services.close()
      }
    },
  )
}

function checkNetwork(value: string): 'none' | 'host' {
  if (value === 'none' || value === 'host') return value
  throw new EdgestarError(
    'EDGESTAR_CLI_BAD_OPTION',
    `--network must be none or host, not ${value}`,
    {
      hint: 'use --network host when the workload needs the network to get ready',
    },
  )
}

function checkFormat(value: string | undefined): 'estargz' | 'zstd-chunked' {
  if (value === undefined || value === 'estargz' || value === 'zstd-chunked')
    return value ?? 'estargz'
  throw new EdgestarError(
    'EDGESTAR_CLI_BAD_OPTION',
    `--format must be estargz or zstd-chunked, not ${value}`,
    {
      hint: 'leave --format out for gzip eStargz, the most widely readable form',
    },
  )
}

function describeEnd(end: number | 'stopped'): string {
  return end === 'stopped' ? 'stopped after --run-for' : `exit ${end}`
}
