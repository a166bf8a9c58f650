import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { type ImageView, MergedView } from '../../src/fs/index.js'
import { buildLayers, buildStoreView, type LayerSpec } from './layer-builder.js'

async function names(view: ImageView, path: string): Promise<string[] | undefined> {
  return (await view.readdir(path))?.map((entry) => entry.name)
}

type ViewFactory = (...specs: LayerSpec[]) => Promise<ImageView>

const views: ImageView[] = []
const dirs: string[] = []

const IMPLEMENTATIONS: [string, ViewFactory][] = [
  ['in-memory TOC layers', async (...specs) => new MergedView(buildLayers(...specs))],
  [
    'SQLite store rows',
    async (...specs) => {
      const dir = await mkdtemp(join(tmpdir(), 'edgestar-view-'))
      dirs.push(dir)
      const view = await buildStoreView(dir, ...specs)
      views.push(view)
      return view
    },
  ],
]

after(async () => {
  for (const view of views) await view.close()
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

for (const [label, open] of IMPLEMENTATIONS)
  describe(`merged view over ${label}`, () => {
    it('lets the top layer win and merges directories', async () => {
      const view = await open(
        { 'etc/': {}, 'etc/a': 'lower-a', 'etc/b': 'lower-b' },
        { 'etc/': {}, 'etc/a': 'upper-a', 'etc/c': 'upper-c' },
      )
      assert.deepEqual(await names(view, 'etc'), ['a', 'b', 'c'])
      assert.equal((await view.read('etc/a', 0, 100)).toString(), 'upper-a')
      assert.equal((await view.read('etc/b', 0, 100)).toString(), 'lower-b')
      assert.equal((await view.lookup('etc'))?.nlink, 2)
    })

    it('hides a whited-out name in lower layers of that directory only', async () => {
      const view = await open(
        { 'a/': {}, 'a/x': 'ax', 'b/': {}, 'b/x': 'bx', x: 'rootx' },
        { 'a/': {}, 'a/.wh.x': '', 'a/y': 'ay' },
      )
      assert.deepEqual(await names(view, 'a'), ['y'])
      assert.equal(await view.lookup('a/x'), undefined)
      assert.equal(await view.lookup('a/.wh.x'), undefined)
      assert.equal((await view.read('b/x', 0, 10)).toString(), 'bx')
      assert.equal((await view.read('x', 0, 10)).toString(), 'rootx')
    })

    it('keeps an entry its own layer both whites out and recreates', async () => {
      const view = await open({ f: 'old' }, { '.wh.f': '', f: 'new' })
      assert.deepEqual(await names(view, ''), ['f'])
      assert.equal((await view.read('f', 0, 10)).toString(), 'new')
    })

    it('hides lower contents of an opaque directory wherever the marker sits', async () => {
      const view = await open(
        { 'd/': {}, 'd/old': 'o', 'd/sub/': {}, 'd/sub/deep': 'x', keep: 'k' },
        { 'd/': {}, 'd/new': 'n', 'd/zz': 'z', 'd/.wh..wh..opq': '' },
      )
      assert.deepEqual(await names(view, 'd'), ['new', 'zz'])
      assert.equal(await view.lookup('d/old'), undefined)
      assert.equal(await view.lookup('d/sub/deep'), undefined)
      assert.deepEqual(await names(view, ''), ['d', 'keep'])
    })

    it('replaces a lower directory with an upper file and hides its subtree', async () => {
      const view = await open({ 'p/': {}, 'p/q': 'q' }, { p: 'file' })
      assert.equal((await view.lookup('p'))?.type, 'reg')
      assert.equal(await view.lookup('p/q'), undefined)
      assert.equal(await view.readdir('p'), undefined)
    })

    it('gives hardlinks their target inode, content and link count', async () => {
      const view = await open({
        'bin/': {},
        'bin/a': 'same',
        'bin/b': { type: 'hardlink', linkName: 'bin/a' },
        'bin/c': { type: 'hardlink', linkName: 'bin/a' },
      })
      const a = await view.lookup('bin/a')
      const b = await view.lookup('bin/b')
      assert.ok(a && b)
      assert.equal(a.ino, b.ino)
      assert.equal(b.nlink, 3)
      assert.equal(b.sizeBytes, 4)
      assert.equal((await view.read('bin/c', 0, 10)).toString(), 'same')
    })

    it('presents directories the layer left implicit', async () => {
      const view = await open({ 'x/y/z': 'deep' })
      assert.deepEqual(await names(view, 'x'), ['y'])
      assert.equal((await view.lookup('x/y'))?.type, 'dir')
      assert.equal((await view.lookup('x'))?.nlink, 3)
    })

    it('counts symlink size as the target length and reads empty files', async () => {
      const view = await open({ l: { type: 'symlink', linkName: 'some/target' }, empty: '' })
      assert.equal((await view.lookup('l'))?.sizeBytes, 11)
      assert.equal((await view.read('empty', 0, 4096)).length, 0)
    })

    it('lists a 100k-entry directory completely and in a stable order', async () => {
      const spec: Record<string, string> = {}
      for (let i = 0; i < 100_000; i++) spec[`big/f${i}`] = ''
      const view = await open(spec)
      const first = await names(view, 'big')
      assert.equal(first?.length, 100_000)
      assert.equal(new Set(first).size, 100_000)
      const again = await (await open(spec)).readdir('big')
      assert.deepEqual(
        again?.map((entry) => entry.name),
        first,
      )
    })
  })
