import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { MergedView } from '../../src/fs/index.js'
import { buildLayers } from './layer-builder.js'

async function names(view: MergedView, path: string): Promise<string[] | undefined> {
  return (await view.readdir(path))?.map((entry) => entry.name)
}

describe('MergedView', () => {
  it('lets the top layer win and merges directories', async () => {
    const view = new MergedView(
      buildLayers(
        { 'etc/': {}, 'etc/a': 'lower-a', 'etc/b': 'lower-b' },
        { 'etc/': {}, 'etc/a': 'upper-a', 'etc/c': 'upper-c' },
      ),
    )
    assert.deepEqual(await names(view, 'etc'), ['a', 'b', 'c'])
    assert.equal((await view.read('etc/a', 0, 100)).toString(), 'upper-a')
    assert.equal((await view.read('etc/b', 0, 100)).toString(), 'lower-b')
    assert.equal((await view.lookup('etc'))?.nlink, 2)
  })

  it('hides a whited-out name in lower layers of that directory only', async () => {
    const view = new MergedView(
      buildLayers(
        { 'a/': {}, 'a/x': 'ax', 'b/': {}, 'b/x': 'bx', x: 'rootx' },
        { 'a/': {}, 'a/.wh.x': '', 'a/y': 'ay' },
      ),
    )
    assert.deepEqual(await names(view, 'a'), ['y'])
    assert.equal(await view.lookup('a/x'), undefined)
    assert.equal(await view.lookup('a/.wh.x'), undefined)
    assert.equal((await view.read('b/x', 0, 10)).toString(), 'bx')
    assert.equal((await view.read('x', 0, 10)).toString(), 'rootx')
  })

  it('keeps an entry its own layer both whites out and recreates', async () => {
    const view = new MergedView(buildLayers({ f: 'old' }, { '.wh.f': '', f: 'new' }))
    assert.deepEqual(await names(view, ''), ['f'])
    assert.equal((await view.read('f', 0, 10)).toString(), 'new')
  })

  it('hides lower contents of an opaque directory wherever the marker sits', async () => {
    const view = new MergedView(
      buildLayers(
        { 'd/': {}, 'd/old': 'o', 'd/sub/': {}, 'd/sub/deep': 'x', keep: 'k' },
        { 'd/': {}, 'd/new': 'n', 'd/zz': 'z', 'd/.wh..wh..opq': '' },
      ),
    )
    assert.deepEqual(await names(view, 'd'), ['new', 'zz'])
    assert.equal(await view.lookup('d/old'), undefined)
    assert.equal(await view.lookup('d/sub/deep'), undefined)
    assert.deepEqual(await names(view, ''), ['d', 'keep'])
  })

  it('replaces a lower directory with an upper file and hides its subtree', async () => {
    const view = new MergedView(buildLayers({ 'p/': {}, 'p/q': 'q' }, { p: 'file' }))
    assert.equal((await view.lookup('p'))?.type, 'reg')
    assert.equal(await view.lookup('p/q'), undefined)
    assert.equal(await view.readdir('p'), undefined)
  })

  it('gives hardlinks their target inode, content and link count', async () => {
    const view = new MergedView(
      buildLayers({
        'bin/': {},
        'bin/a': 'same',
        'bin/b': { type: 'hardlink', linkName: 'bin/a' },
        'bin/c': { type: 'hardlink', linkName: 'bin/a' },
      }),
    )
    const a = await view.lookup('bin/a')
    const b = await view.lookup('bin/b')
    assert.ok(a && b)
    assert.equal(a.ino, b.ino)
    assert.equal(b.nlink, 3)
    assert.equal(b.sizeBytes, 4)
    assert.equal((await view.read('bin/c', 0, 10)).toString(), 'same')
  })

  it('presents directories the layer left implicit', async () => {
    const view = new MergedView(buildLayers({ 'x/y/z': 'deep' }))
    assert.deepEqual(await names(view, 'x'), ['y'])
    assert.equal((await view.lookup('x/y'))?.type, 'dir')
    assert.equal((await view.lookup('x'))?.nlink, 3)
  })

  it('counts symlink size as the target length and reads empty files', async () => {
    const view = new MergedView(
      buildLayers({ l: { type: 'symlink', linkName: 'some/target' }, empty: '' }),
    )
    assert.equal((await view.lookup('l'))?.sizeBytes, 11)
    assert.equal((await view.read('empty', 0, 4096)).length, 0)
  })

  it('lists a 100k-entry directory completely and in a stable order', async () => {
    const spec: Record<string, string> = {}
    for (let i = 0; i < 100_000; i++) spec[`big/f${i}`] = ''
    const view = new MergedView(buildLayers(spec))
    const first = await names(view, 'big')
    assert.equal(first?.length, 100_000)
    assert.equal(new Set(first).size, 100_000)
    const again = await new MergedView(buildLayers(spec)).readdir('big')
    assert.deepEqual(
      again?.map((entry) => entry.name),
      first,
    )
  })
})
