import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { getEventListeners } from 'node:events'
import { after, afterEach, before, describe, it } from 'node:test'
import { isEdgestarError } from '../../src/errors.js'
import {
  type Descriptor,
  RegistryClient,
  type RegistryClientOptions,
} from '../../src/registry/index.js'
import { FaultProxy } from '../helpers/fault-proxy.js'
import { type RegistryServer, startRegistry, TEST_USER } from '../helpers/registry-server.js'

const BLOB_BYTES = 200 * 1024

describe('blob reads through a misbehaving network', () => {
  let registry: RegistryServer
  let proxy: FaultProxy
  let blob: Buffer
  let desc: Descriptor
  let client: RegistryClient
  let ref: string

  /** A client that has already answered the basic-auth challenge, so faults hit real reads. */
  const makeClient = async (options: RegistryClientOptions = {}): Promise<RegistryClient> => {
    const made = new RegistryClient({
      dockerConfigPath: null,
      credentials: { [proxy.host]: TEST_USER },
      retry: { baseDelayMs: 5, maxDelayMs: 2000 },
      ...options,
    })
    if (desc) await made.statBlob(ref, desc.digest)
    proxy.log.length = 0
    return made
  }

  before(async () => {
    // Basic auth on the registry, so every request to it carries Authorization.
    registry = await startRegistry({ auth: { kind: 'htpasswd' } })
    proxy = await FaultProxy.start(registry.url)
    ref = `${proxy.host}/faults:x`
    blob = randomBytes(BLOB_BYTES)
    const setup = await makeClient()
    desc = await setup.pushBlob(ref, blob)
    await setup.close()
  })
  afterEach(async () => {
    proxy.setFault(undefined)
    proxy.log.length = 0
    proxy.target.log.length = 0
    proxy.target.refuseHead = false
    proxy.target.maxUsesPerUrl = Number.POSITIVE_INFINITY
    await client?.close()
  })
  after(async () => {
    await proxy?.stop()
    await registry?.stop()
  })

  const read = (offset: number, length: number): Promise<Buffer> =>
    client.blobReader(ref, desc.digest, desc.size).readAt(offset, length)

  it('resumes a body dropped mid-way from the next byte', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'drop-mid-body', afterBytes: 30_000 }, { times: 1 })
    assert.deepEqual(await read(1000, 100_000), blob.subarray(1000, 101_000))
    assert.deepEqual(
      proxy.blobGets().map((e) => e.range),
      ['bytes=1000-100999', 'bytes=31000-100999'],
    )
  })

  it('cuts a request still hung at close instead of waiting out its timeouts', async () => {
    // A header timeout of ten minutes: only the close can end this read within the test.
    client = await makeClient({ requestTimeoutMs: 600_000 })
    proxy.setFault({ kind: 'hang' }, { match: 'blob-get' })
    const reading = read(0, 100)
    const settled = reading.then(
      () => 'read',
      () => 'failed',
    )
    while (proxy.blobGets().length === 0) await new Promise((resolve) => setTimeout(resolve, 20))

    await client.close()
    assert.equal(await settled, 'failed')
  })

  it("lets go of the caller's signal once each request is done", async () => {
    client = await makeClient()
    const controller = new AbortController()
    const reader = client.blobReader(ref, desc.digest, desc.size)
    for (let i = 0; i < 12; i++) {
      const [got] = await reader.readRanges([{ offset: i * 100, length: 100 }], {
        signal: controller.signal,
      })
      assert.ok(got?.equals(blob.subarray(i * 100, i * 100 + 100)))
    }
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(getEventListeners(controller.signal, 'abort').length, 0)
  })

  it('retries connection resets', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'reset' }, { times: 2 })
    assert.deepEqual(await read(0, 5000), blob.subarray(0, 5000))
    assert.equal(proxy.blobGets().length, 3)
  })

  it('waits as long as Retry-After says on a 503', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'status-503', retryAfterSec: 1 }, { times: 1 })
    assert.deepEqual(await read(10, 10), blob.subarray(10, 20))
    const [first, second] = proxy.blobGets()
    assert.ok(first && second)
    // A lower bound only: honouring Retry-After means never coming back sooner.
    assert.ok(second.atMs - first.atMs >= 950, `came back after ${second.atMs - first.atMs} ms`)
  })

  it('reports a registry that keeps failing with a server-error code', async () => {
    client = await makeClient({ retry: { maxAttempts: 3, baseDelayMs: 5 } })
    proxy.setFault({ kind: 'status-503' })
    await assert.rejects(read(0, 10), (err) =>
      isEdgestarError(err, 'EDGESTAR_REGISTRY_SERVER_ERROR'),
    )
    assert.equal(proxy.blobGets().length, 3)
  })

  it('takes the slice of a 200 that ignored Range', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'full-body-200' })
    assert.deepEqual(await read(150_000, 1234), blob.subarray(150_000, 151_234))
  })

  it('skips to the offset when a 206 starts earlier than asked', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'align-range', alignBytes: 4096 })
    assert.deepEqual(await read(5000, 3000), blob.subarray(5000, 8000))
    proxy.queueFaults([
      { kind: 'drop-mid-body', afterBytes: 10_000 },
      { kind: 'align-range', alignBytes: 4096 },
    ])
    assert.deepEqual(await client.fetchBlob(ref, desc.digest), blob)
    assert.equal(proxy.blobGets().at(-1)?.faulted, 'align-range')
  })

  it('follows a redirect without forwarding Authorization, and reuses the target', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'redirect', expiresInSec: 3600 }, { times: 1 })
    assert.deepEqual(await read(0, 100), blob.subarray(0, 100))
    assert.deepEqual(await read(5000, 100), blob.subarray(5000, 5100))
    assert.equal(proxy.blobGets().length, 1)
    assert.equal(proxy.blobGets()[0]?.hasAuthorization, true)
    assert.deepEqual(
      proxy.target.log.map((e) => [e.range, e.hasAuthorization]),
      [
        ['bytes=0-99', false],
        ['bytes=5000-5099', false],
      ],
    )
  })

  it('asks the registry again when a cached redirect target refuses (expired URL)', async () => {
    client = await makeClient()
    proxy.target.maxUsesPerUrl = 1
    proxy.setFault({ kind: 'redirect', expiresInSec: 3600 })
    assert.deepEqual(await read(0, 100), blob.subarray(0, 100))
    assert.deepEqual(await read(200, 100), blob.subarray(200, 300))
    assert.equal(proxy.blobGets().length, 2)
    assert.deepEqual(
      proxy.target.log.map((e) => e.status),
      [206, 403, 206],
    )
  })

  it('does not reuse a redirect URL that is about to expire', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'redirect', expiresInSec: 5 })
    await read(0, 10)
    await read(10, 10)
    assert.equal(proxy.blobGets().length, 2)
    assert.ok(proxy.target.log.every((e) => e.status === 206))
  })

  it('reads the size with GET from a redirect target that refuses HEAD', async () => {
    client = await makeClient()
    proxy.target.refuseHead = true
    proxy.setFault({ kind: 'redirect' }, { match: 'any' })
    assert.equal(await client.statBlob(ref, desc.digest), BLOB_BYTES)
    assert.deepEqual(
      proxy.target.log.map((e) => [e.method, e.status]),
      [
        ['HEAD', 403],
        ['GET', 206],
      ],
    )
  })

  it('resumes a trickle that stalls, and waits out one that is merely slow', async () => {
    client = await makeClient({ requestTimeoutMs: 400 })
    proxy.setFault(
      { kind: 'trickle', bytesPerTick: 2000, tickMs: 5, stallAfterBytes: 6000 },
      { times: 1 },
    )
    assert.deepEqual(await read(0, 20_000), blob.subarray(0, 20_000))
    assert.deepEqual(
      proxy.blobGets().map((e) => e.range),
      ['bytes=0-19999', 'bytes=6000-19999'],
    )

    // Slow but steady is not a failure: with a generous timeout, one request suffices.
    await client.close()
    client = await makeClient({ requestTimeoutMs: 10_000 })
    proxy.setFault({ kind: 'trickle', bytesPerTick: 1000, tickMs: 20 }, { times: 1 })
    assert.deepEqual(await read(0, 20_000), blob.subarray(0, 20_000))
    assert.equal(proxy.blobGets().length, 1)
  })

  it('passes corrupted range bytes up unchanged for the chunk check to catch', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'corrupt-blob-byte', atBlobOffset: 1050 }, { times: 1 })
    const got = await read(1000, 100)
    const expected = Buffer.from(blob.subarray(1000, 1100))
    expected[50] = (expected[50] as number) ^ 0xff
    assert.deepEqual(got, expected)
  })

  it('rejects corrupted bytes in a whole-blob stream by digest', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'corrupt', atBodyOffset: 777 })
    await assert.rejects(client.fetchBlob(ref, desc.digest, BLOB_BYTES), (err) =>
      isEdgestarError(err, 'EDGESTAR_REGISTRY_DIGEST_MISMATCH'),
    )
  })

  it('resumes a whole-blob stream after a drop, also when the resume ignores Range', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'drop-mid-body', afterBytes: 70_000 }, { times: 1 })
    assert.deepEqual(await client.fetchBlob(ref, desc.digest, BLOB_BYTES), blob)
    assert.deepEqual(
      proxy.blobGets().map((e) => e.range),
      [undefined, 'bytes=70000-'],
    )

    proxy.log.length = 0
    proxy.queueFaults([{ kind: 'drop-mid-body', afterBytes: 70_000 }, { kind: 'full-body-200' }])
    const parts: Buffer[] = []
    for await (const chunk of client.blobStream(ref, desc.digest, desc.size))
      parts.push(chunk as Buffer)
    assert.deepEqual(Buffer.concat(parts), blob)
    assert.deepEqual(
      proxy.blobGets().map((e) => e.faulted),
      ['drop-mid-body', 'full-body-200'],
    )
  })

  it('falls back to single ranges when multi-range is answered with the whole blob', async () => {
    client = await makeClient({ maxRangesPerRequest: 8 })
    proxy.setFault({ kind: 'ignore-multi-range' })
    const reader = client.blobReader(ref, desc.digest, desc.size)
    const ranges = [
      { offset: 0, length: 10 },
      { offset: 50_000, length: 10 },
      { offset: 150_000, length: 10 },
    ]
    const got = await reader.readRanges(ranges)
    for (const [i, r] of ranges.entries())
      assert.deepEqual(got[i], blob.subarray(r.offset, r.offset + 10))
    proxy.log.length = 0
    await reader.readRanges(ranges)
    assert.ok(proxy.blobGets().every((e) => !e.range?.includes(',')))
    assert.equal(proxy.blobGets().length, 3)
  })

  it('reports 416 (the blob is shorter than its descriptor)', async () => {
    // Straight to the registry: its 416 promises the whole blob's length in Content-Length.
    client = new RegistryClient({
      dockerConfigPath: null,
      credentials: { [registry.host]: TEST_USER },
    })
    const reader = client.blobReader(`${registry.host}/faults:x`, desc.digest, desc.size + 1000)
    await assert.rejects(reader.readAt(desc.size + 10, 10), (err) =>
      isEdgestarError(err, 'EDGESTAR_REGISTRY_BAD_RESPONSE'),
    )
  })

  it('reads a body without Content-Length', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'no-content-length' })
    assert.deepEqual(await read(100, 40_000), blob.subarray(100, 40_100))
  })

  it('survives a Content-Length larger or smaller than the body', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'wrong-content-length', deltaBytes: 500 }, { times: 1 })
    assert.deepEqual(await read(0, 10_000), blob.subarray(0, 10_000))
    proxy.setFault({ kind: 'wrong-content-length', deltaBytes: -500 }, { times: 1 })
    assert.deepEqual(await read(0, 10_000), blob.subarray(0, 10_000))
  })

  it('resumes a body shorter than promised', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'short-body', missingBytes: 100 }, { times: 1 })
    assert.deepEqual(await read(0, 10_000), blob.subarray(0, 10_000))
    assert.deepEqual(
      proxy.blobGets().map((e) => e.range),
      ['bytes=0-9999', 'bytes=9900-9999'],
    )
  })

  it('never takes an HTML 200 for the blob', async () => {
    client = await makeClient({ retry: { maxAttempts: 3, baseDelayMs: 5 } })
    proxy.setFault({ kind: 'html-200' })
    await assert.rejects(read(0, 10), (err) =>
      isEdgestarError(err, 'EDGESTAR_REGISTRY_BAD_RESPONSE'),
    )
    await assert.rejects(client.fetchBlob(ref, desc.digest), (err) =>
      isEdgestarError(err, 'EDGESTAR_REGISTRY_BAD_RESPONSE'),
    )
    proxy.setFault({ kind: 'html-200' }, { times: 1 })
    assert.deepEqual(await read(0, 10), blob.subarray(0, 10))
  })

  it('counts every byte and request, retries included', async () => {
    client = await makeClient()
    proxy.setFault({ kind: 'drop-mid-body', afterBytes: 1000 }, { times: 1 })
    const before = client.stats()
    await read(0, 5000)
    const after = client.stats()
    // 401 challenge + 1000 bytes dropped + 4000 resumed; the challenge body is small.
    assert.ok(after.requests - before.requests >= 2)
    assert.ok(after.bytesReceived - before.bytesReceived >= 5000)
  })
})
