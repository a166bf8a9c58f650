import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { EdgestarError, isEdgestarError } from '../../src/errors.js'
import { FileReader, openLayer } from '../../src/estargz/index.js'
import {
  type BlobReaderSource,
  FetchScheduler,
  installBandwidthControl,
  type LinkChange,
} from '../../src/fetch/index.js'
import type { BlobReader, ByteRange, RangeReadOptions } from '../../src/registry/index.js'
import { Store } from '../../src/store/index.js'
import { presentObjects } from '../helpers/cache-objects.js'
import { countMainThreadDecoding } from '../helpers/main-thread-decoding.js'
import { recordMainThreadSql } from '../helpers/main-thread-sql.js'

const FIXTURES = '/work/shared/fixtures/estargz'
const dirs: string[] = []
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

/** An in-memory registry that can go offline, corrupt ranges and hold requests. */
class FakeRegistry implements BlobReaderSource {
  requests: ByteRange[][] = []
  /** The abort signal of each request, in order. */
  signals: (AbortSignal | undefined)[] = []
  isOffline = false
  corruptOffsets = new Map<number, number>()
  private gate: Promise<void> | undefined
  private openGate: ((err?: Error) => void) | undefined

  constructor(private readonly blob: Buffer) {}

  /** Holds every request until `release`. */
  hold(): void {
    this.gate = new Promise((resolve, reject) => {
      this.openGate = (err) => (err ? reject(err) : resolve())
    })
  }

  /** Lets held requests go on, or fail with `err`. */
  release(err?: Error): void {
    this.openGate?.(err)
    this.gate = undefined
  }

  blobReader(_ref: string, digest: string, sizeBytes: number): BlobReader {
    const readRanges = async (
      ranges: readonly ByteRange[],
      options: RangeReadOptions = {},
    ): Promise<Buffer[]> => {
      if (this.isOffline)
        throw new EdgestarError('EDGESTAR_REGISTRY_UNREACHABLE', 'registry unreachable (test)')
      this.requests.push([...ranges])
      this.signals.push(options.signal)
      // A held request ends early only when its caller drops it, as a real one would.
      if (this.gate) await Promise.race([this.gate, whenAborted(options.signal)])
      return ranges.map((r) => {
        const bytes = Buffer.from(this.blob.subarray(r.offset, r.offset + r.length))
        const left = this.corruptOffsets.get(r.offset) ?? 0
        if (left > 0) {
          this.corruptOffsets.set(r.offset, left - 1)
          bytes[Math.floor(bytes.length / 2)]! ^= 0xff
        }
        return bytes
      })
    }
    return {
      digest,
      sizeBytes,
      readRanges,
      readAt: async (offset: number, length: number) =>
        (await readRanges([{ offset, length }]))[0]!,
    }
  }
}

const LAYER = `sha256:${'1'.repeat(64)}`

/** Rejects with the signal's reason once it aborts; never settles without a signal. */
function whenAborted(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_, reject) => {
    signal?.addEventListener('abort', () => reject(signal.reason), { once: true })
  })
}

async function setup(
  options: {
    offlineWaitMs?: number
    concurrency?: number
    maxBatchBytes?: number
    rateBytesPerSec?: number
    burstBytes?: number
    /** Recorded instead of the layer's own diffID (a registry serving a wrong layer). */
    diffID?: string
    /** The reference blob served, by its fixture name (default large.estargz). */
    fixture?: 'large.estargz' | 'large.zstdchunked'
  } = {},
) {
  const dir = mkdtempSync(join(tmpdir(), 'edgestar-fetch-'))
  dirs.push(dir)
  const fixture = options.fixture ?? 'large.estargz'
  const path = join(FIXTURES, `${fixture}.tar.${fixture.endsWith('zstdchunked') ? 'zst' : 'gz'}`)
  const blob = readFileSync(path)
  const sidecar = JSON.parse(readFileSync(join(FIXTURES, `${fixture}.json`), 'utf8'))
  const reader = await FileReader.open(path)
  const index = await openLayer(reader)
  await reader.close()

  const store = Store.open(dir)
  store.layers.upsert({
    digest: LAYER,
    sizeBytes: blob.length,
    mediaType: sidecar.mediaType,
    diffID: options.diffID ?? sidecar.diffID,
    tocDigest: index.tocDigest,
    tocOffset: index.tocOffset,
    format: index.format,
    verification: 'lazy',
    sourceReference: 'test/large:1',
  })
  store.layers.recordIndex(LAYER, {
    entries: index.entries,
    chunks: index.chunks,
    blobSizeBytes: blob.length,
  })
  const registry = new FakeRegistry(blob)
  const scheduler = new FetchScheduler({
    store,
    registry,
    offlineWaitMs: options.offlineWaitMs ?? 200,
    probeIntervalMs: 20,
    concurrency: options.concurrency ?? 4,
    maxBatchBytes: options.maxBatchBytes ?? 4 * 1024 * 1024,
    backgroundRateBytesPerSec: options.rateBytesPerSec ?? 0,
    ...(options.burstBytes === undefined ? {} : { backgroundBurstBytes: options.burstBytes }),
  })
  const files = sidecar.files as { name: string; type: string; sha256?: string; size: number }[]
  const cleanup = (): void => {
    scheduler.close()
    store.close()
  }
  return { dir, store, registry, scheduler, files, cleanup }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

/** Resolves once `condition` holds (checked every few ms; the test's timeout bounds it). */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5))
}

