import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseReference, RegistryClient } from '../../src/registry/index.js'
import { pushTestImage } from '../helpers/images.js'
import {
  type ImageMount,
  mountImageFromRegistry,
  runChild,
  type ScannedEntry,
  scanTree,
} from '../helpers/mount.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'
import { type PauseProxy, startPauseProxy } from './pause-proxy.js'
import { extractLayer, rootfsLayer, testRootfs } from './rootfs-image.js'

const ROOTFS = testRootfs()
const OFFLINE_WAIT_MS = 1500
/** A lazy start may fetch at most this share of the image's blob bytes. */
const MAX_LAZY_FRACTION = 0.35

function presentFraction(stack: ImageMount, ref: string): number {
  const image = stack.store.images.get(parseReference(ref).name)
  assert.ok(image)
  const progress = stack.images.progress(image)
  return progress.presentBytes / progress.totalBytes
}

describe('mounting a Debian image from a loopback registry', {
  skip: !ROOTFS && 'no test rootfs',
}, () => {
  let server: RegistryServer
  let proxy: PauseProxy
  let ref: string
  let blobBytes: number
  let blobPath: string
  let completeStateDir: string | undefined
  const dirs: string[] = []

  before(async () => {
    const layer = await rootfsLayer(ROOTFS as string)
    blobBytes = layer.blob.length
    blobPath = layer.blobPath
    server = await startRegistry()
    proxy = await startPauseProxy(Number(server.host.split(':')[1]))
    const pusher = new RegistryClient({ dockerConfigPath: null })
    await pushTestImage(pusher, `${server.host}/fs/debian:py`, [layer])
    await pusher.close()
    ref = `${proxy.host}/fs/debian:py`
  })

  after(async () => {
    await proxy?.stop()
    await server?.stop()
    for (const dir of dirs) await rm(dir, { recursive: true, force: true })
  })

  async function stateDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'edgestar-fs-state-'))
    dirs.push(dir)
    return dir
  }

  it('runs python3 in a chroot after fetching a small fraction, and a restart fetches nothing again', async () => {
    const dir = await stateDir()
    const first = await mountImageFromRegistry(dir, ref, { bandwidthBytesPerSec: 64 * 1024 })
    try {
      // As `edgestar mount` does: the rest of the image trickles in under the cap.
      const background = first.images.pull(first.image, { priority: 'background' })
      background.catch(() => {})
      const run = await runChild('chroot', [first.mount.dir, 'python3', '-c', 'print(1)'])
      assert.equal(run.stdout.trim(), '1', run.stderr)
      const fetched = first.registry.stats().bytesReceived
      // Seen on the 150 MB rootfs (61 MB blob, 1 MiB chunks): about 0.1.
      console.log(
        `lazy start fetched ${fetched} of ${blobBytes} bytes (${(fetched / blobBytes).toFixed(3)})`,
      )
      assert.ok(fetched / blobBytes < MAX_LAZY_FRACTION, `fetched ${fetched} of ${blobBytes}`)
      assert.ok(presentFraction(first, ref) < 1, 'the background fetch had already completed')
    } finally {
      await first.close()
    }

    const second = await mountImageFromRegistry(dir, ref, {
      background: false,
      offlineWaitMs: OFFLINE_WAIT_MS,
    })
    try {
      const run = await runChild('chroot', [second.mount.dir, 'python3', '-c', 'print(1)'])
      assert.equal(run.stdout.trim(), '1', run.stderr)
      assert.equal(second.registry.stats().bytesReceived, 0)
    } finally {
      await second.close()
    }
  })

  it('serves cached files offline, fails a missing one with EIO, and completes once back', async () => {
    const dir = await stateDir()
    const stack = await mountImageFromRegistry(dir, ref, {
      background: false,
      offlineWaitMs: OFFLINE_WAIT_MS,
    })
    try {
      const cached = await runChild('cat', [`${stack.mount.dir}/etc/os-release`])
      assert.match(cached.stdout, /bookworm/)

      await proxy.pause()
      const again = await runChild('cat', [`${stack.mount.dir}/etc/os-release`])
      assert.match(again.stdout, /bookworm/)
      const missing = await runChild('cat', [`${stack.mount.dir}/usr/bin/python3`])
      assert.notEqual(missing.code, 0)
      assert.match(missing.stderr, /Input\/output error/)

      stack.scheduler.setBackgroundEnabled(true)
      const image = stack.store.images.get(parseReference(ref).name)
      assert.ok(image)
      const pulled = stack.images.pull(image, { priority: 'background' })
      await proxy.resume()
      const progress = await pulled
      assert.equal(progress.verifiedLayers, image.layers.length)
      assert.equal(progress.presentBytes, progress.totalBytes)
      completeStateDir = dir
    } finally {
      await proxy.resume().catch(() => {})
      await stack.close()
    }
  })

  it('shows every entry and file as `edgestar extract` of the same blob', async () => {
    const extracted = await stateDir()
    await extractLayer(blobPath, extracted)
    // A fully fetched state directory keeps this test to the FUSE path, not the network.
    const stack = await mountImageFromRegistry(completeStateDir ?? (await stateDir()), ref)
    try {
      const [mounted, local] = await Promise.all([scanTree(stack.mount.dir), scanTree(extracted)])
      const comparable = (entries: ScannedEntry[]): Map<string, unknown> =>
        new Map(
          entries
            .filter((entry) => entry.path !== '')
            .map(({ ino: _ino, size, ...rest }) => [
              rest.path,
              // A directory's size is the local file system's business, not the image's.
              rest.type === 'dir' ? rest : { ...rest, size },
            ]),
        )
      const want = comparable(local)
      const got = comparable(mounted)
      assert.deepEqual([...got.keys()], [...want.keys()])
      for (const [path, entry] of want) assert.deepEqual(got.get(path), entry, path)
    } finally {
      await stack.close()
    }
  })
})
