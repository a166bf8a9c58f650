import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { EdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import { BlobLocation, RedirectCache } from './blob-location.js'
import { type BlobReader, HttpBlobReader } from './blob-reader.js'
import { streamBlob } from './blob-stream.js'
import {
  configPlatform,
  type ManifestDocument,
  parseImageConfig,
  parseManifestDocument,
} from './manifest.js'
import { MANIFEST_ACCEPT } from './media-types.js'
import { parseContentRange } from './multipart.js'
import {
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  parsePlatform,
  platformMatches,
} from './platform.js'
import { type BlobSource, type PushBlobOptions, pushBlob, pushManifest } from './push.js'
import { type PushImageInput, type PushImageResult, pushImage } from './push-image.js'
import { parseReference, withDigest } from './reference.js'
import { responseError } from './response-error.js'
import { headerValue, RegistryTransport } from './transport.js'
import type {
  Descriptor,
  ImageIndex,
  ImageManifest,
  ImageReference,
  Platform,
  RegistryClientOptions,
  RegistryStats,
  RequestPatience,
  ResolvedImage,
} from './types.js'

const log = moduleLogger('registry')

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024
const MAX_CONFIG_BYTES = 16 * 1024 * 1024
const DEFAULT_COALESCE_BYTES = 4 * 1024 * 1024
const ATTESTATION_REFERENCE_TYPE = 'vnd.docker.reference.type'

/** A manifest or index as fetched: its digest, media type, raw bytes and parsed form. */
export interface FetchedManifest {
  digest: string
  mediaType: string
  bytes: Buffer
  document: ManifestDocument
}

/**
 * A client for OCI registries (distribution API v2) over pooled keep-alive connections
 * (undici). It handles auth (anonymous bearer, basic, Docker config.json), retries with
 * backoff, redirects (cached per blob), and counts every byte and request it makes.
 * Close it when done to release sockets.
 */
export class RegistryClient {
  readonly options: RegistryClientOptions
  private readonly transport: RegistryTransport
  private readonly redirects = new RedirectCache()
  private readonly noMultiRange = new Set<string>()

  constructor(options: RegistryClientOptions = {}) {
    this.options = options
    this.transport = new RegistryTransport(options)
  }

  /**
   * Resolves a reference to one platform's image: follows an index or manifest list to
   * the wanted platform (default: the machine's), reads the config and pairs each layer
   * with its diffID. Throws EDGESTAR_REGISTRY_NO_PLATFORM (listing what exists),
   * EDGESTAR_REGISTRY_NOT_FOUND, EDGESTAR_REGISTRY_UNAUTHORIZED,
   * EDGESTAR_REGISTRY_BAD_MANIFEST, EDGESTAR_REGISTRY_UNREACHABLE.
   */
  async resolve(
    input: string | ImageReference,
    options: { platform?: Platform | string; patience?: RequestPatience } = {},
  ): Promise<ResolvedImage> {
    const ref = toReference(input)
    const explicit = options.platform !== undefined
    const wanted =
      typeof options.platform === 'string'
        ? parsePlatform(options.platform)
        : normalizePlatform(options.platform ?? hostPlatform())

    const { manifestDigest, manifest, indexDigest } = await this.chooseManifest(
      ref,
      wanted,
      options.patience,
    )

    const configBytes = await this.fetchBlob(ref, manifest.config.digest, MAX_CONFIG_BYTES)
    const config = parseImageConfig(configBytes, ref.name)
    const platform = configPlatform(config)
    if (indexDigest === undefined && !platformMatches(platform, wanted)) {
      if (explicit) throw noPlatform(ref, wanted, [platform])
      log.warn(
        {
          image: ref.name,
          image_platform: formatPlatform(platform),
          device: formatPlatform(wanted),
        },
        'image platform differs from device',
      )
    }

    const diffIds = config.rootfs.diff_ids
    if (diffIds.length !== manifest.layers.length) {
      throw new EdgestarError(
        'EDGESTAR_REGISTRY_BAD_MANIFEST',
        `${ref.name}: the manifest lists ${manifest.layers.length} layers ` +
          `but the config ${diffIds.length} diffIDs`,
      )
    }
    // TODO(registry): a foreign layer's `urls` are passed on but never fetched from;
    // every blob is read from the registry itself.
    const layers = manifest.layers.map((layer, i) => ({
      digest: layer.digest,
      size: layer.size,
      mediaType: layer.mediaType,
      annotations: { ...layer.annotations },
      diffID: diffIds[i] as string,
      ...(layer.urls ? { urls: layer.urls } : {}),
    }))
    const result: ResolvedImage = {
      reference: ref,
      manifestDigest,
      manifest,
      configDigest: manifest.config.digest,
      config,
      platform,
      layers,
    }
    if (indexDigest !== undefined) result.indexDigest = indexDigest
    return result
  }

  /**
   * The digest of the image manifest `input` names for `platform` (the host's by
   * default), through its index if it has one: what `resolve` would record, without
   * fetching the config or any layer. `patience` is for the first request.
   */
  async manifestDigestOf(
    input: string | ImageReference,
    options: { platform?: Platform | string; patience?: RequestPatience } = {},
  ): Promise<string> {
    const wanted =
      typeof options.platform === 'string'
        ? parsePlatform(options.platform)
        : normalizePlatform(options.platform ?? hostPlatform())
    return (await this.chooseManifest(toReference(input), wanted, options.patience)).manifestDigest
  }

  // The manifest for `wanted`, through an index if `ref` names one. Only the first request
  // gets `patience`: once it is answered the registry is up.
  private async chooseManifest(
    ref: ImageReference,
    wanted: Platform,
    patience: RequestPatience | undefined,
  ): Promise<{ manifestDigest: string; manifest: ImageManifest; indexDigest?: string }> {
    const top = await this.fetchManifest(ref, patience)
    if (top.document.kind !== 'index')
      return { manifestDigest: top.digest, manifest: top.document.manifest }

    const chosen = pickPlatform(top.document.index, wanted, ref)
    const child = await this.fetchManifest(withDigest(ref, chosen.digest))
    if (child.document.kind !== 'manifest')
      throw new EdgestarError(
        'EDGESTAR_REGISTRY_BAD_MANIFEST',
        `${ref.name}: the entry for ${formatPlatform(wanted)} is itself an index`,
      )
    return {
      manifestDigest: child.digest,
      manifest: child.document.manifest,
      indexDigest: top.digest,
    }
  }

  /**
   * Fetches a manifest or index by tag or digest. With a digest in the reference, the
   * bytes must hash to it (else EDGESTAR_REGISTRY_DIGEST_MISMATCH).
   */
  async fetchManifest(
    input: string | ImageReference,
    patience?: RequestPatience,
  ): Promise<FetchedManifest> {
    const ref = toReference(input)
    const target = ref.digest ?? ref.tag ?? 'latest'
    const res = await this.transport.send({
      registry: ref.registry,
      url: `${this.transport.baseUrl(ref.registry)}/v2/${ref.repository}/manifests/${target}`,
      method: 'GET',
      scopes: [`repository:${ref.repository}:pull`],
      headers: { accept: MANIFEST_ACCEPT },
      ...(patience === undefined ? {} : patience),
    })
    if (res.status !== 200)
      throw await responseError(this.transport, res, `manifest of ${ref.name}`)
    const bytes = await this.transport.readAll(res, MAX_MANIFEST_BYTES)

    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
    const claimed = headerValue(res.headers, 'docker-content-digest')
    const expected = ref.digest ?? (claimed?.startsWith('sha256:') ? claimed : undefined)
    if (expected !== undefined && expected !== digest) {
      throw new EdgestarError(
        'EDGESTAR_REGISTRY_DIGEST_MISMATCH',
        `manifest of ${ref.name} hashed to ${digest}, expected ${expected}`,
        {
          hint: 'the registry or something on the way served a different manifest',
        },
      )
    }
    const document = parseManifestDocument(
      bytes,
      headerValue(res.headers, 'content-type'),
      ref.name,
    )
    return { digest, mediaType: document.mediaType, bytes, document }
  }

  /** Fetches a small blob (a config) whole and verifies its digest. */
  async fetchBlob(
    input: string | ImageReference,
    digest: string,
    maxBytes = MAX_CONFIG_BYTES,
  ): Promise<Buffer> {
    const ref = toReference(input)
    const stream = streamBlob(this.transport, this.location(ref, digest))
    const parts: Buffer[] = []
    let total = 0
    for await (const chunk of stream) {
      total += (chunk as Buffer).length
      if (total > maxBytes) {
        stream.destroy()
        throw new EdgestarError(
          'EDGESTAR_REGISTRY_BAD_RESPONSE',
          `blob ${digest} of ${ref.name} is larger than ${maxBytes} bytes`,
        )
      }
      parts.push(chunk as Buffer)
    }
    return Buffer.concat(parts, total)
  }

  /**
   * Streams a whole blob, resuming after a dropped connection from the last byte
   * received; the stream errors with EDGESTAR_REGISTRY_DIGEST_MISMATCH at its end when
   * the bytes do not hash to `digest`.
   */
  blobStream(input: string | ImageReference, digest: string, sizeBytes?: number): Readable {
    return streamBlob(this.transport, this.location(toReference(input), digest), sizeBytes)
  }

  /**
   * A random-access reader over one blob by HTTP Range (see BlobReader), for H1's
   * `openLayer` and the fetch scheduler. Cheap: no request is made until a read.
   */
  blobReader(input: string | ImageReference, digest: string, sizeBytes: number): BlobReader {
    return new HttpBlobReader(
      this.transport,
      this.location(toReference(input), digest),
      sizeBytes,
      {
        maxCoalesceBytes: this.options.maxCoalesceBytes ?? DEFAULT_COALESCE_BYTES,
        maxCoalesceGapBytes: this.options.maxCoalesceGapBytes ?? 0,
        maxRangesPerRequest: this.options.maxRangesPerRequest ?? 1,
        noMultiRange: this.noMultiRange,
      },
    )
  }

  /**
   * The size of a blob, or undefined when the registry does not have it. Uses HEAD; a
   * redirect target that refuses HEAD (signed GET-only URLs) is asked with a 1-byte GET.
   */
  async statBlob(input: string | ImageReference, digest: string): Promise<number | undefined> {
    const location = this.location(toReference(input), digest)
    const head = await location.send('HEAD', {})
    await this.transport.discard(head)
    if (head.status === 200) {
      const length = headerValue(head.headers, 'content-length')
      if (length !== undefined) return Number(length)
    }
    if (head.status === 404 && !head.redirected) return undefined
    if (head.status === 401 && !head.redirected)
      throw await responseError(this.transport, head, `blob ${digest}`)

    const get = await location.send('GET', { range: 'bytes=0-0', 'accept-encoding': 'identity' })
    const range = parseContentRange(headerValue(get.headers, 'content-range'))
    const length = headerValue(get.headers, 'content-length')
    if (get.status === 404) {
      await this.transport.discard(get)
      return undefined
    }
    if (get.status !== 200 && get.status !== 206)
      throw await responseError(this.transport, get, `blob ${digest}`)
    this.transport.drop(get)
    if (get.status === 206 && range?.total !== undefined) return range.total
    return length === undefined ? undefined : Number(length)
  }

  /** Bytes received and requests sent by this client so far (a snapshot). */
  stats(): RegistryStats {
    return { ...this.transport.stats }
  }

  /** Pushes a blob unless present (HEAD), by cross-repo mount or upload; returns its descriptor. */
  async pushBlob(
    input: string | ImageReference,
    source: BlobSource,
    options: PushBlobOptions = {},
  ): Promise<Descriptor> {
    const chunkBytes = options.chunkBytes ?? this.options.uploadChunkBytes
    return pushBlob(this.transport, toReference(input), source, { ...options, chunkBytes })
  }

  /** Pushes a manifest or index under the reference's tag (or its digest). */
  async pushManifest(
    input: string | ImageReference,
    document: ImageManifest | ImageIndex,
  ): Promise<{ digest: string; sizeBytes: number; mediaType: string }> {
    return pushManifest(this.transport, toReference(input), document)
  }

  /** Publishes an image: its layers, a config with their diffIDs, and an OCI manifest. */
  async pushImage(input: string | ImageReference, image: PushImageInput): Promise<PushImageResult> {
    const uploadChunkBytes = image.uploadChunkBytes ?? this.options.uploadChunkBytes
    return pushImage(this.transport, toReference(input), { ...image, uploadChunkBytes })
  }

  /** Closes every pooled connection. */
  async close(): Promise<void> {
    await this.transport.close()
  }

  private location(ref: ImageReference, digest: string): BlobLocation {
    return new BlobLocation(this.transport, ref, digest, this.redirects)
  }
}

function toReference(input: string | ImageReference): ImageReference {
  return typeof input === 'string' ? parseReference(input) : input
}

/** The index entry for `wanted`; arm/v7 falls back to v6 and v5 as Docker does. */
function pickPlatform(index: ImageIndex, wanted: Platform, ref: ImageReference): Descriptor {
  const runnable = index.manifests.filter(
    (d) => d.platform && d.annotations?.[ATTESTATION_REFERENCE_TYPE] === undefined,
  )
  const exact = runnable.find((d) => platformMatches(d.platform as Platform, wanted))
  if (exact) return exact

  if (wanted.architecture === 'arm' && wanted.variant !== undefined) {
    const order = ['v8', 'v7', 'v6', 'v5']
    for (const variant of order.slice(order.indexOf(wanted.variant) + 1)) {
      const fallback = runnable.find((d) =>
        platformMatches(d.platform as Platform, { ...wanted, variant }),
      )
      if (fallback) return fallback
    }
  }
  throw noPlatform(
    ref,
    wanted,
    runnable.map((d) => d.platform as Platform),
  )
}

function noPlatform(ref: ImageReference, wanted: Platform, available: Platform[]): EdgestarError {
  const list = available.length > 0 ? available.map(formatPlatform).join(', ') : 'none'
  return new EdgestarError(
    'EDGESTAR_REGISTRY_NO_PLATFORM',
    `${ref.name} has no manifest for platform ${formatPlatform(wanted)} (available: ${list})`,
    {
      hint: 'pick one of the available platforms with --platform, or build the image for this device',
    },
  )
}
