import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { openLocalView } from '../../src/fs/index.js'
import { countMainThreadDecoding } from '../helpers/main-thread-decoding.js'
import { mountForTest, type ScannedEntry, scanTree } from '../helpers/mount.js'

const FIXTURES = process.env.EDGESTAR_FIXTURES_DIR ?? '/work/shared/fixtures/estargz'

interface SidecarFile {
  name: string
  type: string
  size: number
  sha256?: string
  mode: number
  uid: number
  gid: number
  mtime: number
  linkName?: string
  devMajor?: number
  devMinor?: number
  xattrs?: Record<string, string>
  estargzMeta?: string
}

interface IndexRow {
  sidecar: string
  blob: string
}

/** A fixture's sidecar entries, named as the mount shows them. */
function sidecarFiles(row: IndexRow): SidecarFile[] {
  const sidecar = JSON.parse(readFileSync(join(FIXTURES, row.sidecar), 'utf8')) as {
    files: SidecarFile[]
  }
  return sidecar.files.map((file) => ({
    ...file,
    name: cleanName(file.name),
    linkName: file.type === 'hardlink' ? cleanName(file.linkName ?? '') : file.linkName,
  }))
}

/** What the mount must show for a sidecar entry, in ScannedEntry terms. */
function expected(file: SidecarFile, byName: Map<string, SidecarFile>): Partial<ScannedEntry> {
  const target = file.type === 'hardlink' ? byName.get(file.linkName ?? '') : undefined
  const source = target ?? file
  return {
    type: (source.type === 'hardlink' ? 'reg' : source.type) as ScannedEntry['type'],
    mode: source.mode & 0o7777,
    uid: source.uid,
    gid: source.gid,
    mtimeSec: source.mtime,
    ...(source.type === 'reg' ? { size: source.size, sha256: source.sha256 } : {}),
    ...(source.type === 'symlink'
      ? { linkName: source.linkName, size: Buffer.byteLength(source.linkName ?? '') }
      : {}),
    ...(source.type === 'char' || source.type === 'block'
      ? { devMajor: source.devMajor ?? 0, devMinor: source.devMinor ?? 0 }
      : {}),
    xattrs: source.xattrs ?? {},
  }
}

/** Sidecar names are raw tar names (`./sub/`); the mount shows `sub`. */
function cleanName(name: string): string {
  return name
    .replace(/^(\.?\/)+/, '')
    .replace(/\/+$/, '')
    .replace(/^\.$/, '')
}

function isHidden(file: SidecarFile): boolean {
  const base = file.name.replace(/\/$/, '').split('/').pop() ?? ''
  return file.estargzMeta !== undefined || base.startsWith('.wh.')
}

const rows = JSON.parse(readFileSync(join(FIXTURES, 'index.json'), 'utf8')) as IndexRow[]

describe('mounting every reference fixture', () => {
  for (const row of rows) {
    it(`shows ${row.blob} exactly as its sidecar lists it`, async () => {
      const files = sidecarFiles(row)
      const byName = new Map(files.map((file) => [file.name, file]))

      const mount = await mountForTest(await openLocalView([join(FIXTURES, row.blob)]))
      try {
        const scanned = new Map((await scanTree(mount.dir)).map((entry) => [entry.path, entry]))
        const visible = files.filter((file) => !isHidden(file))
        const listed = [...scanned.keys()].filter((path) => path !== '' && !byName.has(path))
        // Only parents the tar left implicit may appear without a sidecar line.
        for (const path of listed) assert.equal(scanned.get(path)?.type, 'dir', path)

        for (const file of visible) {
          const seen = scanned.get(file.name)
          assert.ok(seen, `${file.name} missing from the mount`)
          const want = expected(file, byName)
          const got = Object.fromEntries(
            Object.keys(want).map((key) => [key, seen[key as keyof ScannedEntry]]),
          )
          assert.deepEqual(got, want, file.name)
          if (file.type === 'hardlink') {
            assert.equal(seen.ino, scanned.get(file.linkName ?? '')?.ino, `${file.name} inode`)
          }
        }
        for (const file of files.filter(isHidden))
          assert.equal(scanned.has(file.name), false, file.name)
      } finally {
        await mount.cleanup()
      }
    })
  }
})

// Issue #4: a FUSE handler never blocks the event loop. A child process reads every file
// (a read of one's own mount from the serving thread would deadlock); the serving process
// counts the inflate and hash calls on its own thread.
describe('a --layer mount inflates and checks off the event loop', () => {
  for (const row of rows) {
    const isPlain = !/\.(estargz|zstdchunked)\./.test(row.blob)
    it(`reads every file of ${row.blob} with no inflate or hash on the event loop`, async () => {
      const regular = sidecarFiles(row).filter((file) => file.type === 'reg' && !isHidden(file))
      const decoding = countMainThreadDecoding()
      try {
        const view = await openLocalView([join(FIXTURES, row.blob)])
        // NOTE: a TOC is still inflated and hashed on this thread once at open, before the
        // mount serves anything; a plain tar is inflated whole at open, on the thread.
        const atOpen = decoding.seen.splice(0)
        if (isPlain) assert.deepEqual(atOpen, [], 'the plain tar was inflated off the loop')

        const mount = await mountForTest(view)
        try {
          const scanned = new Map((await scanTree(mount.dir)).map((e) => [e.path, e]))
          for (const file of regular)
            assert.equal(scanned.get(file.name)?.sha256, file.sha256, file.name)
        } finally {
          await mount.cleanup()
        }
        assert.deepEqual(decoding.seen, [], 'nothing inflated or hashed on the event loop')
      } finally {
        decoding.restore()
      }
    })
  }
})
