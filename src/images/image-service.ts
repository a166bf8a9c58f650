import { EdgestarError, isEdgestarError } from '../errors.js'
import { detectLayerFormat, ESTARGZ_ERRORS, type LayerIndex, openLayer } from '../estargz/index.js'
import {
  type BackgroundOrder,
  type FetchPriority,
  type FetchScheduler,
  layersInBackgroundOrder,
} from '../fetch/index.js'
import { moduleLogger } from '../log.js'
import {
  classifyLayer,
  formatPlatform,
  parseReference,
  type RegistryClient,
  type RequestPatience,
  type ResolvedImage,
  type ResolvedLayer,
} from '../registry/index.js'
import type { ImageRow, LayerVerification, Progress, Store } from '../store/index.js'
import { lookupFile, type MergedFile } from './merged-lookup.js'
import { recordPlainLayer } from './plain-layer.js'

/** Milliseconds between two progress reports of `pull`. */
const PROGRESS_INTERVAL_MS = 250

/**
 * How long a tag lookup may take when a recorded image can stand in: one attempt, 5 s for
 * headers. A registry that is up answers a manifest request well within that, even over a
 * slow cellular link; one that accepts connections and never answers (a hung proxy, a
 * dead VPN peer) would otherwise hold a deploy for 5 attempts of 30 s. A transient reset
 * is not retried either: the device then runs its recorded image, which the warning says.
 */
const RECORDED_FALLBACK_PATIENCE: RequestPatience = { maxAttempts: 1, timeoutMs: 5000 }

/** Options of an ImageService. */
export interface ImageServiceOptions {
  store: Store
  registry: RegistryClient
  scheduler: FetchScheduler
  /** Serve layers with nothing to verify lazily (the operator accepts the risk). */
  allowUnverified?: boolean
  /** Platform to resolve (`os/arch[/variant]`); default the machine's. */
  platform?: string
  /** Which layers a pull takes first (default `bottom-first`, the manifest's order). */
  backgroundOrder?: BackgroundOrder
}

/** How much of an image is local. */
export interface ImageProgress extends Progress {
  image: ImageRow
  /** Layers checked against their diffID. */
  verifiedLayers: number
}

const log = moduleLogger('images')

// The largest piece a file is read in; bounds memory for `cat` of a big file.
const READ_PIECE_BYTES = 4 * 1024 * 1024

/**
 * Joins registry, store and fetch: resolves a reference and records the image, its
 * layers (classified as lazily verifiable, to be fetched whole, or explicitly unverified)
 * and their TOC rows; reads files lazily; pulls whole images and verifies their layers.
 */
export class ImageService {
  readonly store: Store
  readonly registry: RegistryClient
  readonly scheduler: FetchScheduler
  private readonly allowUnverified: boolean
  private readonly platform: string | undefined
  private readonly backgroundOrder: BackgroundOrder

  constructor(options: ImageServiceOptions) {
    this.store = options.store
    this.registry = options.registry
    this.scheduler = options.scheduler
    this.allowUnverified = options.allowUnverified ?? false
    this.platform = options.platform
    this.backgroundOrder = options.backgroundOrder ?? 'bottom-first'
  }

  /** The image's layers in the order its background fetch takes them. */
  layersInBackgroundOrder(image: ImageRow): string[] {
    return layersInBackgroundOrder(image.layers, this.backgroundOrder)
  }

  /**
   * The recorded image for `reference` when the store has it (no network: this is what
   * lets a device work offline), otherwise `resolve`. `refresh` always asks the registry.
   */
  async open(reference: string, options: { refresh?: boolean } = {}): Promise<ImageRow> {
    const local = options.refresh ? undefined : this.recordedImage(reference)
    if (local === undefined) return this.resolve(reference)
    this.store.images.touch(local.id)
    return local
  }

  /**
   * Resolves `reference` at the registry and records the image, its layers and every
   * layer's TOC rows (the TOC checked against the manifest's TOC digest annotation).
   * Throws the registry's and estargz's error codes.
   */
  async resolve(reference: string, patience?: RequestPatience): Promise<ImageRow> {
    const options = {
      ...(this.platform === undefined ? {} : { platform: this.platform }),
      ...(patience === undefined ? {} : { patience }),
    }
    const resolved = await this.registry.resolve(reference, options)
    for (const layer of resolved.layers) await this.recordLayer(resolved, layer)
    const image = this.store.images.record({
      reference: resolved.reference.name,
      manifestDigest: resolved.manifestDigest,
      platform: formatPlatform(resolved.platform),
      config: resolved.config,
      layers: resolved.layers.map((layer) => layer.digest),
    })
    log.info({ reference: image.reference, layers: image.layers.length }, 'image recorded')
    return image
  }

