import { createCipheriv, createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { convertLayer } from '../../src/estargz/index.js'
import type { TestLayer } from '../helpers/images.js'

/** Reference fixtures made by the Go implementation (see its index.json). */
export const FIXTURE_DIR = '/work/shared/fixtures/estargz'

/** A fixture blob as a pushable layer, with the sidecar's file list. */
export function fixtureLayer(
  name: string,
): TestLayer & { files: { name: string; sha256?: string; size: number; type: string }[] } {
  const sidecar = JSON.parse(readFileSync(join(FIXTURE_DIR, `${name}.json`), 'utf8')) as {
    blob: string
    diffID: string
    mediaType: string
    annotations?: Record<string, string>
    files: { name: string; sha256?: string; size: number; type: string }[]
  }
  const blob = readFileSync(join(FIXTURE_DIR, sidecar.blob))
  return {
    blob,
    diffID: sidecar.diffID,
    mediaType: sidecar.mediaType,
    ...(sidecar.annotations ? { annotations: sidecar.annotations } : {}),
    files: sidecar.files,
  }
}

/** What `bigLayer` built: the layer plus the small file's name and content. */
export interface BigLayer extends TestLayer {
  smallName: string
  smallContent: Buffer
  bigName: string
  bigSha256: string
  tocOffset: number
}

const BIG_VERSION = 'v1'

/**
 * A ~100 MB eStargz layer (incompressible data in 1 MiB chunks by default, so the blob
 * stays that big) with a 1 KiB file, built once by edgestar's converter and cached under
 * $EDGESTAR_CACHE_DIR/h4 keyed by the generator version and size.
 */
export async function bigLayer(
  totalBytes = 100 * 1024 * 1024,
  chunkSizeBytes = 1024 * 1024,
): Promise<BigLayer> {
  const cacheDir = join(process.env.EDGESTAR_CACHE_DIR ?? join(process.cwd(), '.cache'), 'h4')
  const key = `big-${BIG_VERSION}-${totalBytes}-${chunkSizeBytes}`
  const blobPath = join(cacheDir, `${key}.tar.gz`)
  const metaPath = join(cacheDir, `${key}.json`)
  if (!existsSync(blobPath) || !existsSync(metaPath)) {
    mkdirSync(cacheDir, { recursive: true })
    const work = await mkdtemp(join(tmpdir(), 'edgestar-big-'))
    try {
      const root = join(work, 'root')
      mkdirSync(join(root, 'data'), { recursive: true })
      mkdirSync(join(root, 'etc'), { recursive: true })
      const big = deterministicBytes(totalBytes, 'big')
      writeFileSync(join(root, 'data', 'big.bin'), big)
      writeFileSync(join(root, 'etc', 'small.txt'), deterministicBytes(1024, 'small'))
      const result = await convertLayer(root, join(work, 'out.tar.gz'), {
        chunkSizeBytes: 1024 * 1024,
        level: 1,
      })
      const meta = {
        diffID: result.diffID,
        mediaType: result.mediaType,
        annotations: result.annotations,
        tocOffset: result.tocOffset,
        bigSha256: createHash('sha256').update(big).digest('hex'),
      }
      renameSync(join(work, 'out.tar.gz'), blobPath)
      writeFileSync(metaPath, JSON.stringify(meta))
    } finally {
      rmSync(work, { recursive: true, force: true })
    }
  }
  const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as {
    diffID: string
    mediaType: string
    annotations: Record<string, string>
    tocOffset: number
    bigSha256: string
  }
  return {
    blob: readFileSync(blobPath),
    diffID: meta.diffID,
    mediaType: meta.mediaType,
    annotations: meta.annotations,
    smallName: 'etc/small.txt',
    smallContent: deterministicBytes(1024, 'small'),
    bigName: 'data/big.bin',
    bigSha256: meta.bigSha256,
    tocOffset: meta.tocOffset,
  }
}

/** Incompressible but reproducible bytes (an AES-CTR key stream seeded by `seed`). */
export function deterministicBytes(length: number, seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest()
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length))
}
