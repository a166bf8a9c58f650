import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { convertLayer } from '../../src/estargz/index.js'
import { FetchScheduler } from '../../src/fetch/index.js'
import { openStoreView } from '../../src/fs/index.js'
import { ImageService } from '../../src/images/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import { Store } from '../../src/store/index.js'
import { pushTestImage } from '../helpers/images.js'
import { mountForTest, type TestMount } from '../helpers/mount.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'

const execFileAsync = promisify(execFile)

/** Not a multiple of a page: the kernel's 4 KiB-aligned reads straddle chunk ends. */
const CHUNK_BYTES = 200_000
/** Three windows: readers of several files evict each other's chunks all the time. */
const READ_CACHE_BYTES = 3 * CHUNK_BYTES

// Reads each file with 1 MiB, odd-sized and boundary-straddling preads (and past the end)
// and prints one line per file: path, sha256 of the sequential read, sha256 of the
// concatenated odd reads, and how many bytes reads past the end returned.
const READER = `
import hashlib, os, sys
chunk = int(sys.argv[1])
for path in sys.argv[2:]:
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    whole = hashlib.sha256()
    off = 0
    while True:
        b = os.pread(fd, 1 << 20, off)
        if not b: break
        whole.update(b); off += len(b)
    odd = hashlib.sha256()
    for k in range(1, size // chunk + 2):
        c = k * chunk
        for at, n in ((c - 5, 10), (c - 1, 1), (c, 3), (c - 4096, 8192)):
            if 0 <= at < size: odd.update(os.pread(fd, n, at))
    past = len(os.pread(fd, 100, size)) + len(os.pread(fd, 100, size + 12345))
    os.close(fd)
    print(path, whole.hexdigest(), odd.hexdigest(), past)
`

function expectedLine(path: string, data: Buffer): string {
  const odd = createHash('sha256')
  for (let k = 1; k <= Math.floor(data.length / CHUNK_BYTES) + 1; k++) {
    const at = k * CHUNK_BYTES
    for (const [from, n] of [
      [at - 5, 10],
      [at - 1, 1],
      [at, 3],
      [at - 4096, 8192],
    ] as const) {
      if (from >= 0 && from < data.length) odd.update(data.subarray(from, from + n))
    }
  }
  const whole = createHash('sha256').update(data).digest('hex')
  return `${path} ${whole} ${odd.digest('hex')} 0`
}

// Two layers: the top one shadows a file, whites one out and holds a hardlink. Readers in
// child processes overlap on the same and on other files, so windows are loaded, served
// synchronously and evicted under each other; with a chunk cache limit, chunks are also
// evicted from disk while being read.
for (const cacheLimitBytes of [0, 1_000_000]) {
  describe(`reads through the window cache of a mount (cache limit ${cacheLimitBytes})`, () => {
    let work: string
    let registry: RegistryServer
    let mount: TestMount
    let close: () => Promise<void>
    const expected = new Map<string, Buffer>()

    before(async () => {
      work = mkdtempSync(join(tmpdir(), 'edgestar-window-read-'))
      const bottom = join(work, 'bottom')
      const top = join(work, 'top')
      mkdirSync(join(bottom, 'a'), { recursive: true })
      mkdirSync(join(top, 'hard'), { recursive: true })
      const put = (tree: string, name: string, data: Buffer): void => {
        writeFileSync(join(tree, name), data)
      }
      const files: [string, string, number][] = [
        [bottom, 'a/big1.bin', 1_300_017],
        [bottom, 'a/big2.bin', 1_000_000],
        [bottom, 'a/edge.bin', CHUNK_BYTES + 1],
        [bottom, 'shadow.bin', 700_003],
        [bottom, 'gone.bin', 450_000],
        [top, 'shadow.bin', 533_333],
        [top, 'hard/orig.bin', 999_999],
      ]
      for (const [tree, name, size] of files) {
        const data = randomBytes(size)
        put(tree, name, data)
        if (tree === top || !files.some(([t, n]) => t === top && n === name))
          expected.set(name, data)
      }
      expected.delete('gone.bin')
      put(top, '.wh.gone.bin', Buffer.alloc(0))
      linkSync(join(top, 'hard/orig.bin'), join(top, 'hard/link.bin'))
      expected.set('hard/link.bin', expected.get('hard/orig.bin')!)

      registry = await startRegistry()
      const pusher = new RegistryClient({ dockerConfigPath: null })
      const layers = []
      for (const tree of [bottom, top]) {
        const blobPath = `${tree}.tar.gz`
        const result = await convertLayer(tree, blobPath, { chunkSizeBytes: CHUNK_BYTES, level: 1 })
        layers.push({ blob: readFileSync(blobPath), ...result })
      }
      await pushTestImage(pusher, `${registry.host}/window/read:1`, layers)
      await pusher.close()

      const store = Store.open(join(work, 'state'), { cacheLimitBytes })
      const client = new RegistryClient({ dockerConfigPath: null })
      const scheduler = new FetchScheduler({ store, registry: client })
      scheduler.setBackgroundEnabled(false)
      const images = new ImageService({ store, registry: client, scheduler })
      const image = await images.open(`${registry.host}/window/read:1`)
      const view = await openStoreView({
        dbPath: store.dbPath,
        layerDigests: image.layers,
        read: images.readLayerFile,
        readCacheBytes: READ_CACHE_BYTES,
      })
      mount = await mountForTest(view, { kernelCache: false })
      close = async () => {
        await mount.cleanup()
        scheduler.close()
        await client.close()
        store.close()
      }
    })

    after(async () => {
      await close?.()
      await registry?.stop()
      rmSync(work, { recursive: true, force: true })
    })

    async function readAll(readers: number): Promise<void> {
      const names = [...expected.keys()]
      const runs = []
      for (let r = 0; r < readers; r++) {
        // Each reader starts at a different file, so they overlap on the same and on other files.
        const order = names.map((_, i) => names[(i + r) % names.length]!)
        runs.push(
          execFileAsync('python3', [
            '-c',
            READER,
            String(CHUNK_BYTES),
            ...order.map((name) => join(mount.dir, name)),
          ]),
        )
      }
      for (const { stdout } of await Promise.all(runs)) {
        for (const line of stdout.trim().split('\n')) {
          const [path, ...rest] = line.split(' ')
          const name = path!.slice(mount.dir.length + 1)
          assert.equal(`${name} ${rest.join(' ')}`, expectedLine(name, expected.get(name)!), name)
        }
      }
    }

    it('gives concurrent readers the top layer bytes, from the registry then memory', async () => {
      await readAll(6)
      await readAll(6)
      await readAll(3)
    })
  })
}
