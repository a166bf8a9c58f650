import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { EdgestarError } from '../errors.js'
import type { ConvertFormat } from '../estargz/index.js'
import { mountImage, openStoreView } from '../fs/index.js'
import type { ImageService } from '../images/index.js'
import { moduleLogger } from '../log.js'
import { convertImage, type PushImageResult, type RegistryClient } from '../registry/index.js'
import {
  Container,
  type ContainerEvent,
  detectRuntime,
  type ImageRunConfig,
  type NetworkMode,
  readLogs,
} from '../runtime/index.js'
import type { Store } from '../store/index.js'
import { AccessRecorder } from './access-recorder.js'

const log = moduleLogger('optimize')

/** What `optimizeImage` needs from an opened state directory. */
export interface OptimizeServices {
  store: Store
  registry: RegistryClient
  images: ImageService
  stateDir: string
}

/** Options of `optimizeImage`. */
export interface OptimizeOptions {
  source: string
  destination: string
  /** Replaces the image's Entrypoint and Cmd for the recording run. */
  command?: string[]
  /** The recording run is stopped after this long if it has not exited by itself. */
  runForMs: number
  network: NetworkMode
  format?: ConvertFormat
  chunkSizeBytes?: number
  /** Push even when the recording run exits non-zero (a run stopped by `runForMs` is fine). */
  allowFailure?: boolean
  /** Progress lines for a human (`edgestar optimize` prints them on stderr). */
  onStep?: (message: string) => void
}

/** What `optimizeImage` did. */
export interface OptimizeResult {
  /** Files the workload read, in the order of their first read: the prefetch set. */
  prioritized: string[]
  /** How the recording run ended: its exit code, or `stopped` when it ran out of time. */
  recordingEnd: number | 'stopped'
  /** The last lines the workload printed (stdout and stderr, interleaved). */
  outputTail: string[]
  pushed: PushImageResult | undefined
}

/**
 * Workload-based prefetch: mounts SOURCE lazily, runs its command (or `command`) in a
 * container for at most `runForMs`, records the files it read and in what order, then
 * converts every layer with those files prioritized and pushes DESTINATION. Plain gzip or
 * zstd images are converted too. Throws the codes of the image service, the runtime, the
 * converter and the registry; EDGESTAR_OPTIMIZE_WORKLOAD_FAILED when the run exited non-zero
 * (unless `allowFailure`), EDGESTAR_OPTIMIZE_NOTHING_READ when it read no file.
 */
export async function optimizeImage(
  services: OptimizeServices,
  options: OptimizeOptions,
): Promise<OptimizeResult> {
  const step = options.onStep ?? (() => {})
  step(`resolving ${options.source}`)
  const image = await services.images.resolve(options.source)
  const config = (image.config as { config?: ImageRunConfig } | null)?.config ?? {}

  const workDir = await mkdtemp(join(services.stateDir, 'optimize-'))
  try {
    const recording = await recordWorkload(services, image.layers, config, workDir, options)
    const end = recording.recordingEnd
    if (end !== 'stopped' && end !== 0 && !options.allowFailure)
      throw workloadFailed(options.source, end, recording.outputTail)
    if (recording.prioritized.length === 0) throw nothingRead(options.source)
    step(`the workload read ${recording.prioritized.length} files; converting with them first`)

    const converted = await convertImage(services.registry, options.source, {
      pushTo: options.destination,
      convert: {
        prioritizedPaths: recording.prioritized,
        // A file of the prefetch set lives in one layer only; the others skip it.
        allowMissingPrioritized: true,
        ...(options.format === undefined ? {} : { format: options.format }),
        ...(options.chunkSizeBytes === undefined ? {} : { chunkSizeBytes: options.chunkSizeBytes }),
      },
      onLayer: ({ index, count }) => step(`layer ${index + 1} of ${count} converted`),
    })
    step(`pushed ${options.destination}`)
    return { ...recording, pushed: converted.pushed }
  } finally {
    await rm(workDir, { recursive: true, force: true })
  }
}

