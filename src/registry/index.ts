/**
 * Public face of the registry module: references, the client (resolve, blob reads,
 * push), platforms and the layer-verification verdict. Other folders import only this.
 */
export type { BlobReader } from './blob-reader.js'
export { type FetchedManifest, RegistryClient } from './client.js'
export {
  type ConvertImageOptions,
  type ConvertImageResult,
  convertedLayerAnnotations,
  convertImage,
  looksLikeReference,
  pushConvertedLayer,
} from './convert-push.js'
export { DockerConfigCredentials, defaultDockerConfigPath } from './docker-config.js'
export {
  classifyLayer,
  type LayerAnnotations,
  type LayerVerification,
  readLayerAnnotations,
  ZSTD_CHUNKED_MANIFEST_CHECKSUM_ANNOTATION,
  ZSTD_CHUNKED_MANIFEST_POSITION_ANNOTATION,
  type ZstdChunkedPosition,
} from './layer-verification.js'
export * as mediaTypes from './media-types.js'
export {
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  parsePlatform,
  platformMatches,
} from './platform.js'
export type { BlobSource, PushBlobOptions } from './push.js'
export {
  buildConfig,
  type PushImageInput,
  type PushImageResult,
  type PushLayer,
} from './push-image.js'
export {
  DOCKER_HUB_REGISTRY,
  isPlainHttp,
  makeReference,
  parseReference,
  registryBaseUrl,
  withDigest,
} from './reference.js'
export type {
  ByteRange,
  Descriptor,
  ImageConfig,
  ImageIndex,
  ImageManifest,
  ImageReference,
  Platform,
  RangeReadOptions,
  RegistryClientOptions,
  RegistryCredentials,
  RegistryStats,
  RequestPatience,
  ResolvedImage,
  ResolvedLayer,
  RetryPolicy,
} from './types.js'
