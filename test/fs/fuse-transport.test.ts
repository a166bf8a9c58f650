import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import { isEdgestarError } from '../../src/errors.js'
import type { LentBytes } from '../../src/fs/image-view.js'
import { abortMount, findFuseMounts, type ImageView, MergedView } from '../../src/fs/index.js'
import { mountDevice } from '../../src/fs/kernel/kernel-mount.js'
import { mountForTest, runChild, type TestMount } from '../helpers/mount.js'
import { buildLayers } from './layer-builder.js'

// A process that mounts a one-file image, then leaves without unmounting: by
// process.exit, or by an uncaught exception. Run with the compiled modules' URLs.
const EXITING_SERVER = `
const [fsUrl, builderUrl, dir, how] = process.argv.slice(1)
const { MergedView, mountImage } = await import(fsUrl)
const { buildLayers } = await import(builderUrl)
await mountImage(new MergedView(buildLayers({ f: 'x' })), dir)
console.log('mounted')
if (how === 'exit') process.exit(3)
setImmediate(() => {
  throw new Error('crash with the mount up')
})
`

// A process with libuv's default pool of 4 threads that mounts the same image at three
// directories, has cat read through the mounts it got, prints one line per step and
// unmounts. (A read of its own mount from its own pool would hold the thread its reply
// needs.)
const THREE_MOUNTS = `
const [fsUrl, builderUrl, ...dirs] = process.argv.slice(1)
const { execFile } = await import('node:child_process')
const { promisify } = await import('node:util')
const cat = async (path) => (await promisify(execFile)('cat', [path])).stdout
const { MergedView, mountImage } = await import(fsUrl)
const { buildLayers } = await import(builderUrl)
const mounts = []
for (const dir of dirs) {
  const view = new MergedView(buildLayers({ f: 'x' }))
  const mounted = await mountImage(view, dir).catch((err) => err)
  console.log(mounted.code ?? 'mounted')
  if (!mounted.code) mounts.push(mounted)
}
for (const mounted of mounts) console.log(await cat(mounted.mountpoint + '/f'))
for (const mounted of mounts) await mounted.unmount()
`

const compiled = (path: string): string => pathToFileURL(join(import.meta.dirname, path)).href

describe('a process that leaves with its mount still up', () => {
  let dir: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'edgestar-mnt-exit-'))
  })

  after(async () => {
    await abortMount(dir).catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })

  for (const [how, code] of [
    ['exit', 3],
    ['crash', 1],
  ] as const) {
    it(`exits on ${how} and leaves the mount point empty`, async () => {
      const args = [compiled('../../src/fs/index.js'), compiled('layer-builder.js'), dir, how]
      // A hang here is the failure: the child's pool threads stay blocked on /dev/fuse.
      const child = await runChild(
        process.execPath,
        ['--input-type=module', '-e', EXITING_SERVER, ...args],
        { timeoutMs: 60_000 },
      )

      assert.equal(child.stdout.trim(), 'mounted', child.stderr)
      assert.equal(child.code, code, child.stderr)
      assert.deepEqual(await findFuseMounts(dir), [])
      assert.deepEqual(await readdir(dir), [])
    })
  }
})

describe('mounts of a process whose libuv pool has the default 4 threads', () => {
  let base: string

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'edgestar-mnt-pool-'))
  })

  after(async () => {
    for (const name of ['a', 'b', 'c']) await abortMount(join(base, name)).catch(() => {})
    await rm(base, { recursive: true, force: true })
  })

  it('refuses the mount that would take the last thread, and the others keep serving', async () => {
    const dirs = ['a', 'b', 'c'].map((name) => join(base, name))
    for (const dir of dirs) await mkdir(dir)
    const { UV_THREADPOOL_SIZE: _size, ...env } = process.env
    const args = [compiled('../../src/fs/index.js'), compiled('layer-builder.js'), ...dirs]
    // A hang here is the failure: a third mount used to take the pool's last thread.
    const child = await runChild(
      process.execPath,
      ['--input-type=module', '-e', THREE_MOUNTS, ...args],
      { timeoutMs: 60_000, env },
    )

    assert.equal(child.code, 0, child.stderr)
    const lines = child.stdout.trim().split('\n')
    assert.deepEqual(lines, ['mounted', 'mounted', 'EDGESTAR_FS_THREAD_POOL_FULL', 'x', 'x'])
  })
})

