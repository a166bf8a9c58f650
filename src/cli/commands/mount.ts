import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { closeSync, fstatSync, openSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Command } from 'commander'
import { EdgestarError, isEdgestarError } from '../../errors.js'
import { installBandwidthControl } from '../../fetch/index.js'
import {
  checkMountpointExists,
  FSNAME_PREFIX,
  FULL_READ_AHEAD_KIB,
  findFuseMounts,
  type ImageView,
  LAZY_READ_AHEAD_KIB,
  type MountOptions,
  mountImage,
  openLocalView,
  openStoreView,
} from '../../fs/index.js'
import { type Logger, moduleLogger } from '../../log.js'
import type { ImageRow } from '../../store/index.js'
import {
  addCommonOptions,
  addFetchOptions,
  type CommonOptions,
  type FetchOptions,
  openServices,
  parseSeconds,
  type Services,
  settingsFrom,
} from '../options.js'
import { printResult } from '../output.js'

/** A view ready to mount, with what starts after the mount and what stops with it. */
interface Served {
  view: ImageView
  label: string
  /** True when every chunk is already cached (the mount then gets its full read-ahead). */
  isComplete(): boolean
  /** Starts fetching what is missing; `onComplete` runs once the image is whole. */
  start(onComplete: () => void): void
  stop(): Promise<void>
}

interface MountCommandOptions extends CommonOptions, FetchOptions {
  layer: string[]
  detach?: boolean
  logFile?: string
  allowOther?: boolean
  attrTimeout: string
  entryTimeout: string
  kernelCache: boolean
}

const READY_TIMEOUT_MS = 120_000
const WATCH_INTERVAL_MS = 2000

const HELP_AFTER = `
Kernel caching (defaults chosen for speed; an image never changes while mounted):
  attributes and names are cached for --attr-timeout/--entry-timeout seconds (default 3600),
  and file pages stay in the kernel page cache across opens (kernel_cache). Only verified
  bytes are ever served, so cached pages are always right. --no-kernel-cache turns it off.
  --allow-other lets other users (a container's uid) use the mount; the kernel still checks
  permissions against the image's modes (default_permissions).

Stopping: Ctrl-C, SIGTERM, or \`edgestar umount DIR\` unmount cleanly. A mount left by a
killed edgestar is detected and cleared by the next \`edgestar mount\` of the same DIR.
See docs/fuse.md.`

/** `edgestar mount REF DIR`: serves an image read-only through FUSE until stopped. */
export function register(program: Command): void {
  const command = program
    .command('mount')
    .description(
      'mount an image read-only at DIR (merged layers, whiteouts applied), fetching file ' +
        'chunks on first read. Stays in the foreground until Ctrl-C, SIGTERM or ' +
        '`edgestar umount DIR`; --detach runs it in the background.',
    )
    .argument('<ref-or-dir>', 'image reference (or, with --layer, the mount point)')
    .argument('[dir]', 'mount point (an empty directory)')
    .option(
      '--layer <blob>',
      'mount a local layer blob instead of an image; repeat, bottom layer first',
      (blob: string, blobs: string[]) => [...blobs, blob],
      [] as string[],
    )
    .option('--detach', 'serve the mount from a background process and return once it is ready')
    .option('--log-file <path>', 'with --detach: where the background process logs')
    .option('--allow-other', 'let other users (a container running as non-root) access the mount')
    .option('--attr-timeout <seconds>', 'kernel attribute cache lifetime', '3600')
    .option('--entry-timeout <seconds>', 'kernel name (and negative lookup) cache lifetime', '3600')
    .option('--no-kernel-cache', 'drop file pages from the kernel cache at each open')
    .addHelpText('after', HELP_AFTER)
  addFetchOptions(addCommonOptions(command)).action(
    async (first: string, second: string | undefined, options: MountCommandOptions) => {
      const { ref, dir } = splitArguments(first, second, options)
      if (options.detach) return detach(dir, options)
      // Before any registry request: a typo in DIR should not wait on the network first.
      await checkMountpointExists(resolve(dir))
      // From here on a signal never kills the process with its mount half made.
      const stopRequest = new StopRequest(moduleLogger('fs', { mountpoint: resolve(dir) }))

      const served =
        ref === undefined ? await serveLayers(options) : await serveImage(ref, dir, options)
      try {
        const mounted = await mountImage(served.view, dir, {
          ...mountOptions(options),
          readAheadKiB: served.isComplete() ? FULL_READ_AHEAD_KIB : LAZY_READ_AHEAD_KIB,
        })
        printResult(
          options,
          { ok: true, mountpoint: mounted.mountpoint, pid: process.pid },
          () => `mounted ${served.label} at ${mounted.mountpoint} (Ctrl-C to unmount)`,
        )
        served.start(() => void mounted.setReadAhead(FULL_READ_AHEAD_KIB))
        await untilStopped(mounted.mountpoint, stopRequest)
        await mounted.unmount()
      } finally {
        await served.stop()
      }
    },
  )
}

