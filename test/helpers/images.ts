import { createHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { pack } from 'tar-stream'
import {
  type Descriptor,
  type ImageIndex,
  type Platform,
  type PushImageResult,
  parseReference,
  type RegistryClient,
} from '../../src/registry/index.js'

/** A layer blob ready to push: bytes, its diffID, media type and annotations. */
export interface TestLayer {
  blob: Buffer
  diffID: string
  mediaType: string
  annotations?: Record<string, string>
}

/** sha256 digest of bytes, `sha256:<hex>`. */
export function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

/** A plain gzip tar layer holding `files` (name → content), built in memory. */
export async function makeTarLayer(files: Record<string, string | Buffer>): Promise<TestLayer> {
  const p = pack()
  for (const [name, content] of Object.entries(files)) {
    const data = typeof content === 'string' ? Buffer.from(content) : content
    p.entry({ name, size: data.length, mode: 0o644, mtime: new Date(0) }, data)
  }
  p.finalize()
  const parts: Buffer[] = []
  for await (const chunk of p) parts.push(chunk as Buffer)
  const tar = Buffer.concat(parts)
  return {
    blob: gzipSync(tar),
    diffID: sha256(tar),
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
  }
}

/** Pushes a single-platform image made of `layers` (in order) under `ref`. */
export async function pushTestImage(
  client: RegistryClient,
  ref: string,
  layers: TestLayer[],
  options: { platform?: Platform; annotations?: Record<string, string> } = {},
): Promise<PushImageResult> {
  return client.pushImage(ref, {
    layers: layers.map((l) => ({
      source: l.blob,
      mediaType: l.mediaType,
      diffID: l.diffID,
      ...(l.annotations ? { annotations: l.annotations } : {}),
    })),
    platform: options.platform ?? { os: 'linux', architecture: 'amd64' },
    ...(options.annotations ? { annotations: options.annotations } : {}),
  })
}

/**
 * Pushes one image per platform (each with one small layer naming its platform, so
 * the images differ) and an OCI index over them under `ref`'s tag.
 */
export async function pushMultiPlatformImage(
  client: RegistryClient,
  ref: string,
  platforms: Platform[],
): Promise<{ indexDigest: string; manifests: Descriptor[] }> {
  const parsed = parseReference(ref)
  const manifests: Descriptor[] = []
  for (const platform of platforms) {
    const name = [platform.architecture, platform.variant].filter(Boolean).join('-')
    const layer = await makeTarLayer({ 'platform.txt': `${platform.os}/${name}\n` })
    const tagRef = `${parsed.registry}/${parsed.repository}:build-${name}`
    const pushed = await pushTestImage(client, tagRef, [layer], { platform })
    manifests.push({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: pushed.manifestDigest,
      size: pushed.manifestSizeBytes,
      platform,
    })
  }
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests,
  }
  const pushed = await client.pushManifest(ref, index)
  return { indexDigest: pushed.digest, manifests }
}
