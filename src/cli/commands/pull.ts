import cliProgress from 'cli-progress'
import type { Command } from 'commander'
import { formatBytes, installBandwidthControl } from '../../fetch/index.js'
import type { ImageProgress } from '../../images/index.js'
import {
  addCommonOptions,
  addFetchOptions,
  type CommonOptions,
  type FetchOptions,
  openServices,
  settingsFrom,
} from '../options.js'
import { isInteractive, printResult } from '../output.js'

interface PullOptions extends CommonOptions, FetchOptions {
  lazy?: boolean
}

/** `edgestar pull REF [--lazy]`: record an image's metadata and, without --lazy, fetch it all. */
export function register(program: Command): void {
  const command = program
    .command('pull')
    .description('fetch an image: its metadata and TOCs, and without --lazy every chunk (verified)')
    .argument('<ref>', 'image reference, e.g. 127.0.0.1:5000/app:1')
    .option('--lazy', 'record metadata and TOCs only; chunks are fetched when read')
  addFetchOptions(addCommonOptions(command)).action(async (ref: string, options: PullOptions) => {
    const services = openServices(settingsFrom(options))
    const removeControl = installBandwidthControl(services.scheduler, services.bandwidthControlFile)
    try {
      const started = Date.now()
      const image = await services.images.resolve(ref)
      let result = services.images.progress(image)
      if (!options.lazy) {
        const bar = isInteractive() && !options.json ? progressBar(result) : undefined
        // A pull is the operator's explicit ask: it runs even with --no-background, and is
        // held to the cap only when one is set.
        services.scheduler.setBackgroundEnabled(true)
        const priority = services.config.bandwidthBytesPerSec > 0 ? 'background' : 'prefetch'
        result = await services.images.pull(image, {
          priority,
          onProgress: (progress) =>
            bar?.update(progress.presentBytes, rateFields(progress, started)),
        })
        bar?.update(result.presentBytes, rateFields(result, started))
        bar?.stop()
      }
      const stats = services.registry.stats()
      const body = {
        ok: true,
        reference: image.reference,
        manifestDigest: image.manifestDigest,
        layers: image.layers.length,
        lazy: Boolean(options.lazy),
        presentBytes: result.presentBytes,
        totalBytes: result.totalBytes,
        verifiedLayers: result.verifiedLayers,
        bytesFetched: stats.bytesReceived,
        requests: stats.requests,
        seconds: (Date.now() - started) / 1000,
      }
      printResult(
        options,
        body,
        () =>
          `${image.reference} ${image.manifestDigest}\n` +
          `${formatBytes(result.presentBytes)} of ${formatBytes(result.totalBytes)} local, ` +
          `${result.verifiedLayers}/${image.layers.length} layers verified, ` +
          `${formatBytes(stats.bytesReceived)} fetched in ${body.seconds.toFixed(1)} s`,
      )
    } finally {
      removeControl()
      await services.close()
    }
  })
}

function progressBar(initial: ImageProgress): cliProgress.SingleBar {
  const bar = new cliProgress.SingleBar(
    {
      format: '{bar} {percentage}% | {done} / {total} | {rate}/s | ETA {eta_formatted}',
      stream: process.stderr,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  )
  bar.start(initial.totalBytes, initial.presentBytes, {
    done: formatBytes(initial.presentBytes),
    total: formatBytes(initial.totalBytes),
    rate: '0 B',
  })
  return bar
}

function rateFields(progress: ImageProgress, startedMs: number): Record<string, string> {
  const seconds = Math.max(0.001, (Date.now() - startedMs) / 1000)
  return {
    done: formatBytes(progress.presentBytes),
    total: formatBytes(progress.totalBytes),
    rate: formatBytes(Math.round(progress.presentBytes / seconds)),
  }
}
