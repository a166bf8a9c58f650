/**
 * Shared shapes of the registry module: OCI/Docker descriptors, manifests, image configs,
 * the resolved view of an image that the rest of edgestar consumes, and client options.
 * Spec: OCI image-spec v1.1 (descriptor.md, manifest.md, image-index.md, config.md) and
 * the Docker image manifest v2 schema 2.
 */

/** An OS/architecture pair as written in an index entry or an image config. */
export interface Platform {
  os: string
  architecture: string
  variant?: string
}

/** A content descriptor (OCI descriptor.md); `platform` only appears in an index. */
export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
  platform?: Platform
  urls?: string[]
}

/** An OCI image manifest or a Docker schema-2 manifest (same shape). */
export interface ImageManifest {
  schemaVersion: 2
  mediaType?: string
  artifactType?: string
  config: Descriptor
  layers: Descriptor[]
  annotations?: Record<string, string>
}

/** An OCI image index or a Docker manifest list (same shape). */
export interface ImageIndex {
  schemaVersion: 2
  mediaType?: string
  manifests: Descriptor[]
  annotations?: Record<string, string>
}

/** The image config (OCI config.md); unknown fields are kept as they came. */
export interface ImageConfig {
  architecture: string
  os: string
  variant?: string
  created?: string
  config?: {
    Env?: string[]
    Entrypoint?: string[] | null
    Cmd?: string[] | null
    WorkingDir?: string
    User?: string
    ExposedPorts?: Record<string, unknown>
    Volumes?: Record<string, unknown>
    Labels?: Record<string, string>
    StopSignal?: string
    [key: string]: unknown
  }
  rootfs: { type: 'layers'; diff_ids: string[] }
  history?: unknown[]
  [key: string]: unknown
}

/** One layer of a resolved image, with the diffID its config records for it. */
export interface ResolvedLayer {
  digest: string
  size: number
  mediaType: string
  annotations: Record<string, string>
  /** sha256 of the uncompressed layer tar, from `rootfs.diff_ids` of the config. */
  diffID: string
  urls?: string[]
}

/** The outcome of `RegistryClient.resolve`: one platform's image, ready to read. */
export interface ResolvedImage {
  /** The reference as asked, normalised (registry, repository, tag and/or digest). */
  reference: ImageReference
  /** Digest of the platform manifest (not of the index). */
  manifestDigest: string
  /** Digest of the index or manifest list the reference pointed at, when it was one. */
  indexDigest?: string
  manifest: ImageManifest
  configDigest: string
  config: ImageConfig
  platform: Platform
  layers: ResolvedLayer[]
}

/** A parsed image reference; see `parseReference`. */
export interface ImageReference {
  /** Registry host as written, with port, normalised (`docker.io` for Docker Hub). */
  registry: string
  /** Repository path, with `library/` added for single names on Docker Hub. */
  repository: string
  tag?: string
  digest?: string
  /** `registry/repository[:tag][@digest]`, the canonical spelling. */
  readonly name: string
}

/** One byte range of a blob; `length` in bytes. */
export interface ByteRange {
  offset: number
  length: number
}

/** Counters of network work done by one client, for `edgestar cat --stats`. */
export interface RegistryStats {
  /**
   * Bytes of HTTP bodies received, over every request (tokens, manifests, blobs, retries,
   * discarded error bodies). Status lines and headers are not counted (undici hides them).
   */
  bytesReceived: number
  /** HTTP requests sent, including token requests, redirects and retries. */
  requests: number
}

/** Username/password (or identity token) for one registry. */
export interface RegistryCredentials {
  username: string
  password: string
}

/** Retry policy for transient failures (resets, timeouts, 5xx, 429). */
export interface RetryPolicy {
  /** Attempts in total, first one included. Default 5. */
  maxAttempts: number
  /** Base of the exponential backoff in ms. Default 200. */
  baseDelayMs: number
  /** Ceiling of one backoff wait (also caps Retry-After) in ms. Default 10 000. */
  maxDelayMs: number
}

/**
 * Attempts and timeout of one request, overriding the client's retry policy and request
 * timeout: for a caller that has something better to do than wait (a recorded image).
 */
export interface RequestPatience {
  maxAttempts: number
  /** Time to wait for response headers, and for each body read, in ms. */
  timeoutMs: number
}

/**
 * What the caller of one `BlobReader.readRanges` wants to know and allow while it runs: a
 * caller with its own deadline (a read a process waits on) tells a stalled request from
 * a slow one by `onBytes`, and a dead link from a busy one by `onRetry`.
 */
export interface RangeReadOptions {
  /** Called with the size of each piece of blob body as it arrives. */
  onBytes?: (bytes: number) => void
  /** Called when a request failed (reset, timeout, 5xx) and is about to be retried. */
  onRetry?: (reason: unknown) => void
  /** Attempts and timeout of each request, instead of the client's. */
  patience?: RequestPatience
  /**
   * Ends the read: the request in flight is dropped (its connection closed) and no retry
   * follows; the read rejects with the signal's reason or undici's abort error.
   */
  signal?: AbortSignal
}

/** Options of a `RegistryClient`; all optional. */
export interface RegistryClientOptions {
  /** Hosts (`host` or `host:port`) spoken to over plain HTTP besides localhost/127.0.0.1/::1. */
  insecureRegistries?: string[]
  /**
   * Path of a Docker `config.json` to take credentials from; re-read when it changes.
   * Default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`; `null` turns it off.
   */
  dockerConfigPath?: string | null
  /** Credentials per registry host, taking precedence over the Docker config file. */
  credentials?: Record<string, RegistryCredentials>
  /** Adjacent ranges are merged into one request up to this many bytes. Default 4 MiB. */
  maxCoalesceBytes?: number
  /** Two ranges at most this many bytes apart still count as adjacent. Default 0. */
  maxCoalesceGapBytes?: number
  /** Ranges per multi-range request (`Range: bytes=a-b,c-d`); 1 disables. Default 1. */
  maxRangesPerRequest?: number
  retry?: Partial<RetryPolicy>
  /** Time to wait for response headers, and for each body read, in ms. Default 30 000. */
  requestTimeoutMs?: number
  /** Keep-alive connections per origin. Default 6. */
  connectionsPerOrigin?: number
  /** Upload blobs bigger than this in PATCH chunks of this size. Default 0 (monolithic). */
  uploadChunkBytes?: number
  userAgent?: string
}