// getxattr(2) into a buffer of `size` bytes, in a child: the errno name or the value.
const GETXATTR = `
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
path, name, size = sys.argv[1].encode(), sys.argv[2].encode(), int(sys.argv[3])
buf = ctypes.create_string_buffer(max(size, 1))
n = libc.getxattr(path, name, buf if size else None, size)
print(errno.errorcode[ctypes.get_errno()] if n < 0 else buf.raw[:n].decode() if size else n)
`

describe('extended attributes over the kernel transport', () => {
  let mount: TestMount
  const value = 'v'.repeat(100)

  before(async () => {
    const xattrs = { 'user.a': Buffer.from(value).toString('base64') }
    mount = await mountForTest(new MergedView(buildLayers({ f: { content: 'x', xattrs } })))
  })

  after(async () => {
    await mount?.cleanup()
  })

  const getxattr = async (name: string, size: number): Promise<string> => {
    const child = await runChild('python3', ['-c', GETXATTR, join(mount.dir, 'f'), name, `${size}`])
    return child.stdout.trim()
  }

  it('answers the size probe, the value, and ERANGE for a buffer too small', async () => {
    assert.equal(await getxattr('user.a', 0), '100')
    assert.equal(await getxattr('user.a', 100), value)
    assert.equal(await getxattr('user.a', 99), 'ERANGE')
    assert.equal(await getxattr('user.b', 0), 'ENODATA')
  })

  it('knows no attribute named after an object property, and keeps serving', async () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      assert.equal(await getxattr(name, 0), 'ENODATA', name)
      assert.equal(await getxattr(name, 64), 'ENODATA', name)
    }
    assert.equal(await getxattr('user.a', 100), value)
  })
})