function splitArguments(
  first: string,
  second: string | undefined,
  options: MountCommandOptions,
): { ref?: string; dir: string } {
  const hasLayers = options.layer.length > 0
  if (hasLayers && second === undefined) return { dir: first }
  if (!hasLayers && second !== undefined) return { ref: first, dir: second }
  throw new EdgestarError(
    'EDGESTAR_CLI_USAGE',
    hasLayers ? 'give only DIR with --layer' : 'give an image reference and DIR',
    { hint: 'usage: edgestar mount REF DIR, or edgestar mount --layer BLOB... DIR' },
  )
}

async function serveLayers(options: MountCommandOptions): Promise<Served> {
  const view = await openLocalView(options.layer.map((path) => resolve(path)))
  return {
    view,
    label: options.layer.join(' '),
    isComplete: () => true,
    start: () => {},
    stop: () => view.close(),
  }
}

/**
 * The store-backed view of image `ref` as the registry names it now (the image recorded
 * on this device when the registry cannot be reached); once mounted, the prefetch set and
 * then, unless --no-background, the rest of the image is fetched under the bandwidth cap
 * and every layer checked against its diffID.
 */
async function serveImage(ref: string, dir: string, options: MountCommandOptions): Promise<Served> {
  const services = openServices(settingsFrom(options))
  const removeControl = installBandwidthControl(services.scheduler, services.bandwidthControlFile)
  try {
    // Asked of the registry each time (a tag may have moved since it was recorded); the
    // recorded image serves only when the registry cannot be reached, and that is logged.
    const image = await services.images.resolveOrRecorded(ref)
    const view = await openStoreView({
      dbPath: services.store.dbPath,
      layerDigests: image.layers,
      read: services.images.readLayerFile,
    })
    // Pinned while served, so `cache gc` (or eviction for room) keeps its chunks; the pin
    // records this pid, so a killed mount's pin stops counting by itself.
    const pinId = services.store.pins.add(image.id, `mount:${resolve(dir)}`)
    let isStopping = false
    return {
      view,
      label: ref,
      isComplete: () => {
        const progress = services.images.progress(image)
        return progress.totalBytes > 0 && progress.presentBytes >= progress.totalBytes
      },
      start: (onComplete) =>
        void fetchInBackground(services, image, () => isStopping).then((complete) => {
          if (complete) onComplete()
        }),
      stop: async () => {
        isStopping = true
        removeControl()
        services.store.pins.remove(pinId)
        await view.close()
        await services.close()
      },
    }
  } catch (err) {
    removeControl()
    await services.close()
    throw err
  }
}

// Errors once the mount is stopping are the scheduler and store closing under the fetch
// (a layer check may be reading the store): expected, not worth a warning.
async function fetchInBackground(
  services: Services,
  image: ImageRow,
  isStopping: () => boolean,
): Promise<boolean> {
  const log = moduleLogger('fs', { reference: image.reference })
  try {
    await Promise.all(image.layers.map((layer) => services.scheduler.prefetch(layer)))
    if (!services.config.backgroundFetch) return false
    const progress = await services.images.pull(image, { priority: 'background' })
    log.info(
      { presentBytes: progress.presentBytes, verifiedLayers: progress.verifiedLayers },
      'image complete',
    )
    return true
  } catch (err) {
    if (isStopping() || isEdgestarError(err, 'EDGESTAR_FETCH_CLOSED')) return false
    log.warn({ err }, 'background fetch stopped')
    return false
  }
}

function mountOptions(options: MountCommandOptions): MountOptions {
  return {
    allowOther: options.allowOther ?? false,
    attrTimeoutSec: parseSeconds('--attr-timeout', options.attrTimeout),
    entryTimeoutSec: parseSeconds('--entry-timeout', options.entryTimeout),
    kernelCache: options.kernelCache,
  }
}

