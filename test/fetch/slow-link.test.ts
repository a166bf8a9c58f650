import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { convertLayer } from '../../src/estargz/index.js'
import { FetchScheduler, type LinkChange } from '../../src/fetch/index.js'
import { ImageService } from '../../src/images/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import { Store } from '../../src/store/index.js'
import { FaultProxy } from '../helpers/fault-proxy.js'
import { pushTestImage } from '../helpers/images.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'

const CHUNK_BYTES = 16 * 1024
const FILE_BYTES = 32 * CHUNK_BYTES

let registry: RegistryServer
let proxy: FaultProxy
let work: string

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'edgestar-slow-link-'))
  const tree = join(work, 'tree')
  mkdirSync(tree)
  // Random bytes: a chunk stays CHUNK_BYTES on the wire, so a trickle makes it slow.
  writeFileSync(join(tree, 'data.bin'), randomBytes(FILE_BYTES))
  const blobPath = join(work, 'layer.tar.gz')
  const result = await convertLayer(tree, blobPath, { chunkSizeBytes: CHUNK_BYTES, level: 1 })

  registry = await startRegistry()
  const pusher = new RegistryClient({ dockerConfigPath: null })
  await pushTestImage(pusher, `${registry.host}/slow/link:1`, [
    { blob: readFileSync(blobPath), ...result },
  ])
  await pusher.close()
  proxy = await FaultProxy.start(registry.url)
})

after(async () => {
  await proxy?.stop()
  await registry?.stop()
  rmSync(work, { recursive: true, force: true })
})

describe('link state on a slow but answering registry', () => {
  it('turns degraded after slow answers and online again once they are fast', async () => {
    const store = Store.open(join(work, 'state'))
    const client = new RegistryClient({ dockerConfigPath: null })
    const scheduler = new FetchScheduler({
      store,
      registry: client,
      // Slow here: more than 100 ms plus 64 KiB/s. The trickle below gives 25 KiB/s.
      slowLink: { latencyMs: 100, rateBytesPerSec: 64 * 1024 },
    })
    scheduler.setBackgroundEnabled(false)
    const changes: LinkChange[] = []
    scheduler.on('link', (change: LinkChange) => changes.push(change))
    const images = new ImageService({ store, registry: client, scheduler })
    try {
      const image = await images.open(`${proxy.host}/slow/link:1`)
      const layer = image.layers[0]!
      const readChunk = (index: number): Promise<Buffer> =>
        images.readLayerFile(layer, 'data.bin', index * CHUNK_BYTES, 1)

      proxy.setFault({ kind: 'trickle', bytesPerTick: 512, tickMs: 20 })
      for (let i = 0; i < 4; i++) await readChunk(i)
      assert.equal(scheduler.linkState, 'degraded')
      const degraded = changes.find((change) => change.state === 'degraded')
      assert.match(degraded?.reason ?? '', /^slow link: /)

      proxy.setFault(undefined)
      for (let i = 4; i < 6; i++) await readChunk(i)
      assert.equal(scheduler.linkState, 'online')
      assert.deepEqual(
        changes.map((change) => change.state),
        ['degraded', 'online'],
      )
    } finally {
      scheduler.close()
      await client.close()
      store.close()
    }
  })

  it('keeps a fast link online with the default thresholds', async () => {
    const store = Store.open(join(work, 'state-default'))
    const client = new RegistryClient({ dockerConfigPath: null })
    const scheduler = new FetchScheduler({ store, registry: client })
    scheduler.setBackgroundEnabled(false)
    const images = new ImageService({ store, registry: client, scheduler })
    try {
      const image = await images.open(`${registry.host}/slow/link:1`)
      for (let i = 0; i < 8; i++)
        await images.readLayerFile(image.layers[0]!, 'data.bin', i * CHUNK_BYTES, 1)
      assert.equal(scheduler.linkState, 'online')
    } finally {
      scheduler.close()
      await client.close()
      store.close()
    }
  })
})
