import { EdgestarError } from '../errors.js'
import { FetchScheduler, type LinkChange } from '../fetch/index.js'
import {
  FULL_READ_AHEAD_KIB,
  LAZY_READ_AHEAD_KIB,
  type Mounted,
  mountImage,
  openStoreView,
} from '../fs/index.js'
import { ImageService } from '../images/index.js'
import { moduleLogger } from '../log.js'
import {
  formatPlatform,
  hostPlatform,
  type Platform,
  parsePlatform,
  platformMatches,
  RegistryClient,
} from '../registry/index.js'
import type { ImageRunConfig } from '../runtime/index.js'
import type { ImageRow, Store } from '../store/index.js'
import type { AgentConfig } from './config.js'
import { RateWindow } from './rate-window.js'
import type {
  ImageBackend,
  ImageProgress,
  LinkState,
  LinkStatus,
  MountedImage,
  ResolvedImage,
} from './types.js'

const RATE_SAMPLE_MS = 1000
/** The fetch rate `status` shows is averaged over this window. */
const RATE_WINDOW_MS = 10_000
/** How often a mount of an incomplete image checks whether its chunks are all cached. */
const COMPLETION_CHECK_MS = 5000

/**
 * The agent's real image backend: the registry client, one fetch scheduler, the image
 * service, and FUSE views over the store. Mounting an image also starts its background
 * trickle (every unit, then the diffID check), held to the bandwidth cap.
 */
export class LazyImageBackend implements ImageBackend {
  readonly store: Store
  readonly registry: RegistryClient
  readonly scheduler: FetchScheduler
  readonly images: ImageService
  private readonly pinIds = new Map<string, number>()
  private readonly log = moduleLogger('agent')
  private waitMs: number
  private readonly platform: Platform | undefined
  private rateTimer: NodeJS.Timeout
  private readonly rate = new RateWindow(RATE_WINDOW_MS)
  /** The limit the agent opened the store with (0: none). */
  private readonly cacheLimitBytes: number

  constructor(store: Store, config: AgentConfig) {
    this.store = store
    this.registry = new RegistryClient({ insecureRegistries: config.insecureRegistries })
    this.waitMs = config.offlineWaitMs
    this.cacheLimitBytes = config.cacheLimitBytes ?? 0
    this.platform = config.platform === undefined ? undefined : parsePlatform(config.platform)
    this.scheduler = new FetchScheduler({
      store,
      registry: this.registry,
      backgroundRateBytesPerSec: config.bandwidthBytesPerSec ?? 0,
      offlineWaitMs: config.offlineWaitMs,
    })
    this.images = new ImageService({
      store,
      registry: this.registry,
      scheduler: this.scheduler,
      allowUnverified: config.allowUnverified,
      backgroundOrder: config.backgroundOrder,
      ...(config.platform === undefined ? {} : { platform: config.platform }),
    })
    this.sampleRate()
    this.rateTimer = setInterval(() => this.sampleRate(), RATE_SAMPLE_MS)
    this.rateTimer.unref()
  }

  /**
   * Offline, the image recorded for `reference` is used when its index is local. Also
   * throws EDGESTAR_AGENT_WRONG_PLATFORM for an image built for another platform.
   */
  async resolve(reference: string): Promise<ResolvedImage> {
    const image = await this.images.resolveOrRecorded(reference)
    const wanted = this.platform ?? hostPlatform()
    if (!platformMatches(parsePlatform(image.platform), wanted)) {
      throw new EdgestarError(
        'EDGESTAR_AGENT_WRONG_PLATFORM',
        `${reference} is built for ${image.platform}, not for this device (${formatPlatform(wanted)})`,
        { hint: 'deploy an image (or an index) that has a variant for this platform' },
      )
    }
    return this.toResolved(image)
  }

  async open(imageId: string): Promise<ResolvedImage> {
    return this.toResolved(this.store.images.require(Number(imageId)))
  }

  async mount(imageId: string, mountpoint: string): Promise<MountedImage> {
    const image = this.store.images.require(Number(imageId))
    const view = await openStoreView({
      dbPath: this.store.dbPath,
      layerDigests: image.layers,
      read: this.images.readLayerFile,
    })
    const isComplete = await this.isComplete(image)
    // allowOther: the container may run as a user other than root.
    const mounted = await mountImage(view, mountpoint, {
      allowOther: true,
      readAheadKiB: isComplete ? FULL_READ_AHEAD_KIB : LAZY_READ_AHEAD_KIB,
    })
    for (const layer of image.layers) void this.scheduler.prefetch(layer).catch(() => undefined)
    this.scheduler.startBackground(this.images.layersInBackgroundOrder(image), {
      forDiffID: true,
    })
    return isComplete ? mounted : this.raiseReadAheadWhenComplete(image, mounted)
  }

