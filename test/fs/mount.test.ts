import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { findFuseMounts, LAZY_READ_AHEAD_KIB, MergedView } from '../../src/fs/index.js'
import {
  mountForTest,
  runChild,
  type ScannedEntry,
  scanTree,
  type TestMount,
} from '../helpers/mount.js'
import { buildLayers } from './layer-builder.js'

const XATTR_VALUE = Buffer.from('hello').toString('base64')

describe('FUSE mount of a layer stack', () => {
  let mount: TestMount
  let scanned: Map<string, ScannedEntry>

  before(async () => {
    const view = new MergedView(
      buildLayers(
        {
          'etc/': {},
          'etc/gone': 'x',
          'etc/keep': 'keep',
          'opq/': {},
          'opq/hidden': 'h',
          'bin/': {},
          'bin/tool': { content: '#!/bin/sh\n', mode: 0o4755, uid: 12, gid: 34 },
        },
        {
          'etc/': {},
          'etc/.wh.gone': '',
          'opq/': {},
          'opq/.wh..wh..opq': '',
          'opq/new': 'n',
          'bin/': {},
          'bin/link': { type: 'hardlink', linkName: 'bin/real' },
          'bin/real': { content: 'real', xattrs: { 'user.greeting': XATTR_VALUE } },
          'dev/': {},
          'dev/null': { type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 },
          'dev/sda': { type: 'block', devMajor: 8, devMinor: 0, mode: 0o660 },
          fifo: { type: 'fifo', mode: 0o600 },
          sym: { type: 'symlink', linkName: 'etc/keep', mode: 0o777 },
          empty: '',
        },
      ),
    )
    mount = await mountForTest(view)
    scanned = new Map((await scanTree(mount.dir)).map((entry) => [entry.path, entry]))
  })

  after(async () => {
    await mount?.cleanup()
  })

  it('shows the merged tree with whiteouts and opaque directories applied', () => {
    assert.deepEqual([...scanned.keys()].sort(), [
      '',
      'bin',
      'bin/link',
      'bin/real',
      'bin/tool',
      'dev',
      'dev/null',
      'dev/sda',
      'empty',
      'etc',
      'etc/keep',
      'fifo',
      'opq',
      'opq/new',
      'sym',
    ])
  })

  it('reports every type with mode, owner, size, device numbers and link target', () => {
    assert.equal(scanned.get('bin/tool')?.mode, 0o4755)
    assert.equal(scanned.get('bin/tool')?.uid, 12)
    assert.equal(scanned.get('bin/tool')?.gid, 34)
    assert.equal(scanned.get('dev/null')?.type, 'char')
    assert.deepEqual([scanned.get('dev/null')?.devMajor, scanned.get('dev/null')?.devMinor], [1, 3])
    assert.deepEqual([scanned.get('dev/sda')?.devMajor, scanned.get('dev/sda')?.devMinor], [8, 0])
    assert.equal(scanned.get('fifo')?.type, 'fifo')
    assert.equal(scanned.get('sym')?.linkName, 'etc/keep')
    assert.equal(scanned.get('sym')?.size, 'etc/keep'.length)
    assert.equal(scanned.get('')?.nlink, 6)
  })

  it('serves content, empty files and xattrs', () => {
    assert.equal(scanned.get('empty')?.size, 0)
    assert.ok(scanned.get('empty')?.sha256)
    assert.deepEqual(scanned.get('bin/real')?.xattrs, { 'user.greeting': XATTR_VALUE })
    assert.deepEqual(scanned.get('bin/tool')?.xattrs, {})
  })

  it('gives hardlinks one inode number', () => {
    assert.equal(scanned.get('bin/link')?.ino, scanned.get('bin/real')?.ino)
    assert.equal(scanned.get('bin/link')?.nlink, 2)
    assert.notEqual(scanned.get('bin/tool')?.ino, scanned.get('bin/real')?.ino)
  })

  it('lists . and .. and refuses writes', async () => {
    const listing = await runChild('ls', ['-a1', `${mount.dir}/etc`])
    assert.deepEqual(listing.stdout.trim().split('\n'), ['.', '..', 'keep'])
    const write = await runChild('sh', ['-c', `echo x > ${mount.dir}/etc/keep`])
    assert.notEqual(write.code, 0)
    assert.match(write.stderr, /Read-only file system/)
  })

  it('reports the image size in statfs', async () => {
    const df = await runChild('stat', ['-f', '-c', '%S %b', mount.dir])
    const [blockBytes, blocks] = df.stdout.trim().split(' ').map(Number)
    assert.equal(blockBytes * blocks, 4096 * Math.ceil(29 / 4096))
  })

  it('sets the kernel read-ahead it is given, and changes it on request', async () => {
    const readAheadKiB = async (): Promise<number> => {
      const [info] = await findFuseMounts(mount.dir)
      const text = await readFile(`/sys/class/bdi/0:${info!.connectionId}/read_ahead_kb`, 'utf8')
      return Number(text)
    }
    assert.equal(await readAheadKiB(), 1024, 'a mount of cached data starts at 1 MiB')
    assert.equal(await mount.mounted.setReadAhead(LAZY_READ_AHEAD_KIB), true)
    assert.equal(await readAheadKiB(), LAZY_READ_AHEAD_KIB)
  })
})

describe('FUSE mount of an image without xattrs', () => {
  let mount: TestMount

  before(async () => {
    mount = await mountForTest(new MergedView(buildLayers({ 'etc/': {}, 'etc/hosts': 'h' })))
  })

  after(async () => {
    await mount?.cleanup()
  })

  it('tells the kernel xattrs are not supported, and listings still work', async () => {
    // Python in a child: the serving process must never read its own mount synchronously.
    const probe = `
import errno, os, sys
for attempt in range(2):
    try:
        os.getxattr(sys.argv[1], 'user.missing')
    except OSError as e:
        print(errno.errorcode[e.errno])
print('ok')
`
    const result = await runChild('python3', ['-c', probe, `${mount.dir}/etc/hosts`])
    assert.deepEqual(result.stdout.trim().split('\n'), ['ENOTSUP', 'ENOTSUP', 'ok'], 'errno 95')
    const listing = await runChild('ls', ['-l', `${mount.dir}/etc`])
    assert.equal(listing.code, 0)
    assert.match(listing.stdout, /hosts/)
  })
})
