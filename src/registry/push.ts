import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { EdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import { isIndexMediaType, OCI_INDEX, OCI_MANIFEST } from './media-types.js'
import { responseError } from './response-error.js'
import { headerValue, isTransientNetworkError, type RegistryTransport } from './transport.js'
import type { Descriptor, ImageIndex, ImageManifest, ImageReference } from './types.js'

const log = moduleLogger('registry')
const PUSH_ATTEMPTS = 3

/** Where a blob to push comes from: bytes in memory, or a file on disk (streamed). */
export type BlobSource = Buffer | { path: string }

/** Options of `pushBlob`. */
export interface PushBlobOptions {
  /** Known digest (saves hashing a file twice); the registry checks it on commit. */
  digest?: string
  sizeBytes?: number
  mediaType?: string
  /** Repositories on the same registry to try a cross-repo mount from first. */
  mountFrom?: string[]
  /** Upload in PATCH chunks of this many bytes; 0 or absent uploads in one PUT. */
  chunkBytes?: number
}

/** sha256 digest and size of a blob source. */
export async function describeSource(
  source: BlobSource,
): Promise<{ digest: string; sizeBytes: number }> {
  if (Buffer.isBuffer(source))
    return {
      digest: `sha256:${createHash('sha256').update(source).digest('hex')}`,
      sizeBytes: source.length,
    }
  const hash = createHash('sha256')
  let sizeBytes = 0
  for await (const chunk of createReadStream(source.path)) {
    hash.update(chunk as Buffer)
    sizeBytes += (chunk as Buffer).length
  }
  return { digest: `sha256:${hash.digest('hex')}`, sizeBytes }
}

/**
 * Pushes one blob (distribution spec "Pushing blobs"): HEAD to skip what the registry
 * has, a cross-repo mount when a source repository is named, else an upload in one PUT
 * or in PATCH chunks. The whole sequence is retried on transient failures.
 * Throws EDGESTAR_REGISTRY_PUSH_FAILED, or the status codes of `responseError`.
 */
export async function pushBlob(
  transport: RegistryTransport,
  ref: ImageReference,
  source: BlobSource,
  options: PushBlobOptions = {},
): Promise<Descriptor> {
  const known = options.digest && options.sizeBytes !== undefined
  const { digest, sizeBytes } = known
    ? { digest: options.digest as string, sizeBytes: options.sizeBytes as number }
    : await describeSource(source)
  const descriptor: Descriptor = {
    mediaType: options.mediaType ?? 'application/octet-stream',
    digest,
    size: sizeBytes,
  }

  for (let attempt = 1; ; attempt++) {
    try {
      await pushOnce(transport, ref, source, descriptor, options)
      return descriptor
    } catch (err) {
      const transient =
        isTransientNetworkError(err) ||
        (err as EdgestarError).code === 'EDGESTAR_REGISTRY_SERVER_ERROR'
      if (!transient || attempt >= PUSH_ATTEMPTS) throw err
      await transport.backoff(transport.baseUrl(ref.registry), attempt, undefined, err)
    }
  }
}

async function pushOnce(
  transport: RegistryTransport,
  ref: ImageReference,
  source: BlobSource,
  blob: Descriptor,
  options: PushBlobOptions,
): Promise<void> {
  const base = transport.baseUrl(ref.registry)
  const scopes = [
    `repository:${ref.repository}:pull,push`,
    ...(options.mountFrom ?? []).map((r) => `repository:${r}:pull`),
  ]
  const send = (
    url: string,
    method: 'HEAD' | 'POST' | 'PUT' | 'PATCH',
    extra: Partial<Parameters<RegistryTransport['send']>[0]> = {},
  ) => transport.send({ registry: ref.registry, url, method, scopes, ...extra })

  const head = await send(`${base}/v2/${ref.repository}/blobs/${blob.digest}`, 'HEAD')
  await transport.discard(head)
  if (head.status === 200) {
    log.debug({ digest: blob.digest, repository: ref.repository }, 'blob already present')
    return
  }

  let location: string | undefined
  for (const from of options.mountFrom ?? []) {
    const query = new URLSearchParams({ mount: blob.digest, from })
    const url = `${base}/v2/${ref.repository}/blobs/uploads/?${query}`
    const res = await send(url, 'POST', { maxAttempts: 2 })
    if (res.status === 201) {
      await transport.discard(res)
      log.debug({ digest: blob.digest, from }, 'blob mounted')
      return
    }
    if (res.status !== 202)
      throw await responseError(transport, res, `mount of blob ${blob.digest} from ${from}`)
    location = headerValue(res.headers, 'location')
    await transport.discard(res)
    break
  }

  if (location === undefined) {
    const res = await send(`${base}/v2/${ref.repository}/blobs/uploads/`, 'POST', {
      maxAttempts: 2,
    })
    if (res.status !== 202)
      throw await responseError(transport, res, `upload start of blob ${blob.digest}`)
    location = headerValue(res.headers, 'location')
    await transport.discard(res)
  }
  if (!location) throw pushFailed(ref, blob.digest, 'the registry gave no upload location')
  let uploadUrl = new URL(location, base).toString()

  const chunkBytes = options.chunkBytes ?? 0
  if (chunkBytes > 0 && blob.size > chunkBytes) {
    uploadUrl = await uploadChunks(transport, ref, scopes, uploadUrl, source, blob, chunkBytes)
    const done = await transport.send({
      registry: ref.registry,
      url: withDigest(uploadUrl, blob.digest),
      method: 'PUT',
      scopes,
      headers: { 'content-length': '0' },
    })
    if (done.status !== 201)
      throw await responseError(transport, done, `upload commit of blob ${blob.digest}`)
    await transport.discard(done)
    return
  }

  const res = await transport.send({
    registry: ref.registry,
    url: withDigest(uploadUrl, blob.digest),
    method: 'PUT',
    scopes,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
    body: Buffer.isBuffer(source) ? source : () => createReadStream(source.path),
  })
  if (res.status !== 201) throw await responseError(transport, res, `upload of blob ${blob.digest}`)
  await transport.discard(res)
}

async function uploadChunks(
  transport: RegistryTransport,
  ref: ImageReference,
  scopes: string[],
  startUrl: string,
  source: BlobSource,
  blob: Descriptor,
  chunkBytes: number,
): Promise<string> {
  let url = startUrl
  const file = Buffer.isBuffer(source) ? undefined : await open(source.path, 'r')
  try {
    for (let offset = 0; offset < blob.size; offset += chunkBytes) {
      const length = Math.min(chunkBytes, blob.size - offset)
      const chunk = Buffer.isBuffer(source)
        ? source.subarray(offset, offset + length)
        : Buffer.alloc(length)
      if (file) await file.read(chunk, 0, length, offset)
      const res = await transport.send({
        registry: ref.registry,
        url,
        method: 'PATCH',
        scopes,
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': String(length),
          'content-range': `${offset}-${offset + length - 1}`,
        },
        body: chunk,
      })
      if (res.status !== 202)
        throw await responseError(transport, res, `chunk at ${offset} of blob ${blob.digest}`)
      const next = headerValue(res.headers, 'location')
      await transport.discard(res)
      if (next) url = new URL(next, url).toString()
    }
  } finally {
    await file?.close()
  }
  return url
}