  /**
   * `resolve`, or, when the registry cannot be reached, the image this device recorded for
   * `reference` (the same repository and tag, or the same manifest digest) if every layer's
   * index is local: a device that lost its link keeps deploying what it already has. A tag
   * may have moved at the registry since; that is logged. Other errors are thrown as is.
   * A reference by digest that is recorded is answered without asking the registry. With a
   * recorded copy, the tag lookup gets one attempt of RECORDED_FALLBACK_PATIENCE, and a tag
   * that still names the recorded manifest is answered with it (no config or TOC fetched).
   */
  async resolveOrRecorded(reference: string): Promise<ImageRow> {
    // A digest names content that cannot change: a recorded copy needs no registry.
    const isPinned = parseReference(reference).digest !== undefined
    const recorded = this.recordedImage(reference)
    try {
      if (isPinned) return await this.open(reference)
      if (recorded === undefined) return await this.resolve(reference)
      // With a recorded copy to fall back on, a silent registry is given up on quickly, and
      // a tag that still names it costs no blob request (blobs may hang where manifests
      // answer: a CDN, a proxy).
      if (await this.isStillNamed(reference, recorded)) {
        this.store.images.touch(recorded.id)
        return recorded
      }
      return await this.resolve(reference, RECORDED_FALLBACK_PATIENCE)
    } catch (err) {
      if (!isRegistryDown(err)) throw err
      if (recorded === undefined) throw unreachableWithoutCopy(err, reference)
      log.warn(
        { reference, manifestDigest: recorded.manifestDigest, code: err.code },
        'registry unreachable; using the image recorded on this device',
      )
      this.store.images.touch(recorded.id)
      return recorded
    }
  }

  // True when the registry says `reference` still names the manifest of `recorded`.
  private async isStillNamed(reference: string, recorded: ImageRow): Promise<boolean> {
    const digest = await this.registry.manifestDigestOf(reference, {
      ...(this.platform === undefined ? {} : { platform: this.platform }),
      patience: RECORDED_FALLBACK_PATIENCE,
    })
    return digest === recorded.manifestDigest
  }

  // The recorded image a reference names, with every layer's index local: the one recorded
  // under that name, else (for a reference by digest) one with that manifest digest.
  private recordedImage(reference: string): ImageRow | undefined {
    const parsed = parseReference(reference)
    const byDigest =
      parsed.digest === undefined
        ? []
        : this.store.images.list().filter((image) => image.manifestDigest === parsed.digest)
    return [this.store.images.get(parsed.name), ...byDigest].find(
      (image) => image?.layers.every((digest) => this.store.layers.isIndexed(digest)) === true,
    )
  }

  /**
   * Reads the regular file `path` of an image (merged view), `length` bytes from `offset`
   * (default: to the end), fetching only the chunks it needs.
   */
  async readFile(
    image: ImageRow,
    path: string,
    options: { offset?: number; length?: number; priority?: FetchPriority } = {},
  ): Promise<Buffer> {
    const file = this.lookup(image, path)
    const offset = options.offset ?? 0
    const length = Math.max(
      0,
      Math.min(options.length ?? file.entry.size - offset, file.entry.size - offset),
    )
    const parts: Buffer[] = []
    for await (const part of this.readPieces(file, offset, length, options.priority))
      parts.push(part)
    return Buffer.concat(parts)
  }

  /** The same read as a sequence of pieces of at most 4 MiB, for streaming to stdout. */
  async *readPieces(
    file: MergedFile,
    offset: number,
    length: number,
    priority: FetchPriority = 'demand',
  ): AsyncGenerator<Buffer> {
    for (let done = 0; done < length; ) {
      const size = Math.min(READ_PIECE_BYTES, length - done)
      const piece = await this.scheduler.readEntryRange(
        file.layerDigest,
        file.entry.name,
        offset + done,
        size,
        priority,
      )
      if (piece.length === 0) return
      yield piece
      done += piece.length
    }
  }

  /** Finds a regular file in the merged view (whiteouts applied, links followed). */
  lookup(image: ImageRow, path: string): MergedFile {
    return lookupFile(this.store, image.layers, path)
  }

  /**
   * The layer read function the FUSE view uses: bytes of file `name` of one layer,
   * from the cache or by awaiting the scheduler at demand priority.
   */
  readonly readLayerFile = (
    layerDigest: string,
    name: string,
    offset: number,
    length: number,
    into?: Buffer,
  ): Promise<Buffer> =>
    this.scheduler.readEntryRange(layerDigest, name, offset, length, 'demand', into)