/** Resolves on SIGINT/SIGTERM, or when the mount disappears (`umount -l` from outside). */
async function untilStopped(mountpoint: string, stopRequest: StopRequest): Promise<void> {
  const watch = setInterval(() => {
    findFuseMounts(mountpoint).then(
      (mounts) => {
        if (mounts.length === 0) stopRequest.stop('mount gone')
      },
      () => {},
    )
  }, WATCH_INTERVAL_MS)
  await stopRequest.requested
  clearInterval(watch)
}

/**
 * SIGINT and SIGTERM, caught from before the mount is made: one that comes while the
 * mount is being set up ends it as soon as it is up. The handlers stay installed: a second
 * signal while unmounting is logged, not fatal (the default action would kill the process
 * and leave a stale mount).
 */
class StopRequest {
  readonly requested: Promise<void>
  #done!: () => void
  #isStopping = false

  constructor(private readonly log: Logger) {
    this.requested = new Promise((done) => {
      this.#done = done
    })
    process.on('SIGINT', () => this.stop('SIGINT'))
    process.on('SIGTERM', () => this.stop('SIGTERM'))
  }

  stop(reason: string): void {
    if (this.#isStopping) {
      if (reason !== 'mount gone')
        this.log.warn({ signal: reason }, 'unmount already under way; SIGKILL forces it')
      return
    }
    this.#isStopping = true
    this.log.info({ signal: reason }, 'unmount requested')
    this.#done()
  }
}

/** Re-runs this command without --detach in a background process and waits for the mount. */
async function detach(dir: string, options: MountCommandOptions): Promise<void> {
  const mountpoint = resolve(dir)
  // Refused here, before a background process and its log are made.
  await checkMountpointExists(mountpoint)
  const logFile = options.logFile ?? defaultLogFile(mountpoint)
  // Without --json the child prints a failure as text on stderr, into the log, where
  // childError finds it (its stdout goes nowhere).
  const args = process.argv.slice(1).filter((arg) => arg !== '--detach' && arg !== '--json')
  const log = openSync(logFile, 'a')
  const logStart = fstatSync(log).size
  const child = spawn(process.execPath, [...process.execArgv, ...args], {
    detached: true,
    stdio: ['ignore', 'ignore', log],
  })
  closeSync(log)
  let exited: number | null = null
  child.on('exit', (code) => {
    exited = code ?? 1
  })

  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline && exited === null) {
    const mounts = await findFuseMounts(mountpoint)
    if (mounts.some((mount) => mount.source === `${FSNAME_PREFIX}${child.pid}`)) {
      child.unref()
      printResult(
        options,
        { ok: true, mountpoint, pid: child.pid, logFile },
        () =>
          `mounted at ${mountpoint} (pid ${child.pid}, log ${logFile}); \`edgestar umount ${dir}\` stops it`,
      )
      return
    }
    await sleep(100)
  }

  if (exited === null) child.kill('SIGTERM')
  throw (
    (await childError(logFile, logStart)) ??
    new EdgestarError(
      'EDGESTAR_FS_MOUNT_FAILED',
      exited === null
        ? `the background mount at ${mountpoint} was not ready within ${READY_TIMEOUT_MS / 1000} s`
        : `the background mount at ${mountpoint} exited (code ${exited}) before it was ready`,
      { hint: `see ${logFile}` },
    )
  )
}

// Named after the whole mount point (last component for reading, a hash for uniqueness):
// two `mnt` directories must not share a log.
function defaultLogFile(mountpoint: string): string {
  const hash = createHash('sha256').update(mountpoint).digest('hex').slice(0, 8)
  return join(tmpdir(), `edgestar-mount-${basename(mountpoint) || 'root'}-${hash}.log`)
}

/**
 * The error the background process printed (`error CODE: message` and `hint: ...`, see
 * printErrorText) in its part of the log, as an EdgestarError with the same code; the
 * hint also names the log.
 */
async function childError(logFile: string, start: number): Promise<EdgestarError | undefined> {
  const text = await readFile(logFile)
    .then((bytes) => bytes.subarray(start).toString('utf8'))
    .catch(() => '')
  const lines = text.split('\n')
  const at = lines.findLastIndex((line) => /^error EDGESTAR_[A-Z0-9_]+: /.test(line))
  if (at < 0) return undefined

  const match = /^error (EDGESTAR_[A-Z0-9_]+): (.*)$/.exec(lines[at]!)!
  const hint = /^hint: (.*)$/.exec(lines[at + 1] ?? '')?.[1]
  return new EdgestarError(match[1]!, match[2]!, {
    hint: hint === undefined ? `see ${logFile}` : `${hint} (background mount log: ${logFile})`,
  })
}