  // The background fetch has no completion event of its own here: look every few seconds,
  // and give the mount its full read-ahead once every chunk is cached.
  private raiseReadAheadWhenComplete(image: ImageRow, mounted: Mounted): MountedImage {
    const timer = setInterval(() => {
      void this.isComplete(image).then(
        (isComplete) => {
          if (!isComplete) return
          clearInterval(timer)
          void mounted.setReadAhead(FULL_READ_AHEAD_KIB)
        },
        () => {},
      )
    }, COMPLETION_CHECK_MS)
    timer.unref()
    return {
      mountpoint: mounted.mountpoint,
      unmount: () => {
        clearInterval(timer)
        return mounted.unmount()
      },
    }
  }

  async prefetch(imageId: string): Promise<void> {
    const image = this.store.images.require(Number(imageId))
    await this.images.pull(image, { priority: 'background' })
  }

  // `progress(...).isComplete` from the store's reader thread: summing every unit row of
  // an image takes milliseconds, too long for the event loop that serves the mounts.
  private async isComplete(image: ImageRow): Promise<boolean> {
    const progress = await this.images.progressAsync(image)
    return progress.totalBytes > 0 && progress.presentBytes >= progress.totalBytes
  }

  // From the store's reader thread, like `isComplete`: a status poll sums every unit row.
  async progress(imageId: string): Promise<ImageProgress> {
    const image = this.store.images.get(Number(imageId))
    if (image === undefined) return { fetchedBytes: 0, totalBytes: 0, isComplete: false }
    const progress = await this.images.progressAsync(image)
    return {
      fetchedBytes: progress.presentBytes,
      totalBytes: progress.totalBytes,
      isComplete: progress.totalBytes > 0 && progress.presentBytes >= progress.totalBytes,
    }
  }

  // TODO(agent): the pin is inserted on the main connection, on the event loop that
  // serves FUSE (one short statement per deploy and removal; the store's other agent
  // writes go through its writer thread).
  retain(imageId: string, holder: string): void {
    if (this.pinIds.has(holder)) return
    this.pinIds.set(holder, this.store.pins.add(Number(imageId), holder))
  }

  release(_imageId: string, holder: string): void {
    const pinId = this.pinIds.get(holder)
    if (pinId === undefined) return
    this.store.pins.remove(pinId)
    this.pinIds.delete(holder)
  }

  async gc(): Promise<{ freedBytes: number }> {
    const report = await this.store.gcAsync(0)
    this.log.info({ ...report }, 'cache collected')
    return { freedBytes: report.evictedBytes }
  }

  setBandwidth(capBytesPerSec: number | null): void {
    this.scheduler.setBandwidth(capBytesPerSec ?? 0)
  }

  bandwidth(): number | null {
    const rate = this.scheduler.bandwidth
    return rate === 0 ? null : rate
  }

  setOfflineWaitMs(waitMs: number): void {
    this.scheduler.setOfflineWaitMs(waitMs)
    this.waitMs = waitMs
  }

  offlineWaitMs(): number {
    return this.waitMs
  }

  link(): LinkStatus {
    return {
      state: this.scheduler.linkState,
      rateBytesPerSec: this.rate.rateBytesPerSec(),
      rateWindowSec: this.rate.windowMs / 1000,
    }
  }

  onLinkChange(listener: (state: LinkState) => void): () => void {
    const onLink = (change: LinkChange): void => listener(change.state)
    this.scheduler.on('link', onLink)
    return () => this.scheduler.off('link', onLink)
  }

  async cacheUsage(): Promise<{ usedBytes: number; limitBytes?: number }> {
    const usage = await this.store.queries.cacheUsage()
    return this.cacheLimitBytes > 0
      ? { usedBytes: usage.presentBytes, limitBytes: this.cacheLimitBytes }
      : { usedBytes: usage.presentBytes }
  }

  async close(): Promise<void> {
    clearInterval(this.rateTimer)
    // Chunk writes under way commit their rows before the agent closes the store (a file
    // without its row is removed as a stray at the next start, and fetched again).
    await this.scheduler.close()
    for (const pinId of this.pinIds.values()) this.store.pins.remove(pinId)
    this.pinIds.clear()
  }

  private sampleRate(): void {
    const stats = this.scheduler.stats()
    const total = stats.demandBytes + stats.prefetchBytes + stats.backgroundBytes
    this.rate.add(total, performance.now())
  }

  private async toResolved(image: ImageRow): Promise<ResolvedImage> {
    const config = (image.config as { config?: ImageRunConfig } | null)?.config ?? {}
    return {
      imageId: String(image.id),
      reference: image.reference,
      manifestDigest: image.manifestDigest,
      config,
      totalBytes: (await this.images.progressAsync(image)).totalBytes,
    }
  }
}

/** The default BackendFactory of `edgestar agent`. */
export async function createLazyBackend(store: Store, config: AgentConfig): Promise<ImageBackend> {
  return new LazyImageBackend(store, config)
}