describe('fetch scheduler', () => {
  it('reads every file byte-exactly and then verifies the layer against its diffID', async () => {
    const { store, scheduler, files, cleanup } = await setup()
    try {
      for (const file of files.filter(
        (f) => f.type === 'reg' && !f.name.startsWith('.') && f.name !== 'stargz.index.json',
      )) {
        const bytes = await scheduler.readEntryRange(
          LAYER,
          file.name.replace(/\/$/, ''),
          0,
          file.size,
        )
        assert.equal(sha(bytes), file.sha256, file.name)
      }
      await scheduler.completeLayer(LAYER)
      assert.equal(store.layers.get(LAYER)?.state, 'verified')
    } finally {
      cleanup()
    }
  })

  it('merges concurrent requests for one chunk into one fetch', async () => {
    const { registry, scheduler, cleanup } = await setup()
    try {
      registry.hold()
      const reads = [1, 2, 3].map(() => scheduler.readEntryRange(LAYER, 'data/large.bin', 0, 100))
      await new Promise((resolve) => setTimeout(resolve, 20))
      registry.release()
      const results = await Promise.all(reads)
      assert.ok(results.every((r) => r.equals(results[0]!)))
      assert.equal(registry.requests.flat().length, 1)
    } finally {
      cleanup()
    }
  })

  it('drops answers and errors that arrive after close, with the store already closed', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (err: unknown): void => {
      unhandled.push(err)
    }
    process.on('unhandledRejection', onUnhandled)
    process.on('uncaughtException', onUnhandled)
    try {
      for (const late of ['answer', 'error', 'background'] as const) {
        const { dir, store, registry, scheduler, files, cleanup } = await setup({
          rateBytesPerSec: 64 * 1024,
          burstBytes: 4096,
        })
        const units: unknown[] = []
        scheduler.on('unit', (unit) => units.push(unit))
        registry.hold()
        const file = files.find((f) => f.type === 'reg' && f.size > 0)!
        const read = scheduler.readEntryRange(LAYER, file.name, 0, 100)
        const pull = scheduler.completeLayer(
          LAYER,
          late === 'background' ? 'background' : 'prefetch',
        )
        scheduler.startBackground([LAYER], { forDiffID: true })
        await until(() => registry.requests.length > 0)
        assert.ok(scheduler.stats().running > 0)

        scheduler.close()
        store.close()
        registry.release(
          late === 'error'
            ? new EdgestarError('EDGESTAR_REGISTRY_UNREACHABLE', 'gone (test)')
            : undefined,
        )
        await assert.rejects(read, (err) => isEdgestarError(err, 'EDGESTAR_FETCH_CLOSED'))
        await assert.rejects(pull, (err) => isEdgestarError(err, 'EDGESTAR_FETCH_CLOSED'))
        // Every entry point answers EDGESTAR_FETCH_CLOSED without touching the store.
        const closed = (err: unknown): boolean => isEdgestarError(err, 'EDGESTAR_FETCH_CLOSED')
        await assert.rejects(scheduler.ensureUnit(LAYER, 0, 'demand'), closed)
        await assert.rejects(scheduler.prefetch(LAYER), closed)
        await assert.rejects(scheduler.readEntryRange(LAYER, file.name, 0, 10), closed)
        await assert.rejects(scheduler.completeLayer(LAYER), closed)
        scheduler.startBackground([LAYER])
        scheduler.setBackgroundEnabled(true)
        await scheduler.whenIdle()
        for (let i = 0; i < 20 && scheduler.stats().running > 0; i++)
          await new Promise((resolve) => setTimeout(resolve, 10))
        assert.equal(scheduler.stats().running, 0)
        assert.deepEqual(units, [])
        cleanup()

        // Nothing half-done was recorded: the reopened store has no present chunk.
        const reopened = Store.open(dir)
        assert.equal(reopened.cacheStatus().presentChunks, 0)
        reopened.close()
      }
      await new Promise((resolve) => setImmediate(resolve))
      assert.deepEqual(unhandled, [])
    } finally {
      process.off('unhandledRejection', onUnhandled)
      process.off('uncaughtException', onUnhandled)
    }
  })

  it('runs a demand read before queued background work', async () => {
    const { store, registry, scheduler, cleanup } = await setup({
      concurrency: 2,
      maxBatchBytes: 1,
    })
    try {
      registry.hold()
      scheduler.startBackground([LAYER])
      // One background request held, the only one: one slot stays free of background work.
      await until(() => registry.requests.length === 1)
      const lastChunk = store.toc.chunks(LAYER, 'data/large.bin', 3145728 - 1, 1)[0]!
      const demand = scheduler.readEntryRange(LAYER, 'data/large.bin', 3145728 - 100, 100)
      await until(() => registry.requests.length === 2)
      registry.release()
      await demand
      const order = registry.requests.map((batch) => batch[0]!.offset)
      assert.equal(order[1], lastChunk.unitOffset, `request order ${order.slice(0, 4).join(',')}`)
      await scheduler.whenIdle()
      assert.equal(
        store.layers.progress(LAYER, true).presentUnits,
        store.layers.progress(LAYER, true).totalUnits,
      )
    } finally {
      cleanup()
    }
  })

  it('refetches a corrupt chunk once and stores only verified bytes', async () => {
    const { store, registry, scheduler, cleanup } = await setup()
    try {
      const ref = store.toc.chunks(LAYER, 'data/large.bin', 0, 1)[0]!
      registry.corruptOffsets.set(ref.unitOffset, 1)
      const bytes = await scheduler.readEntryRange(LAYER, 'data/large.bin', 0, 65536)
      assert.equal(`sha256:${sha(bytes)}`, ref.chunkDigest)
      assert.equal(scheduler.stats().integrityRetries, 1)
      assert.equal(registry.requests.flat().filter((r) => r.offset === ref.unitOffset).length, 2)
    } finally {
      cleanup()
    }
  })

  it('reports EDGESTAR_FETCH_INTEGRITY after a second corrupt copy and stores nothing', async () => {
    const { dir, store, registry, scheduler, cleanup } = await setup()
    try {
      const ref = store.toc.chunks(LAYER, 'data/large.bin', 0, 1)[0]!
      registry.corruptOffsets.set(ref.unitOffset, 2)
      await assert.rejects(scheduler.readEntryRange(LAYER, 'data/large.bin', 0, 10), (err) =>
        isEdgestarError(err, 'EDGESTAR_FETCH_INTEGRITY'),
      )
      assert.equal(store.chunks.has(ref.chunkKey), false)
      const objects = presentObjects(dir).filter((object) => object.key.startsWith('sha256-'))
      assert.deepEqual(objects, [])
    } finally {
      cleanup()
    }
  })

  it('fails a read whose request never answers after the wait; link offline, request dropped', async () => {
    const { registry, scheduler, cleanup } = await setup({ offlineWaitMs: 150 })
    const changes: LinkChange[] = []
    scheduler.on('link', (change: LinkChange) => changes.push(change))
    try {
      // The request stays unanswered and unfailed, as with a registry that accepts the
      // connection and never replies: no error ever reaches the link monitor.
      registry.hold()
      await assert.rejects(
        scheduler.readEntryRange(LAYER, 'data/large.bin', 2_000_000, 100),
        (err) => isEdgestarError(err, 'EDGESTAR_FETCH_OFFLINE'),
      )
      assert.equal(registry.requests.length, 1, 'the read failed with its request still out')
      assert.deepEqual(
        changes.map((c) => c.state),
        ['offline'],
      )
      assert.match(changes[0]!.reason, /no byte from the registry/)
      // Nobody waits for it any more: it must not hold a slot through the client's retries.
      await until(() => registry.signals[0]?.aborted === true)
      await scheduler.whenIdle()
      registry.release()
    } finally {
      cleanup()
    }
  })

  it('offline: serves cached chunks, fails a missing one after the wait, resumes background by itself', async () => {
    const { store, registry, scheduler, cleanup } = await setup({ offlineWaitMs: 150 })
    const changes: LinkChange[] = []
    scheduler.on('link', (change: LinkChange) => changes.push(change))
    try {
      const cached = await scheduler.readEntryRange(LAYER, 'data/large.bin', 0, 100)
      registry.isOffline = true
      await assert.rejects(
        scheduler.readEntryRange(LAYER, 'data/large.bin', 2_000_000, 100),
        (err) => isEdgestarError(err, 'EDGESTAR_FETCH_OFFLINE'),
      )
      assert.equal(scheduler.linkState, 'offline')
      // Asked again in the same outage (the kernel retries a failed read-ahead at once), the
      // read fails without a second wait: with a 10 min wait it would time the test out.
      scheduler.setOfflineWaitMs(600_000)
      await assert.rejects(
        scheduler.readEntryRange(LAYER, 'data/large.bin', 2_000_000, 100),
        (err) => isEdgestarError(err, 'EDGESTAR_FETCH_OFFLINE'),
      )
      scheduler.setOfflineWaitMs(150)
      assert.ok((await scheduler.readEntryRange(LAYER, 'data/large.bin', 0, 100)).equals(cached))

      scheduler.startBackground([LAYER], { forDiffID: true })
      await new Promise((resolve) => setTimeout(resolve, 100))
      assert.ok(
        store.layers.missingUnits(LAYER, 1, true).length > 0,
        'background paused while offline',
      )
      const verified = new Promise((resolve) => scheduler.once('layer-verified', resolve))
      registry.isOffline = false
      await scheduler.whenIdle()
      assert.equal(await verified, LAYER)
      assert.equal(scheduler.linkState, 'online')
      assert.equal(store.layers.missingUnits(LAYER, 1, true).length, 0)
      assert.deepEqual(
        changes.map((c) => c.state),
        ['degraded', 'offline', 'online'].filter((s) => changes.some((c) => c.state === s)),
      )
      assert.ok(await scheduler.verifyLayer(LAYER))
    } finally {
      cleanup()
    }
  })

  it('under a cap, asks for background bytes in pieces no larger than the bucket', async () => {
    const burst = 8 * 1024
    const { store, registry, scheduler, cleanup } = await setup({
      rateBytesPerSec: 8 * 1024 * 1024,
      burstBytes: burst,
    })
    try {
      const verified = new Promise((resolve) => scheduler.once('layer-verified', resolve))
      scheduler.startBackground([LAYER], { forDiffID: true })
      await scheduler.whenIdle()
      assert.equal(await verified, LAYER)
      const largest = Math.max(...registry.requests.flat().map((r) => r.length))
      assert.ok(largest <= burst, `largest request ${largest} bytes`)
      assert.equal(store.layers.missingUnits(LAYER, 1, true).length, 0)
      assert.equal(scheduler.stats().demandBytes, 0)
    } finally {
      cleanup()
    }
  })

  it('takes a new cap from the control file on SIGHUP', async () => {
    const { dir, scheduler, cleanup } = await setup()
    const controlFile = join(dir, 'bandwidth')
    const remove = installBandwidthControl(scheduler, controlFile)
    try {
      writeFileSync(controlFile, '512KiB\n')
      process.emit('SIGHUP', 'SIGHUP')
      assert.equal(scheduler.bandwidth, 512 * 1024)
      writeFileSync(controlFile, '0')
      process.emit('SIGHUP', 'SIGHUP')
      assert.equal(scheduler.bandwidth, 0)
    } finally {
      remove()
      cleanup()
    }
  })

  it('reads a range again after its chunks were evicted, fetching them once more', async () => {
    const { store, registry, scheduler, files, cleanup } = await setup()
    try {
      const file = files.find((f) => f.name === 'data/large.bin')!
      const first = await scheduler.readEntryRange(LAYER, file.name, 0, file.size)
      const requests = registry.requests.length
      assert.ok((await scheduler.readEntryRange(LAYER, file.name, 0, file.size)).equals(first))
      assert.equal(registry.requests.length, requests, 'a re-read of cached chunks fetches nothing')

      assert.ok(store.gc(0).evictedChunks > 0)
      const again = await scheduler.readEntryRange(LAYER, file.name, 0, file.size)
      assert.equal(sha(again), file.sha256)
      assert.ok(registry.requests.length > requests, 'the evicted chunks were fetched again')
    } finally {
      cleanup()
    }
  })

  it('drops what a failed diffID check cannot vouch for, fetches it again, then fails', async () => {
    const { store, registry, scheduler, cleanup } = await setup({
      diffID: `sha256:${'0'.repeat(64)}`,
    })
    const statements = recordMainThreadSql()
    try {
      await assert.rejects(scheduler.completeLayer(LAYER), (err) =>
        isEdgestarError(err, 'EDGESTAR_FETCH_INTEGRITY'),
      )
      assert.deepEqual(statements.seen, [], 'no SQLite on the event loop')
      statements.restore()

      assert.equal(store.layers.get(LAYER)?.state, 'failed')
      const gaps = store.layers.units(LAYER).filter((unit) => unit.kind === 'gap')
      assert.ok(gaps.length > 0)
      for (const gap of gaps) {
        const asked = registry.requests.flat().filter((r) => r.offset === gap.offset)
        assert.equal(asked.length, 2, `gap unit at ${gap.offset} fetched once per attempt`)
        assert.equal(store.chunks.has(gap.chunkKey), false)
        const slot = store.db.prepare('SELECT pack FROM chunks WHERE key = ?').pluck()
        assert.equal(slot.get(gap.chunkKey) ?? null, null, 'its slot freed')
      }
    } finally {
      statements.restore()
      cleanup()
    }
  })

  it('runs no SQLite statement on the event loop while reading, fetching and verifying', async () => {
    const { store, scheduler, files, cleanup } = await setup({ concurrency: 2 })
    const statements = recordMainThreadSql()
    try {
      const file = files.find((f) => f.name === 'data/large.bin')!
      const fetched = await scheduler.readEntryRange(LAYER, file.name, 0, file.size)
      const cached = await scheduler.readEntryRange(LAYER, file.name, 0, file.size)
      assert.ok(fetched.equals(cached))
      assert.equal(sha(cached), file.sha256)
      const verified = new Promise((resolve) => scheduler.once('layer-verified', resolve))
      scheduler.startBackground([LAYER], { forDiffID: true })
      await scheduler.whenIdle()
      assert.equal(await verified, LAYER)
      await scheduler.completeLayer(LAYER)

      assert.deepEqual(statements.seen, [])
      statements.restore()
      assert.equal(store.layers.get(LAYER)?.state, 'verified')
    } finally {
      statements.restore()
      cleanup()
    }
  })

  for (const fixture of ['large.estargz', 'large.zstdchunked'] as const)
    it(`inflates, checks and hashes fetched units off the event loop (${fixture})`, async () => {
      const { store, registry, scheduler, files, cleanup } = await setup({ fixture })
      const ref = store.toc.chunks(LAYER, 'data/large.bin', 0, 1)[0]!
      registry.corruptOffsets.set(ref.unitOffset, 1)
      const decoding = countMainThreadDecoding()
      try {
        const file = files.find((f) => f.name === 'data/large.bin')!
        const fetched = await scheduler.readEntryRange(LAYER, file.name, 0, file.size)
        const verified = new Promise((resolve) => scheduler.once('layer-verified', resolve))
        scheduler.startBackground([LAYER], { forDiffID: true })
        await scheduler.whenIdle()
        assert.equal(await verified, LAYER)
        decoding.restore()

        assert.deepEqual(decoding.seen, [], 'nothing inflated or hashed on the event loop')
        assert.equal(sha(fetched), file.sha256)
        assert.equal(scheduler.stats().integrityRetries, 1, 'the corrupt copy was caught')
        assert.equal(store.layers.get(LAYER)?.state, 'verified')
      } finally {
        decoding.restore()
        cleanup()
      }
    })
})
