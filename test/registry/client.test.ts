import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { isEdgestarError } from '../../src/errors.js'
import { classifyLayer, RegistryClient } from '../../src/registry/index.js'
import { makeTarLayer, pushMultiPlatformImage, pushTestImage, sha256 } from '../helpers/images.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'

describe('registry client against docker-registry', () => {
  let registry: RegistryServer
  let client: RegistryClient

  before(async () => {
    registry = await startRegistry()
    client = new RegistryClient({ dockerConfigPath: null, retry: { baseDelayMs: 5 } })
  })
  after(async () => {
    await client?.close()
    await registry?.stop()
  })

  it('pushes an image and resolves it with each layer paired to its diffID', async () => {
    const a = await makeTarLayer({ 'a.txt': 'alpha' })
    const b = await makeTarLayer({ 'b.txt': 'beta' })
    b.annotations = { 'containerd.io/snapshot/stargz/toc.digest': sha256(Buffer.from('toc')) }
    const pushed = await pushTestImage(client, `${registry.host}/app:1.0`, [a, b])

    const image = await client.resolve(`${registry.host}/app:1.0`, { platform: 'linux/amd64' })
    assert.equal(image.manifestDigest, pushed.manifestDigest)
    assert.deepEqual(
      image.layers.map((l) => l.diffID),
      [a.diffID, b.diffID],
    )
    assert.deepEqual(
      image.layers.map((l) => l.digest),
      [sha256(a.blob), sha256(b.blob)],
    )
    assert.equal(image.platform.architecture, 'amd64')
    assert.equal(classifyLayer(image.layers[0]!).mode, 'whole')
    assert.equal(classifyLayer(image.layers[1]!).mode, 'lazy')
  })

  it('resolves the same image by digest', async () => {
    const layer = await makeTarLayer({ x: 'x' })
    const pushed = await pushTestImage(client, `${registry.host}/bydigest:v`, [layer])
    const image = await client.resolve(`${registry.host}/bydigest@${pushed.manifestDigest}`, {
      platform: 'amd64',
    })
    assert.equal(image.manifestDigest, pushed.manifestDigest)
  })

  it('picks the wanted platform out of a multi-platform index', async () => {
    const platforms = [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64' },
      { os: 'linux', architecture: 'arm', variant: 'v7' },
      { os: 'linux', architecture: 'arm', variant: 'v6' },
    ]
    const { indexDigest, manifests } = await pushMultiPlatformImage(
      client,
      `${registry.host}/multi:1`,
      platforms,
    )

    for (const [i, wanted] of ['linux/amd64', 'linux/arm64', 'linux/arm/v7', 'arm/v6'].entries()) {
      const image = await client.resolve(`${registry.host}/multi:1`, { platform: wanted })
      assert.equal(image.indexDigest, indexDigest)
      assert.equal(image.manifestDigest, manifests[i]!.digest)
      const reader = client.blobReader(
        image.reference,
        image.layers[0]!.digest,
        image.layers[0]!.size,
      )
      assert.equal((await reader.readAt(0, 2)).toString('hex'), '1f8b')
    }
  })

  it('resolves Docker schema-2 manifests and manifest lists', async () => {
    const repo = `${registry.host}/dockerfmt`
    const layer = await makeTarLayer({ 'd.txt': 'docker' })
    const layerDesc = await client.pushBlob(repo, layer.blob, {
      mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
    })
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'arm',
        variant: 'v7',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [layer.diffID] },
      }),
    )
    const configDesc = await client.pushBlob(repo, config, {
      mediaType: 'application/vnd.docker.container.image.v1+json',
    })
    const manifest = await client.pushManifest(`${repo}:arm`, {
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: configDesc,
      layers: [layerDesc],
    })
    await client.pushManifest(`${repo}:list`, {
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
      manifests: [
        {
          mediaType: manifest.mediaType,
          digest: manifest.digest,
          size: manifest.sizeBytes,
          platform: { os: 'linux', architecture: 'arm', variant: 'v7' },
        },
      ],
    })

    const direct = await client.resolve(`${repo}:arm`, { platform: 'linux/arm/v7' })
    assert.equal(direct.manifestDigest, manifest.digest)
    const listed = await client.resolve(`${repo}:list`, { platform: 'linux/arm/v7' })
    assert.equal(listed.manifestDigest, manifest.digest)
    assert.equal(listed.layers[0]?.diffID, layer.diffID)
    assert.equal(listed.layers[0]?.mediaType, 'application/vnd.docker.image.rootfs.diff.tar.gzip')
  })

  it('names the platforms that exist when the wanted one does not', async () => {
    await pushMultiPlatformImage(client, `${registry.host}/onlyarm:1`, [
      { os: 'linux', architecture: 'arm64' },
      { os: 'linux', architecture: 'arm', variant: 'v7' },
    ])
    await assert.rejects(
      client.resolve(`${registry.host}/onlyarm:1`, { platform: 'linux/amd64' }),
      (err) => {
        assert.ok(isEdgestarError(err, 'EDGESTAR_REGISTRY_NO_PLATFORM'))
        assert.match(err.message, /linux\/arm64, linux\/arm\/v7/)
        return true
      },
    )
  })

  it('falls back from arm/v7 to an arm/v6 image', async () => {
    await pushMultiPlatformImage(client, `${registry.host}/armv6:1`, [
      { os: 'linux', architecture: 'arm', variant: 'v6' },
    ])
    const image = await client.resolve(`${registry.host}/armv6:1`, { platform: 'linux/arm/v7' })
    assert.equal(image.platform.variant, 'v6')
  })

  it('reads blob ranges, coalescing adjacent ones into one request', async () => {
    const data = Buffer.alloc(256 * 1024)
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff
    const desc = await client.pushBlob(`${registry.host}/ranges:x`, data)
    const reader = client.blobReader(`${registry.host}/ranges:x`, desc.digest, desc.size)

    const before = client.stats()
    const ranges = [
      { offset: 100, length: 50 },
      { offset: 150, length: 100 },
      { offset: 250, length: 10 },
    ]
    const got = await reader.readRanges(ranges)
    const after = client.stats()
    for (const [i, r] of ranges.entries()) {
      assert.deepEqual(got[i], data.subarray(r.offset, r.offset + r.length))
    }
    assert.equal(after.requests - before.requests, 1)
    assert.equal(after.bytesReceived - before.bytesReceived, 160)

    const tail = await reader.readAt(data.length - 10, 100)
    assert.deepEqual(tail, data.subarray(data.length - 10))
  })

  it('reads scattered ranges in one multi-range request when enabled', async () => {
    const multi = new RegistryClient({ dockerConfigPath: null, maxRangesPerRequest: 8 })
    try {
      const data = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251))
      const desc = await multi.pushBlob(`${registry.host}/multirange:x`, data)
      const reader = multi.blobReader(`${registry.host}/multirange:x`, desc.digest, desc.size)
      const before = multi.stats().requests
      const ranges = [
        { offset: 10, length: 20 },
        { offset: 5000, length: 300 },
        { offset: 90_000, length: 10_000 },
      ]
      const got = await reader.readRanges(ranges)
      for (const [i, r] of ranges.entries()) {
        assert.deepEqual(got[i], data.subarray(r.offset, r.offset + r.length))
      }
      assert.equal(multi.stats().requests - before, 1)
    } finally {
      await multi.close()
    }
  })

  it('streams a whole blob and checks its digest', async () => {
    const data = Buffer.alloc(300_000, 9)
    const desc = await client.pushBlob(`${registry.host}/stream:x`, data)
    const parts: Buffer[] = []
    for await (const chunk of client.blobStream(`${registry.host}/stream:x`, desc.digest))
      parts.push(chunk as Buffer)
    assert.deepEqual(Buffer.concat(parts), data)
    assert.equal(await client.statBlob(`${registry.host}/stream:x`, desc.digest), data.length)
    assert.equal(
      await client.statBlob(`${registry.host}/stream:x`, sha256(Buffer.from('absent'))),
      undefined,
    )
  })

  it('uploads in chunks and mounts across repositories', async () => {
    const chunky = new RegistryClient({ dockerConfigPath: null, uploadChunkBytes: 10_000 })
    try {
      const data = Buffer.alloc(35_000, 3)
      const desc = await chunky.pushBlob(`${registry.host}/chunked:x`, data)
      const back = await chunky.fetchBlob(`${registry.host}/chunked:x`, desc.digest)
      assert.deepEqual(back, data)

      await chunky.pushBlob(`${registry.host}/mounted:x`, data, { mountFrom: ['chunked'] })
      assert.equal(await chunky.statBlob(`${registry.host}/mounted:x`, desc.digest), data.length)
    } finally {
      await chunky.close()
    }
  })

  it('reports a missing image with a not-found code', async () => {
    await assert.rejects(client.resolve(`${registry.host}/nothing:here`), (err) =>
      isEdgestarError(err, 'EDGESTAR_REGISTRY_NOT_FOUND'),
    )
  })

  it('reports a stopped registry as unreachable', async () => {
    const down = new RegistryClient({
      dockerConfigPath: null,
      retry: { maxAttempts: 2, baseDelayMs: 5 },
    })
    try {
      await assert.rejects(down.resolve('127.0.0.1:1/app:1'), (err) =>
        isEdgestarError(err, 'EDGESTAR_REGISTRY_UNREACHABLE'),
      )
    } finally {
      await down.close()
    }
  })
})

describe('insecure registries', () => {
  let registry: RegistryServer
  before(async () => {
    registry = await startRegistry({ listenHost: '127.0.0.2' })
  })
  after(async () => {
    await registry?.stop()
  })

  it('speaks plain HTTP to a non-loopback-named registry only when listed insecure', async () => {
    const strict = new RegistryClient({ dockerConfigPath: null, retry: { maxAttempts: 1 } })
    const relaxed = new RegistryClient({
      dockerConfigPath: null,
      insecureRegistries: [registry.host],
    })
    try {
      await assert.rejects(
        strict.pushBlob(`${registry.host}/insecure:1`, Buffer.from('x')),
        (err) => isEdgestarError(err, 'EDGESTAR_REGISTRY_UNREACHABLE'),
      )
      await pushTestImage(relaxed, `${registry.host}/insecure:1`, [await makeTarLayer({ i: 'i' })])
      const image = await relaxed.resolve(`${registry.host}/insecure:1`, { platform: 'amd64' })
      assert.equal(image.layers.length, 1)
    } finally {
      await strict.close()
      await relaxed.close()
    }
  })
})
