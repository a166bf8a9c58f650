import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The reference fixtures in `../shared/fixtures/estargz/` (made by the Go eStargz
 * implementation), with their index and JSON sidecars. EDGESTAR_FIXTURES_DIR overrides
 * the directory. See that directory's README for every field.
 */
export const FIXTURE_DIR = process.env.EDGESTAR_FIXTURES_DIR ?? findFixtureDir()

// Next to the work tree first; a clone elsewhere (a user's checkout) finds the shared copy.
function findFixtureDir(): string {
  const nextToTree = resolve(
    dirname(fileURLToPath(import.meta.url)),
    '../../../../shared/fixtures/estargz',
  )
  const shared = '/work/shared/fixtures/estargz'
  return existsSync(nextToTree) || !existsSync(shared) ? nextToTree : shared
}

/** The three forms each case comes in. */
export type FixtureCompression = 'estargz' | 'zstd:chunked' | 'gzip'

/** One line of `index.json`. */
export interface FixtureIndexEntry {
  sidecar: string
  blob: string
  compression: FixtureCompression
  digest: string
  size: number
  tocDigest: string | null
  diffID: string
  uncompressedSize: number
  chunkSize: number
  prioritized: string[]
  entries: number
}

/** One tar entry of the decompressed blob, in stream order. */
export interface FixtureFile {
  name: string
  type: 'reg' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo'
  size: number
  sha256?: string
  linkName?: string
  mode: number
  uid: number
  gid: number
  uname?: string
  gname?: string
  mtime: number
  devMajor?: number
  devMinor?: number
  xattrs?: Record<string, string>
  estargzMeta?: 'landmark' | 'toc'
  chunks?: { offset: number; chunkOffset: number; chunkSize: number; chunkDigest: string }[]
}

/** A blob's sidecar. */
export interface FixtureSidecar {
  blob: string
  digest: string
  size: number
  tocDigest: string | null
  diffID: string
  uncompressedSize: number
  compression: FixtureCompression
  chunkSize: number
  prioritized: string[]
  tocOffset?: number
  tocCompressedSize?: number
  footerSize?: number
  tocEntries?: number
  annotations?: Record<string, string>
  inputDiffID: string
  files: FixtureFile[]
}

/** A fixture blob with its sidecar and bytes. */
export interface Fixture {
  /** Case name: tiny, empty, mixed, large, prioritized, whiteout, deep, gnutar. */
  name: string
  index: FixtureIndexEntry
  sidecar: FixtureSidecar
  path: string
  bytes(): Buffer
}

/** Every fixture blob listed in index.json, optionally only one form. */
export function listFixtures(compression?: FixtureCompression): Fixture[] {
  const index = JSON.parse(
    readFileSync(join(FIXTURE_DIR, 'index.json'), 'utf8'),
  ) as FixtureIndexEntry[]
  return index
    .filter((entry) => compression === undefined || entry.compression === compression)
    .map((entry) => {
      const path = join(FIXTURE_DIR, entry.blob)
      return {
        name: entry.blob.split('.')[0]!,
        index: entry,
        sidecar: JSON.parse(
          readFileSync(join(FIXTURE_DIR, entry.sidecar), 'utf8'),
        ) as FixtureSidecar,
        path,
        bytes: () => readFileSync(path),
      }
    })
}

/** One fixture by case name and form; throws when it is missing. */
export function getFixture(name: string, compression: FixtureCompression): Fixture {
  const found = listFixtures(compression).find((f) => f.name === name)
  if (!found) throw new Error(`no fixture ${name} (${compression}) in ${FIXTURE_DIR}`)
  return found
}
