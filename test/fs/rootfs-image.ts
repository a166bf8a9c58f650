import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { type ConvertResult, convertLayer } from '../../src/estargz/index.js'
import type { TestLayer } from '../helpers/images.js'

const execFileAsync = promisify(execFile)

const CACHE_DIR = process.env.EDGESTAR_CACHE_DIR ?? join(process.cwd(), '.cache')

/** The shared Debian rootfs (scripts/build-rootfs.sh), or undefined when not built. */
export function testRootfs(): string | undefined {
  return process.env.EDGESTAR_TEST_ROOTFS || undefined
}

/**
 * The test rootfs as one eStargz layer, converted once and cached under
 * `$EDGESTAR_CACHE_DIR/fs-test/`, keyed by the tree (paths, sizes, modes, mtimes): other
 * tests may touch the shared rootfs.
 * 1 MiB chunks so a lazy start fetches little more than it reads.
 */
export async function rootfsLayer(
  rootfs: string,
): Promise<TestLayer & { result: ConvertResult; blobPath: string }> {
  const key = await treeFingerprint(rootfs)
  const dir = join(CACHE_DIR, 'fs-test')
  const blobPath = join(dir, `rootfs-${key}.estargz`)
  const resultPath = `${blobPath}.json`
  await mkdir(dir, { recursive: true })

  let result: ConvertResult
  try {
    result = JSON.parse(await readFile(resultPath, 'utf8')) as ConvertResult
  } catch {
    result = await convertLayer(rootfs, blobPath, { chunkSizeBytes: 1 << 20, level: 6 })
    await writeFile(resultPath, JSON.stringify(result))
  }
  return {
    blob: await readFile(blobPath),
    diffID: result.diffID,
    mediaType: result.mediaType,
    annotations: result.annotations,
    result,
    blobPath,
  }
}

/** A cheap fingerprint of a tree's metadata (no content is read). */
async function treeFingerprint(root: string): Promise<string> {
  const hash = createHash('sha256').update('v1')
  const visit = async (dir: string): Promise<void> => {
    const names = (await readdir(dir)).sort()
    for (const name of names) {
      const path = join(dir, name)
      const info = await lstat(path)
      hash.update(`${path}\0${info.size}\0${info.mode}\0${info.mtimeMs}\n`)
      if (info.isDirectory()) await visit(path)
    }
  }
  await visit(root)
  return hash.digest('hex').slice(0, 16)
}

/**
 * `edgestar extract` of a cached layer blob into a fresh directory (the reference the
 * mount is compared with). The caller removes it.
 */
export async function extractLayer(blobPath: string, dir: string): Promise<void> {
  await execFileAsync(join(process.cwd(), 'bin/edgestar'), ['extract', blobPath, dir], {
    maxBuffer: 16 << 20,
  })
}
