import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import type { Store } from '../../src/store/index.js'

const dirs: string[] = []
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

/** A fresh state directory, removed when the test file ends. */
export function stateDir(prefix = 'edgestar-store-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(dir)
  return dir
}

/** A chunk key made of one repeated hex character. */
export const key = (c: string): string => `sha256-${c.repeat(64)}`

/**
 * Records a lazy eStargz layer of one 10-byte file per character in `chunkChars` (each its
 * own chunk, digest of that character) and an image of it; returns the image id.
 */
export function recordLayer(store: Store, layer: string, chunkChars = ['b', 'c', 'd']): number {
  store.layers.upsert({
    digest: layer,
    sizeBytes: 10_000,
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    diffID: null,
    tocDigest: null,
    tocOffset: 9000,
    format: 'estargz',
    verification: 'lazy',
    sourceReference: 'r/x:1',
  })
  store.layers.recordIndex(layer, {
    entries: chunkChars.map((c) => ({ name: `f${c}`, type: 'reg', size: 10 })),
    chunks: chunkChars.map((c, i) => ({
      entryName: `f${c}`,
      chunkOffset: 0,
      chunkSize: 10,
      compressedOffset: 100 + i * 100,
      compressedSize: 100,
      innerOffset: 0,
      chunkDigest: `sha256:${c.repeat(64)}`,
    })),
    blobSizeBytes: 10_000,
  })
  return store.images.record({
    reference: `r/${layer.slice(7, 12)}:1`,
    manifestDigest: 'sha256:m',
    platform: 'linux/amd64',
    config: {},
    layers: [layer],
  }).id
}
