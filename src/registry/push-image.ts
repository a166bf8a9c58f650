import { createHash } from 'node:crypto'
import { EdgestarError } from '../errors.js'
import { OCI_CONFIG, OCI_MANIFEST } from './media-types.js'
import { hostPlatform, normalizePlatform } from './platform.js'
import { type BlobSource, pushBlob, pushManifest } from './push.js'
import type { RegistryTransport } from './transport.js'
import type { Descriptor, ImageConfig, ImageManifest, ImageReference, Platform } from './types.js'

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
  /**
   * A config to start from (e.g. the source image's): its rootfs is replaced by the
   * layers' diffIDs. Without it a minimal config is built for `platform`.
   */
  config?: Partial<ImageConfig>
  /** Platform of a config built from scratch. Default: the machine's own. */
  platform?: Platform
  /** Manifest-level annotations. */
  annotations?: Record<string, string>
  /** Repositories on the same registry to mount existing blobs from. */
  mountFrom?: string[]
  /** Upload blobs in PATCH chunks of this size (0: one PUT). */
  uploadChunkBytes?: number
}

/** What was published by `pushImage`. */
export interface PushImageResult {
  reference: ImageReference
  manifestDigest: string
  manifestSizeBytes: number
  configDigest: string
  layers: Descriptor[]
  platform: Platform
}

/**
 * Publishes an image: each layer blob, a config whose rootfs.diff_ids are the layers'
 * diffIDs, and an OCI manifest carrying each layer's annotations, under the reference's
 * tag. Throws the codes of pushBlob/pushManifest, or EDGESTAR_REGISTRY_PUSH_FAILED for a
 * layer without a sha256 diffID.
 */
export async function pushImage(
  transport: RegistryTransport,
  ref: ImageReference,
  input: PushImageInput,
): Promise<PushImageResult> {
  for (const layer of input.layers) {
    if (!/^sha256:[a-f0-9]{64}$/.test(layer.diffID))
      throw new EdgestarError(
        'EDGESTAR_REGISTRY_PUSH_FAILED',
        `layer diffID "${layer.diffID}" is not a sha256 digest`,
      )
  }

  const layers: Descriptor[] = []
  for (const layer of input.layers) {
    const pushed = await pushBlob(transport, ref, layer.source, {
      digest: layer.digest,
      sizeBytes: layer.sizeBytes,
      mediaType: layer.mediaType,
      mountFrom: input.mountFrom,
      chunkBytes: input.uploadChunkBytes,
    })
    layers.push(layer.annotations ? { ...pushed, annotations: layer.annotations } : pushed)
  }

  const config = buildConfig(input)
  const configBytes = Buffer.from(JSON.stringify(config))
  const configDescriptor = await pushBlob(transport, ref, configBytes, {
    mediaType: OCI_CONFIG,
    digest: `sha256:${createHash('sha256').update(configBytes).digest('hex')}`,
    sizeBytes: configBytes.length,
  })

  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: configDescriptor,
    layers,
  }
  if (input.annotations) manifest.annotations = input.annotations
  const pushed = await pushManifest(transport, ref, manifest)
  const platform: Platform = { os: config.os, architecture: config.architecture }
  if (config.variant) platform.variant = config.variant
  return {
    reference: ref,
    manifestDigest: pushed.digest,
    manifestSizeBytes: pushed.sizeBytes,
    configDigest: configDescriptor.digest,
    layers,
    platform,
  }
}

/** The config to publish: the given one with a new rootfs, or a minimal one for the platform. */
export function buildConfig(
  input: Pick<PushImageInput, 'layers' | 'config' | 'platform'>,
): ImageConfig {
  const platform = normalizePlatform(input.platform ?? platformOf(input.config) ?? hostPlatform())
  const base: Partial<ImageConfig> = input.config ?? {
    created: new Date().toISOString(),
    config: {},
    history: input.layers.map(() => ({ created_by: 'edgestar convert' })),
  }
  const config: ImageConfig = {
    ...base,
    architecture: platform.architecture,
    os: platform.os,
    rootfs: { type: 'layers', diff_ids: input.layers.map((l) => l.diffID) },
  }
  if (platform.variant) config.variant = platform.variant
  else delete config.variant
  // History holds one entry per non-empty layer; when a source config's count no longer
  // matches the layers, drop it rather than publish a config that contradicts itself.
  if (input.config && Array.isArray(input.config.history)) {
    const nonEmpty = input.config.history.filter(
      (h) => !(h as { empty_layer?: boolean }).empty_layer,
    ).length
    if (nonEmpty !== input.layers.length) delete config.history
  }
  return config
}

function platformOf(config: Partial<ImageConfig> | undefined): Platform | undefined {
  if (!config?.architecture || !config.os) return undefined
  const platform: Platform = { os: config.os, architecture: config.architecture }
  if (config.variant) platform.variant = config.variant
  return platform
}
