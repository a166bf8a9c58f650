import { EdgestarError } from '../errors.js'
import {
  DOCKER_SCHEMA1,
  DOCKER_SCHEMA1_SIGNED,
  isIndexMediaType,
  isManifestMediaType,
  OCI_INDEX,
  OCI_MANIFEST,
} from './media-types.js'
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from './types.js'

const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/

/** A parsed manifest document: an index (list) or an image manifest. */
export type ManifestDocument =
  | { kind: 'index'; mediaType: string; index: ImageIndex }
  | { kind: 'manifest'; mediaType: string; manifest: ImageManifest }

/**
 * Parses and checks a manifest or index. The kind comes from the Content-Type, else the
 * document's own mediaType, else its shape (`manifests` vs `layers`). Throws
 * EDGESTAR_REGISTRY_BAD_MANIFEST naming `where`, or EDGESTAR_REGISTRY_UNSUPPORTED_MANIFEST
 * for Docker schema 1.
 */
export function parseManifestDocument(
  bytes: Buffer,
  contentType: string | undefined,
  where: string,
): ManifestDocument {
  const bad = (why: string): never => {
    throw new EdgestarError(
      'EDGESTAR_REGISTRY_BAD_MANIFEST',
      `manifest of ${where} is invalid: ${why}`,
      {
        hint: 'the registry served something that is not an OCI or Docker schema-2 manifest',
      },
    )
  }
  let doc: unknown
  try {
    doc = JSON.parse(bytes.toString('utf8'))
  } catch {
    return bad('it is not JSON')
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    return bad('it is not a JSON object')
  const obj = doc as Record<string, unknown>

  const declared = typeof obj.mediaType === 'string' ? obj.mediaType : undefined
  const header = contentType?.split(';')[0]?.trim()
  let mediaType =
    header && (isIndexMediaType(header) || isManifestMediaType(header)) ? header : declared
  if (
    mediaType === DOCKER_SCHEMA1 ||
    mediaType === DOCKER_SCHEMA1_SIGNED ||
    obj.schemaVersion === 1
  ) {
    throw new EdgestarError(
      'EDGESTAR_REGISTRY_UNSUPPORTED_MANIFEST',
      `${where} has a Docker schema 1 manifest`,
      {
        hint: 'push the image again with a current Docker, buildah or skopeo (schema 2 / OCI)',
      },
    )
  }
  if (obj.schemaVersion !== 2) bad('schemaVersion is not 2')
  mediaType ??= Array.isArray(obj.manifests) ? OCI_INDEX : OCI_MANIFEST

  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(obj.manifests)) bad('an index without a manifests array')
    const manifests = (obj.manifests as unknown[]).map((d, i) =>
      checkDescriptor(d, `manifests[${i}]`, bad),
    )
    return { kind: 'index', mediaType, index: { ...(obj as object), manifests } as ImageIndex }
  }
  if (!isManifestMediaType(mediaType)) return bad(`unknown media type ${mediaType}`)
  if (!Array.isArray(obj.layers)) bad('a manifest without a layers array')
  const config = checkDescriptor(obj.config, 'config', bad)
  const layers = (obj.layers as unknown[]).map((d, i) => checkDescriptor(d, `layers[${i}]`, bad))
  return {
    kind: 'manifest',
    mediaType,
    manifest: { ...(obj as object), config, layers } as ImageManifest,
  }
}

/**
 * Parses an image config and checks what edgestar relies on: os, architecture and
 * `rootfs.diff_ids` (one sha256 digest per layer). Throws EDGESTAR_REGISTRY_BAD_MANIFEST.
 */
export function parseImageConfig(bytes: Buffer, where: string): ImageConfig {
  const bad = (why: string): never => {
    throw new EdgestarError(
      'EDGESTAR_REGISTRY_BAD_MANIFEST',
      `image config of ${where} is invalid: ${why}`,
    )
  }
  let doc: unknown
  try {
    doc = JSON.parse(bytes.toString('utf8'))
  } catch {
    return bad('it is not JSON')
  }
  if (typeof doc !== 'object' || doc === null) return bad('it is not a JSON object')
  const config = doc as Partial<ImageConfig>
  if (typeof config.architecture !== 'string' || typeof config.os !== 'string')
    bad('os or architecture missing')
  const diffIds = config.rootfs?.diff_ids
  if (!Array.isArray(diffIds) || diffIds.some((d) => typeof d !== 'string' || !DIGEST.test(d)))
    bad('rootfs.diff_ids is missing or holds something other than digests')
  return config as ImageConfig
}

/** The platform an image config declares. */
export function configPlatform(config: ImageConfig): Platform {
  const platform: Platform = { os: config.os, architecture: config.architecture }
  if (config.variant) platform.variant = config.variant
  return platform
}

function checkDescriptor(value: unknown, field: string, bad: (why: string) => never): Descriptor {
  if (typeof value !== 'object' || value === null) return bad(`${field} is not an object`)
  const d = value as Record<string, unknown>
  if (typeof d.mediaType !== 'string') bad(`${field}.mediaType is missing`)
  if (typeof d.digest !== 'string' || !DIGEST.test(d.digest)) bad(`${field}.digest is not a digest`)
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0)
    bad(`${field}.size is not a size`)
  if (d.annotations !== undefined) {
    const ann = d.annotations
    if (
      typeof ann !== 'object' ||
      ann === null ||
      Object.values(ann).some((v) => typeof v !== 'string')
    )
      bad(`${field}.annotations is not a string map`)
  }
  return d as unknown as Descriptor
}
