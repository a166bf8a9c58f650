import type { Readable } from 'node:stream'
import { EdgestarError } from '../errors.js'
import type { BlobReader } from './blob-reader.js'
import type {
  Descriptor,
  ImageIndex,
  ImageManifest,
  ImageReference,
  Platform,
  RegistryClientOptions,
  RegistryStats,
  ResolvedImage,
} from './types.js'

/** A manifest or index as fetched: its digest, media type, raw bytes and parsed JSON. */
export interface FetchedManifest {
  digest: string
  mediaType: string
  bytes: Buffer
  manifest: ImageManifest | ImageIndex
}

/** Where a blob to push comes from: bytes in memory, or a file on disk (streamed). */
export type BlobSource = Buffer | { path: string }

/** Options of `pushBlob`. */
export interface PushBlobOptions {
  /** Known digest (saves hashing a file twice); verified by the registry on commit. */
  digest?: string
  sizeBytes?: number
  mediaType?: string
  /** Repositories on the same registry to try a cross-repo mount from first. */
  mountFrom?: string[]
}

/** One layer handed to `pushImage`. */
export interface PushLayer {
  source: BlobSource
  mediaType: string
  /** sha256 of the uncompressed tar, for the config's rootfs.diff_ids. */
  diffID: string
  digest?: string
  sizeBytes?: number
  /** Manifest annotations, e.g. the TOC digest and uncompressed size. */
  annotations?: Record<string, string>
}

/** What `pushImage` publishes: layers, then a config (given or built), then an OCI manifest. */
export interface PushImageInput {
  layers: PushLayer[]
  /** A config to publish as is; its rootfs.diff_ids are replaced by the layers' diffIDs. */
  config?: Partial<import('./types.js').ImageConfig>
  /** Platform for a config built from scratch. Default: the machine's own. */
  platform?: Platform
  annotations?: Record<string, string>
  mountFrom?: string[]
}

/** What was published by `pushImage`. */
export interface PushImageResult {
  reference: ImageReference
  manifestDigest: string
  manifestSize: number
  configDigest: string
  layers: Descriptor[]
  platform: Platform
}

function notImplemented(what: string): never {
  throw new EdgestarError('EDGESTAR_NOT_IMPLEMENTED', `registry: ${what} is not implemented yet`)
}

/**
 * A client for one or many OCI registries (distribution API v2) over pooled keep-alive
 * connections (undici). It handles auth (anonymous bearer, basic, Docker config.json),
 * retries with backoff, redirects, and counts every byte and request it makes.
 * Close it when done to release sockets.
 */
export class RegistryClient {
  readonly options: RegistryClientOptions

  constructor(options: RegistryClientOptions = {}) {
    this.options = options
  }

  /**
   * Resolves a reference to one platform's image: follows an index or manifest list to
   * the wanted platform (default: the machine's), reads the config and pairs each layer
   * with its diffID. Throws EDGESTAR_REGISTRY_NO_PLATFORM (listing what exists),
   * EDGESTAR_REGISTRY_NOT_FOUND, EDGESTAR_REGISTRY_UNAUTHORIZED,
   * EDGESTAR_REGISTRY_BAD_MANIFEST, EDGESTAR_REGISTRY_UNREACHABLE.
   */
  async resolve(
    _ref: string | ImageReference,
    _options: { platform?: Platform | string } = {},
  ): Promise<ResolvedImage> {
    return notImplemented('resolve')
  }

  /** Fetches a manifest or index by tag or digest, verifying the digest when pinned. */
  async fetchManifest(_ref: string | ImageReference): Promise<FetchedManifest> {
    return notImplemented('fetchManifest')
  }

  /** Fetches a small blob (a config) whole and verifies its digest. */
  async fetchBlob(
    _ref: string | ImageReference,
    _digest: string,
    _maxBytes?: number,
  ): Promise<Buffer> {
    return notImplemented('fetchBlob')
  }

  /**
   * Streams a whole blob, resuming after a dropped connection from the last byte
   * received; the stream errors with EDGESTAR_REGISTRY_DIGEST_MISMATCH at its end when
   * the bytes do not hash to `digest`.
   */
  async blobStream(
    _ref: string | ImageReference,
    _digest: string,
    _sizeBytes?: number,
  ): Promise<Readable> {
    return notImplemented('blobStream')
  }

  /**
   * A random-access reader over one blob by HTTP Range (see BlobReader), for H1's
   * `openLayer` and the fetch scheduler. Cheap: no request is made until a read.
   */
  blobReader(_ref: string | ImageReference, _digest: string, _sizeBytes: number): BlobReader {
    return notImplemented('blobReader')
  }

  /** Bytes received and requests sent by this client so far. */
  stats(): RegistryStats {
    return notImplemented('stats')
  }

  /**
   * Pushes a blob unless the registry has it (HEAD), trying a cross-repo mount first,
   * then a monolithic or chunked upload. Returns its descriptor.
   */
  async pushBlob(
    _ref: string | ImageReference,
    _source: BlobSource,
    _options: PushBlobOptions = {},
  ): Promise<Descriptor> {
    return notImplemented('pushBlob')
  }

  /** Pushes a manifest or index under the reference's tag (or its digest); returns its digest. */
  async pushManifest(
    _ref: string | ImageReference,
    _manifest: ImageManifest | ImageIndex,
  ): Promise<{ digest: string; sizeBytes: number; mediaType: string }> {
    return notImplemented('pushManifest')
  }

  /** Publishes an image: its layers, a config with their diffIDs, and an OCI manifest. */
  async pushImage(_ref: string | ImageReference, _input: PushImageInput): Promise<PushImageResult> {
    return notImplemented('pushImage')
  }

  /** Closes every pooled connection. */
  async close(): Promise<void> {}
}