  /**
   * Fetches every unit of every layer and checks each layer against its diffID.
   * `onProgress` is called with the image's progress as units arrive (at most every
   * PROGRESS_INTERVAL_MS). Its lookups go to the store's reader thread: an agent pulls
   * while it serves mounts.
   */
  async pull(
    image: ImageRow,
    options: { priority?: FetchPriority; onProgress?: (progress: ImageProgress) => void } = {},
  ): Promise<ImageProgress> {
    // Progress sums every unit row of the image; once per unit would make a pull quadratic.
    let lastReportAt = 0
    let isDone = false
    const onUnit = (): void => {
      const { onProgress } = options
      if (onProgress === undefined || Date.now() - lastReportAt < PROGRESS_INTERVAL_MS) return
      lastReportAt = Date.now()
      // An answer that comes after the pull returned is stale: the caller has moved on.
      this.progressAsync(image).then(
        (progress) => {
          if (!isDone) onProgress(progress)
        },
        () => {},
      )
    }
    this.scheduler.on('unit', onUnit)
    try {
      for (const layer of this.layersInBackgroundOrder(image)) {
        const row = await this.store.queries.layer(layer)
        const isLayerDone =
          row?.state === 'verified' &&
          (await this.store.queries.missingUnits(layer, 1, true)).length === 0
        if (!isLayerDone) await this.scheduler.completeLayer(layer, options.priority ?? 'prefetch')
      }
    } finally {
      isDone = true
      this.scheduler.off('unit', onUnit)
    }
    return this.progressAsync(image)
  }

  /** `progress` from the store's reader thread, off the event loop. */
  async progressAsync(image: ImageRow): Promise<ImageProgress> {
    return { image, ...(await this.store.queries.imageProgress(image.layers)) }
  }

  /**
   * Bytes of an image present versus total (compressed blob bytes, all units), on this
   * thread: it sums every unit row (10 ms for a 7k-entry layer); see `progressAsync`.
   */
  progress(image: ImageRow): ImageProgress {
    const total: ImageProgress = {
      image,
      presentBytes: 0,
      totalBytes: 0,
      presentUnits: 0,
      totalUnits: 0,
      verifiedLayers: 0,
    }
    for (const layer of image.layers) {
      const p = this.store.layers.progress(layer)
      total.presentBytes += p.presentBytes
      total.totalBytes += p.totalBytes
      total.presentUnits += p.presentUnits
      total.totalUnits += p.totalUnits
      if (this.store.layers.get(layer)?.state === 'verified') total.verifiedLayers++
    }
    return total
  }

  private async recordLayer(image: ResolvedImage, layer: ResolvedLayer): Promise<void> {
    if (this.store.layers.isIndexed(layer.digest)) {
      const row = this.store.layers.get(layer.digest)!
      this.store.layers.upsert({ ...row, sourceReference: image.reference.name })
      return
    }
    const verdict = classifyLayer(layer)
    const reader = this.registry.blobReader(image.reference, layer.digest, layer.size)
    let index: LayerIndex
    try {
      index = await openLayer(
        reader,
        verdict.mode === 'lazy' ? { tocDigest: verdict.tocDigest } : {},
      )
    } catch (err) {
      if (!isEdgestarError(err, ESTARGZ_ERRORS.NO_TOC)) throw err
      const format = await detectLayerFormat(reader)
      await recordPlainLayer({
        store: this.store,
        registry: this.registry,
        reference: image.reference,
        layer,
        compression: format === 'zstd' ? 'zstd' : 'gzip',
      })
      return
    }

    const verification = this.verificationOf(verdict.mode, index, layer.digest)
    // TODO(images): the TOC is still fetched, parsed and validated on this thread (a
    // 100k-entry TOC in the JS heap for a moment); only its rows are written elsewhere.
    await this.store.recordLayerIndex(
      {
        digest: layer.digest,
        sizeBytes: layer.size,
        mediaType: layer.mediaType,
        diffID: layer.diffID,
        tocDigest: index.tocDigest,
        tocOffset: index.tocOffset,
        format: index.format,
        verification,
        sourceReference: image.reference.name,
      },
      {
        entries: index.entries,
        chunks: index.chunks.filter((chunk) => !chunk.isZeros),
        blobSizeBytes: layer.size,
      },
    )
  }

  private verificationOf(
    mode: 'lazy' | 'whole',
    index: LayerIndex,
    digest: string,
  ): LayerVerification {
    const hasDigests =
      index.format !== 'stargz-legacy' && index.chunks.every((c) => c.chunkDigest || c.isZeros)
    if (mode === 'lazy' && hasDigests) return 'lazy'
    if (this.allowUnverified) {
      log.warn({ layer: digest }, 'layer served lazily without verification (--allow-unverified)')
      return 'unverified'
    }
    log.info(
      { layer: digest },
      'layer has nothing to verify lazily; it will be fetched whole and checked',
    )
    return 'whole'
  }
}

function isRegistryDown(err: unknown): err is EdgestarError {
  return (
    isEdgestarError(err, 'EDGESTAR_REGISTRY_UNREACHABLE') ||
    isEdgestarError(err, 'EDGESTAR_REGISTRY_SERVER_ERROR')
  )
}

function unreachableWithoutCopy(err: EdgestarError, reference: string): EdgestarError {
  return new EdgestarError(err.code, err.message, {
    hint:
      `${reference} has never been resolved on this device, so there is no local copy to ` +
      'use: reconnect the device (or start the registry) and try again',
    cause: err,
  })
}