/**
 * Pushes a manifest or index under the reference's tag (or, without a tag, its digest).
 * The JSON is serialised once; the digest is of exactly those bytes.
 */
export async function pushManifest(
  transport: RegistryTransport,
  ref: ImageReference,
  document: ImageManifest | ImageIndex,
): Promise<{ digest: string; sizeBytes: number; mediaType: string }> {
  const mediaType = document.mediaType ?? ('manifests' in document ? OCI_INDEX : OCI_MANIFEST)
  const bytes = Buffer.from(JSON.stringify({ ...document, mediaType }))
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
  const target = ref.tag ?? ref.digest ?? digest
  if (ref.digest && !ref.tag && ref.digest !== digest)
    throw pushFailed(ref, digest, `the reference pins ${ref.digest}, the manifest is ${digest}`)

  const res = await transport.send({
    registry: ref.registry,
    url: `${transport.baseUrl(ref.registry)}/v2/${ref.repository}/manifests/${target}`,
    method: 'PUT',
    scopes: [`repository:${ref.repository}:pull,push`],
    headers: { 'content-type': mediaType },
    body: bytes,
    maxAttempts: 3,
  })
  const what = isIndexMediaType(mediaType) ? 'index' : 'manifest'
  if (res.status !== 201) throw await responseError(transport, res, `push of ${what} ${ref.name}`)
  await transport.discard(res)
  return { digest, sizeBytes: bytes.length, mediaType }
}

function withDigest(url: string, digest: string): string {
  const u = new URL(url)
  u.searchParams.set('digest', digest)
  return u.toString()
}

function pushFailed(ref: ImageReference, digest: string, why: string): EdgestarError {
  return new EdgestarError(
    'EDGESTAR_REGISTRY_PUSH_FAILED',
    `push of ${digest} to ${ref.registry}/${ref.repository} failed: ${why}`,
  )
}
