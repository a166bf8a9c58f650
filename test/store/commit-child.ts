/**
 * Child process of store-threads.test.ts: records a layer of UNITS single-chunk units in
 * the state directory given as argument, then stores their chunks in batches of BATCH
 * through the writer thread (each with its unit bookkeeping), printing `stored N` (units
 * acknowledged so far) after each commit, until it has stored them all or is killed.
 */
import { Store } from '../../src/store/index.js'

export const UNITS = 400
export const BATCH = 8
export const LAYER = `sha256:${'7'.repeat(64)}`

/** The key of unit `i` (a made-up chunk digest: the cache does not check it). */
export function keyOf(i: number): string {
  return `sha256-${i.toString(16).padStart(64, '0')}`
}

/** Size of the object of unit `i`, different per unit so a torn file shows. */
export function sizeOf(i: number): number {
  return 4096 + ((i * 997) % 8192)
}

/** The object of unit `i`: bytes of its own, so a torn or misplaced slot shows. */
export function objectOf(i: number): Buffer {
  const bytes = Buffer.alloc(sizeOf(i))
  for (let at = 0; at < bytes.length; at++) bytes[at] = (i * 131 + at * 7 + (at >> 8)) & 0xff
  return bytes
}

async function main(stateDir: string): Promise<void> {
  const store = Store.open(stateDir)
  store.layers.upsert({
    digest: LAYER,
    sizeBytes: UNITS * 1000,
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    diffID: null,
    tocDigest: null,
    tocOffset: null,
    format: 'estargz',
    verification: 'lazy',
    sourceReference: 'r/crash:1',
  })
  store.layers.recordIndex(LAYER, {
    entries: Array.from({ length: UNITS }, (_, i) => ({
      name: `f${i}`,
      type: 'reg',
      size: sizeOf(i),
    })),
    chunks: Array.from({ length: UNITS }, (_, i) => ({
      entryName: `f${i}`,
      chunkOffset: 0,
      chunkSize: sizeOf(i),
      compressedOffset: i * 1000,
      compressedSize: 1000,
      innerOffset: 0,
      chunkDigest: `sha256:${keyOf(i).slice(7)}`,
    })),
    blobSizeBytes: UNITS * 1000,
  })
  process.stdout.write('recorded\n')

  for (let first = 0; first < UNITS; first += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, UNITS - first) }, (_, j) => first + j)
    await store.chunks.writeMany(
      batch.map((i) => ({
        key: keyOf(i),
        data: objectOf(i),
        unit: {
          layerDigest: LAYER,
          offset: i * 1000,
          memberBytes: sizeOf(i) + 512,
          dataBytes: sizeOf(i),
          tail: Buffer.alloc(512),
        },
      })),
    )
    process.stdout.write(`stored ${first + batch.length}\n`)
  }
  store.close()
}

if (process.argv[2] !== undefined) await main(process.argv[2])
