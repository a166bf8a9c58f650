import { createHash } from 'node:crypto'
import { open, rm } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { DecompressStream } from 'zstd-napi'
import { EdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import type { ImageReference, RegistryClient, ResolvedLayer } from '../registry/index.js'
import { chunkKey, type Store } from '../store/index.js'
import { TarIndexer } from './tar-indexer.js'

const log = moduleLogger('images')

/**
 * Records a plain gzip or zstd tar layer (no TOC, nothing to verify lazily): downloads
 * it whole, decompresses it into one cache object while hashing it and indexing its tar
 * headers, and checks the hash against the diffID before anything is recorded as
 * present, so no byte of it is served unverified. The layer is stored verified.
 * Throws EDGESTAR_IMAGES_DIFFID_MISMATCH and the registry's codes.
 */
export async function recordPlainLayer(input: {
  store: Store
  registry: RegistryClient
  reference: ImageReference
  layer: ResolvedLayer
  compression: 'gzip' | 'zstd'
}): Promise<void> {
  const { store, registry, reference, layer } = input
  log.info(
    { layer: layer.digest, sizeBytes: layer.size },
    'plain layer: fetching it whole to check its diffID',
  )
  const key = chunkKey({ layerDigest: layer.digest, offset: 0 })
  const tmp = await store.chunks.tmpPathFor(key)
  const indexer = new TarIndexer()
  const hash = createHash('sha256')
  let tarBytes = 0

  const handle = await open(tmp, 'w')
  try {
    const blob = registry.blobStream(reference, layer.digest, layer.size)
    const decompressor = input.compression === 'zstd' ? new DecompressStream() : createGunzip()
    const tar: Readable = blob.pipe(decompressor)
    blob.on('error', (err) => tar.destroy(err))
    for await (const piece of tar as AsyncIterable<Buffer>) {
      hash.update(piece)
      indexer.push(piece)
      await handle.write(piece)
      tarBytes += piece.length
    }
    await handle.sync()
  } catch (err) {
    await handle.close()
    await rm(tmp, { force: true })
    throw err
  }
  await handle.close()

  const diffID = `sha256:${hash.digest('hex')}`
  if (diffID !== layer.diffID) {
    await rm(tmp, { force: true })
    throw new EdgestarError(
      'EDGESTAR_IMAGES_DIFFID_MISMATCH',
      `layer ${layer.digest} decompresses to ${diffID}, but the image config says ${layer.diffID}`,
      { hint: 'the registry serves a layer that differs from the image config; check the image' },
    )
  }

  store.layers.upsert({
    digest: layer.digest,
    sizeBytes: layer.size,
    mediaType: layer.mediaType,
    diffID: layer.diffID,
    tocDigest: null,
    tocOffset: null,
    format: input.compression,
    verification: 'whole',
    sourceReference: reference.name,
  })
  // TODO(images): a plain layer's entries sit in the heap while it is indexed; a 100k-entry
  // plain layer costs tens of MB once (eStargz layers stream their rows instead).
  store.layers.recordIndex(layer.digest, {
    entries: indexer.entries,
    chunks: indexer.extents.map((e) => ({ ...e, compressedOffset: 0, compressedSize: layer.size })),
    blobSizeBytes: layer.size,
  })
  await store.chunks.adopt(key, tmp, tarBytes, {
    units: [
      {
        layerDigest: layer.digest,
        offset: 0,
        memberBytes: tarBytes,
        dataBytes: tarBytes,
        tail: null,
      },
    ],
    layerStates: [{ digest: layer.digest, state: 'verified' }],
  })
}