async function recordWorkload(
  services: OptimizeServices,
  layerDigests: string[],
  config: ImageRunConfig,
  workDir: string,
  options: OptimizeOptions,
): Promise<Omit<OptimizeResult, 'pushed'>> {
  const step = options.onStep ?? (() => {})
  const view = await openStoreView({
    dbPath: services.store.dbPath,
    layerDigests,
    read: services.images.readLayerFile,
  })
  const recorder = new AccessRecorder(view)
  const lowerDir = join(workDir, 'lower')
  await mkdir(lowerDir)
  const mounted = await mountImage(recorder, lowerDir, { allowOther: true })

  try {
    const runtime = await detectRuntime('auto', join(workDir, 'runtime'))
    const container = new Container({
      id: `edgestar-optimize-${process.pid}`,
      containerDir: join(workDir, 'container'),
      lowerDirs: [lowerDir],
      runtime,
      image: config,
      ...(options.command === undefined ? {} : { overrides: { command: options.command } }),
      network: options.network,
      restart: 'no',
    })
    step(`recording: running the workload for up to ${Math.round(options.runForMs / 1000)} s`)
    let recordingEnd: number | 'stopped'
    let outputTail: string[]
    try {
      recordingEnd = await runBounded(container, options.runForMs)
      // Read before removal: the logs live in the container directory.
      outputTail = await lastLines(container.logDir, OUTPUT_TAIL_LINES)
    } finally {
      // Also after a failed start: its overlay must go before the mount and the work dir.
      await container
        .remove()
        .catch((err: unknown) => log.warn({ err }, 'container removal failed'))
    }
    log.info({ files: recorder.accessedPaths.length, recordingEnd }, 'workload recorded')
    return { prioritized: recorder.accessedPaths, recordingEnd, outputTail }
  } finally {
    await mounted.unmount()
  }
}

/** Starts the container and resolves with its exit code, or `stopped` after `runForMs`. */
async function runBounded(container: Container, runForMs: number): Promise<number | 'stopped'> {
  const exited = new Promise<number>((resolve, reject) => {
    container.on('event', (event: ContainerEvent) => {
      if (event.type === 'exited') resolve(event.exit.exitCode)
      if (event.type === 'start-failed') reject(event.error)
    })
  })
  await container.start()

  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<'stopped'>((resolve) => {
    timer = setTimeout(() => resolve('stopped'), runForMs)
  })
  const end = await Promise.race([exited, timedOut])
  clearTimeout(timer)
  if (end === 'stopped') await container.stop()
  return end
}

// Enough of a failing workload's output to show its error without flooding the terminal.
const OUTPUT_TAIL_LINES = 10

async function lastLines(logDir: string, count: number): Promise<string[]> {
  const text = (await readLogs(logDir, 3).catch(() => Buffer.alloc(0))).toString('utf8')
  return text
    .trimEnd()
    .split('\n')
    .slice(-count)
    .filter((line) => line !== '')
}

function workloadFailed(source: string, exitCode: number, tail: string[]): EdgestarError {
  const output =
    tail.length === 0
      ? ' (it printed nothing)'
      : `; its last ${tail.length} line(s) of output:\n${tail.map((l) => `  ${l}`).join('\n')}`
  return new EdgestarError(
    'EDGESTAR_OPTIMIZE_WORKLOAD_FAILED',
    `the recorded workload of ${source} exited with code ${exitCode}, so the files it read ` +
      `may not be those a working start needs${output}`,
    {
      hint:
        'fix the command (`edgestar optimize SRC DST -- CMD ARGS...`), or pass ' +
        '--allow-failure to push anyway',
    },
  )
}

function nothingRead(source: string): EdgestarError {
  return new EdgestarError(
    'EDGESTAR_OPTIMIZE_NOTHING_READ',
    `the workload of ${source} read no file from the image, so there is nothing to prioritize`,
    {
      hint:
        'check the image command runs (edgestar logs of a test deploy), or give one with ' +
        '`edgestar optimize SRC DST -- CMD ARGS...`; a longer --run-for may help',
    },
  )
}
