import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { openLayer, readFileRange } from '../../src/estargz/index.js'
import { classifyLayer, RegistryClient } from '../../src/registry/index.js'
import { type Fixture, listFixtures } from '../helpers/fixtures.js'
import { pushTestImage } from '../helpers/images.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'

/** Pushes a reference fixture as a one-layer image carrying the sidecar's annotations. */
async function pushFixture(
  client: RegistryClient,
  host: string,
  fixture: Fixture,
): Promise<string> {
  const ref = `${host}/fixtures/${fixture.name}:${fixture.index.compression.replace(':', '-')}`
  await pushTestImage(client, ref, [
    {
      blob: fixture.bytes(),
      diffID: fixture.sidecar.diffID,
      mediaType:
        fixture.index.compression === 'zstd:chunked'
          ? 'application/vnd.oci.image.layer.v1.tar+zstd'
          : 'application/vnd.oci.image.layer.v1.tar+gzip',
      ...(fixture.sidecar.annotations ? { annotations: fixture.sidecar.annotations } : {}),
    },
  ])
  return ref
}

describe('reference fixtures read lazily from the registry', () => {
  let registry: RegistryServer
  let client: RegistryClient

  before(async () => {
    registry = await startRegistry()
    client = new RegistryClient({ dockerConfigPath: null })
  })
  after(async () => {
    await client?.close()
    await registry?.stop()
  })

  const lazy = [...listFixtures('estargz'), ...listFixtures('zstd:chunked')].filter(
    (f) => f.name !== 'large',
  )
  for (const fixture of lazy) {
    it(`serves every file of ${fixture.index.blob} byte-exactly over HTTP ranges`, async () => {
      const ref = await pushFixture(client, registry.host, fixture)
      const image = await client.resolve(ref, { platform: 'linux/amd64' })
      const layer = image.layers[0]!
      const verdict = classifyLayer(layer)
      assert.equal(verdict.mode, 'lazy')

      const reader = client.blobReader(image.reference, layer.digest, layer.size)
      const index = await openLayer(reader, {
        tocDigest: verdict.mode === 'lazy' ? verdict.tocDigest : '',
      })
      for (const file of fixture.sidecar.files) {
        if (file.type !== 'reg' || file.estargzMeta || file.sha256 === undefined) continue
        const data = await readFileRange(reader, index, file.name)
        assert.equal(createHash('sha256').update(data).digest('hex'), file.sha256, file.name)
      }
    })
  }

  it('reads one small file of the large layer with a fraction of its bytes', async () => {
    const fixture = listFixtures('estargz').find((f) => f.name === 'large')!
    const ref = await pushFixture(client, registry.host, fixture)
    const image = await client.resolve(ref, { platform: 'linux/amd64' })
    const layer = image.layers[0]!
    const verdict = classifyLayer(layer)
    assert.equal(verdict.mode, 'lazy')

    const before = client.stats()
    const reader = client.blobReader(image.reference, layer.digest, layer.size)
    const index = await openLayer(reader, {
      tocDigest: verdict.mode === 'lazy' ? verdict.tocDigest : '',
    })
    const small = fixture.sidecar.files
      .filter((f) => f.type === 'reg' && !f.estargzMeta && f.size > 0 && f.sha256)
      .sort((a, b) => a.size - b.size)[0]!
    const data = await readFileRange(reader, index, small.name)
    assert.equal(createHash('sha256').update(data).digest('hex'), small.sha256)

    const received = client.stats().bytesReceived - before.bytesReceived
    const tocAndFooter = layer.size - index.tocOffset
    const chunk = Math.max(
      ...(index.chunksByName.get(small.name) ?? []).map((c) => c.compressedSize),
    )
    const budget = tocAndFooter + chunk + 64 * 1024
    assert.ok(received <= budget, `received ${received} of ${layer.size} (budget ${budget})`)
    if (process.env.EDGESTAR_TEST_VERBOSE) console.log({ received, budget, blob: layer.size })
  })

  it('classifies a plain gzip layer as download-whole and streams it with its digest checked', async () => {
    const fixture = listFixtures('gzip').find((f) => f.name === 'mixed')!
    const ref = await pushFixture(client, registry.host, fixture)
    const image = await client.resolve(ref, { platform: 'linux/amd64' })
    const layer = image.layers[0]!
    assert.equal(classifyLayer(layer).mode, 'whole')
    assert.equal(layer.diffID, fixture.sidecar.diffID)
    assert.deepEqual(await client.fetchBlob(image.reference, layer.digest), fixture.bytes())
  })
})