/** `view` with `overrides` in place of its own methods (the rest bound to it). */
function withMethods(view: MergedView, overrides: Partial<ImageView>): ImageView {
  return new Proxy(view, {
    get(target, key) {
      if (Object.hasOwn(overrides, key)) return overrides[key as keyof ImageView]
      const value = Reflect.get(target, key, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

describe('directory listings over the kernel transport', () => {
  let mount: TestMount
  const listed: string[] = []

  before(async () => {
    const spec: Record<string, string> = { 'big/': '' }
    for (let i = 0; i < 2000; i++) spec[`big/file-${i}`] = ''
    const view = new MergedView(buildLayers({ 'big/': {}, ...spec }))
    const readdir = (path: string) => {
      listed.push(path)
      return view.readdir(path)
    }
    mount = await mountForTest(withMethods(view, { readdir }))
  })

  after(async () => {
    await mount?.cleanup()
  })

  it('lists a directory once; the kernel answers later opens from its cache', async () => {
    const first = await runChild('ls', ['-f', join(mount.dir, 'big')])
    const second = await runChild('ls', ['-f', join(mount.dir, 'big')])

    assert.equal(first.stdout.trim().split('\n').length, 2002)
    assert.equal(second.stdout, first.stdout)
    assert.deepEqual(
      listed.filter((path) => path === 'big'),
      ['big'],
    )
  })
})

describe('attributes over the kernel transport', () => {
  let mount: TestMount

  before(async () => {
    const view = new MergedView(
      buildLayers({
        old: { content: 'x', modtime: '1969-06-01T00:00:00Z' },
        older: { content: 'x', modtime: '1969-12-31T23:59:59.25Z' },
      }),
    )
    mount = await mountForTest(view)
  })

  after(async () => {
    await mount?.cleanup()
  })

  it('gives times before 1970 as the image has them, as extract does', async () => {
    const script = 'import os, sys; print(*[os.lstat(p).st_mtime_ns for p in sys.argv[1:]])'
    const paths = ['old', 'older'].map((name) => join(mount.dir, name))
    const child = await runChild('python3', ['-c', script, ...paths])
    assert.equal(child.stdout.trim(), `${-18_489_600n * 1_000_000_000n} -750000000`)
  })
})

describe('a READ answered after its timeout', () => {
  let mount: TestMount
  const pending: Array<(lent: LentBytes) => void> = []
  let released = 0
  let allReleased: () => void
  const whenAllReleased = new Promise<void>((resolve) => {
    allReleased = resolve
  })

  before(async () => {
    const view = new MergedView(buildLayers({ f: 'x'.repeat(8192) }))
    const readSlices = () => new Promise<LentBytes>((resolve) => pending.push(resolve))
    const sliceIfReady = () => undefined
    mount = await mountForTest(withMethods(view, { readSlices, sliceIfReady }), {
      opTimeoutMs: 300,
    })
  })

  after(async () => {
    await mount?.cleanup()
  })

  it('fails the reader with EIO and gives the lent bytes back when they come', async () => {
    const cat = await runChild('cat', [join(mount.dir, 'f')])
    assert.notEqual(cat.code, 0)
    assert.match(cat.stderr, /Input\/output error/)

    const requests = pending.splice(0)
    assert.ok(requests.length > 0)
    for (const resolve of requests) {
      resolve({
        parts: [Buffer.from('late')],
        release: () => {
          released++
          if (released === requests.length) allReleased()
        },
      })
    }
    await whenAllReleased
  })
})

describe('requests answered from the node table', () => {
  let mount: TestMount
  const lookedUp: string[] = []

  before(async () => {
    const xattrs = { 'user.a': Buffer.from('v').toString('base64') }
    const view = new MergedView(buildLayers({ d: { content: 'x', xattrs }, plain: 'y' }))
    const lookup = (path: string) => {
      lookedUp.push(path)
      return view.lookup(path)
    }
    mount = await mountForTest(withMethods(view, { lookup }))
  })

  after(async () => {
    await mount?.cleanup()
  })

  it('opens and answers xattrs of a looked-up file without asking the view again', async () => {
    const script = `
import os, sys
for path in sys.argv[1:]:
    print(os.listxattr(path), os.getxattr(path, 'user.a') if os.listxattr(path) else None)
    try:
        os.getxattr(path, 'security.selinux')
    except OSError as e:
        print(e.errno)
    with open(path) as f:
        print(f.read())
`
    const paths = ['d', 'plain'].map((name) => join(mount.dir, name))
    const child = await runChild('python3', ['-c', script, ...paths])

    assert.deepEqual(child.stdout.trim().split('\n'), [
      "['user.a'] b'v'",
      '61',
      'x',
      '[] None',
      '61',
      'y',
    ])
    assert.deepEqual(
      lookedUp.filter((path) => path !== ''),
      ['d', 'plain'],
      'one LOOKUP each, nothing after',
    )
  })
})

describe('a second mount made on top of a live one at the same moment', () => {
  it('backs out with EDGESTAR_FS_MOUNT_BUSY and leaves the first one serving', async () => {
    // Both passed the busy check before either mounted: the device is mounted directly.
    const first = await mountForTest(new MergedView(buildLayers({ f: 'x' })))
    try {
      await assert.rejects(
        mountDevice(first.dir, { source: 'edgestar:test', subtype: 'edgestar', allowOther: false }),
        (err) => isEdgestarError(err, 'EDGESTAR_FS_MOUNT_BUSY'),
      )
      assert.equal((await findFuseMounts(first.dir)).length, 1)
      assert.equal((await runChild('cat', [join(first.dir, 'f')])).stdout, 'x')
    } finally {
      await first.cleanup()
    }
  })
})
