import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { isEdgestarError } from '../../src/errors.js'
import { HOLE_GRACE_MS } from '../../src/store/chunk-cache.js'
import { ChunkRows } from '../../src/store/chunk-rows.js'
import { SCHEMA_VERSION, Store } from '../../src/store/index.js'
import { key, recordLayer as recordTestLayer, stateDir as tempStateDir } from './store-fixtures.js'

const LAYER = `sha256:${'a'.repeat(64)}`
const stateDir = (): string => tempStateDir('edgestar-store-')
const recordLayer = (store: Store, layer = LAYER, chunkChars?: string[]): number =>
  recordTestLayer(store, layer, chunkChars)

// An object kept in a file of its own, as older caches and whole plain layers are.
async function adoptFile(store: Store, chunk: string, text: string): Promise<void> {
  const tmp = await store.chunks.tmpPathFor(chunk)
  writeFileSync(tmp, text)
  await store.chunks.adopt(chunk, tmp, text.length)
}

// Bookkeeping for the `i`th unit of `recordLayer`'s layer, as the scheduler sends it.
function unit(i: number, bytes = 256 * 1024) {
  return {
    layerDigest: LAYER,
    offset: 100 + i * 100,
    memberBytes: bytes,
    dataBytes: bytes,
    tail: null,
  }
}

describe('store schema', () => {
  it('migrates a new database to the current schema', () => {
    const dir = stateDir()
    Store.open(dir).close()
    const db = new Database(join(dir, 'edgestar.db'))
    assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal')
    db.close()
  })

  it('refuses a database written by a newer edgestar with EDGESTAR_STORE_TOO_NEW', () => {
    const dir = stateDir()
    Store.open(dir).close()
    const db = new Database(join(dir, 'edgestar.db'))
    db.pragma(`user_version = ${SCHEMA_VERSION + 3}`)
    db.close()
    assert.throws(
      () => Store.open(dir),
      (err) => isEdgestarError(err, 'EDGESTAR_STORE_TOO_NEW'),
    )
  })

  it('keeps 100k TOC entries in SQLite and answers lookups and listings', () => {
    const store = Store.open(stateDir())
    store.layers.upsert({
      digest: LAYER,
      sizeBytes: 1,
      mediaType: 'm',
      diffID: null,
      tocDigest: null,
      tocOffset: null,
      format: 'estargz',
      verification: 'lazy',
      sourceReference: 'r',
    })
    function* entries(): Generator<{ name: string; type: string }> {
      yield { name: 'd', type: 'dir' }
      for (let i = 0; i < 100_000; i++)
        yield { name: `d/f${String(i).padStart(6, '0')}`, type: 'reg' }
    }
    store.layers.recordIndex(LAYER, { entries: entries(), chunks: [], blobSizeBytes: 1 })
    assert.equal(store.toc.count(LAYER), 100_001)
    assert.equal(store.toc.get(LAYER, 'd/f054321')?.parent, 'd')
    let listed = 0
    for (const _ of store.toc.children(LAYER, 'd')) listed++
    assert.equal(listed, 100_000)
    store.close()
  })

  it('rejects a malformed digest from the network before it becomes a path', () => {
    const store = Store.open(stateDir())
    assert.throws(
      () =>
        store.layers.upsert({
          digest: 'sha256:../../etc',
          sizeBytes: 1,
          mediaType: 'm',
          diffID: null,
          tocDigest: null,
          tocOffset: null,
          format: 'estargz',
          verification: 'lazy',
          sourceReference: 'r',
        }),
      (err) => isEdgestarError(err, 'EDGESTAR_STORE_BAD_DIGEST'),
    )
    assert.throws(() => store.chunks.pathOf('../x'))
    store.close()
  })
})

describe('chunk cache', () => {
  it('shares one object between layers with the same chunk digest', async () => {
    const store = Store.open(stateDir())
    recordLayer(store)
    recordLayer(store, `sha256:${'e'.repeat(64)}`, ['b'])
    await store.chunks.write(key('b'), Buffer.from('0123456789'))
    assert.equal(store.layers.progress(`sha256:${'e'.repeat(64)}`, true).presentUnits, 1)
    assert.equal(store.layers.progress(LAYER, true).presentUnits, 1)
    assert.equal(store.cacheStatus().presentChunks, 1)
    store.close()
  })

  it('reconciles at start-up: missing or wrong-size files become missing, strays and temporaries go', async () => {
    const dir = stateDir()
    let store = Store.open(dir)
    recordLayer(store)
    for (const c of ['b', 'c', 'd']) await adoptFile(store, key(c), '0123456789')
    rmSync(store.chunks.pathOf(key('b')))
    truncateSync(store.chunks.pathOf(key('c')), 3)
    const stray = join(dir, 'chunks', 'ff', key('f'))
    mkdirSync(join(dir, 'chunks', 'ff'), { recursive: true })
    writeFileSync(stray, 'x')
    mkdirSync(join(dir, 'chunks', 'tmp'), { recursive: true })
    writeFileSync(join(dir, 'chunks', 'tmp', 'half-written'), 'x')
    store.close()
    rmSync(join(dir, 'owner.pid'))

    store = Store.open(dir)
    assert.deepEqual(store.reconciled, {
      rowsMarkedMissing: 2,
      strayFilesRemoved: 1,
      tmpFilesRemoved: 1,
    })
    assert.equal(store.chunks.has(key('b')), false)
    assert.equal(store.chunks.has(key('c')), false)
    assert.equal(store.chunks.has(key('d')), true)
    assert.equal(existsSync(stray), false)
    assert.deepEqual(readdirSync(join(dir, 'chunks', 'tmp')), [])
    store.close()
  })

  it('reconciles at start-up: objects of a pack cut short or removed become missing', async () => {
    const dir = stateDir()
    let store = Store.open(dir)
    recordLayer(store)
    for (const c of ['b', 'c', 'd']) await store.chunks.write(key(c), Buffer.from('0123456789'))
    const pack = join(dir, 'chunks', 'packs', 'shared')
    // Slots are 4 KiB apart: cutting inside the second loses the second and the third.
    truncateSync(pack, 4096 + 5)
    store.close()
    rmSync(join(dir, 'owner.pid'))

    store = Store.open(dir)
    assert.equal(store.reconciled.packRowsMarkedMissing, 2)
    assert.deepEqual(
      ['b', 'c', 'd'].map((c) => store.chunks.has(key(c))),
      [true, false, false],
    )
    assert.equal((await store.chunks.read(key('b'), 0, 10)).toString(), '0123456789')
    store.close()
    rmSync(join(dir, 'owner.pid'))

    rmSync(pack)
    store = Store.open(dir)
    assert.equal(store.reconciled.packRowsMarkedMissing, 1)
    assert.equal(store.chunks.has(key('b')), false)
    store.close()
  })

  it('frees at start-up the slots a killed process reserved and never committed', async () => {
    const dir = stateDir()
    let store = Store.open(dir)
    recordLayer(store)
    await store.chunks.write(key('b'), Buffer.from('0123456789'))
    // A dead writer's slot, written but never committed, and a live writer's slot.
    const dead = spawnSync('true').pid!
    const live = spawn('sleep', ['60'])
    const rows = new ChunkRows(store.db)
    const [deadSlot, liveSlot] = store.db.transaction(() => [
      rows.reserve('shared', 1 << 20, dead),
      rows.reserve('shared', 4096, live.pid!),
    ])()
    const pack = join(dir, 'chunks', 'packs', 'shared')
    const fd = openSync(pack, 'r+')
    writeSync(fd, Buffer.alloc(1 << 20, 7), 0, 1 << 20, deadSlot!)
    closeSync(fd)
    store.close()
    rmSync(join(dir, 'owner.pid'))

    try {
      store = Store.open(dir)
      assert.equal(store.reconciled.deadReservationsFreed, 1)
      assert.ok(statSync(pack).blocks * 512 < 512 * 1024, 'the dead slot punched out')
      const left = store.db.prepare('SELECT offset, freed_at FROM pack_holes').all()
      assert.deepEqual(left, [{ offset: liveSlot, freed_at: -live.pid! }])
      assert.equal((await store.chunks.read(key('b'), 0, 10)).toString(), '0123456789')
      store.close()
    } finally {
      live.kill()
    }
  })

  it('punches, once the grace ran out, slots another process freed while this one serves', {
    timeout: 30_000,
  }, async (t) => {
    t.mock.timers.enable({ apis: ['setInterval', 'Date'], now: Date.now() })
    const dir = stateDir()
    const store = Store.open(dir)
    recordLayer(store)
    await store.chunks.write(key('b'), Buffer.alloc(1 << 20, 7))
    const pack = join(dir, 'chunks', 'packs', 'shared')
    // What another process's cache gc leaves behind: the row missing, its slot to punch.
    store.db.transaction(() => new ChunkRows(store.db).missing([key('b')]))()

    const holes = (): unknown => store.db.prepare('SELECT count(*) FROM pack_holes').pluck().get()
    t.mock.timers.tick(HOLE_GRACE_MS / 2)
    await store.chunks.punchHoles()
    assert.equal(holes(), 1)
    assert.ok(statSync(pack).blocks * 512 >= 1 << 20, 'kept under the grace')

    // Nothing here frees or punches: only the sweep can find the slot.
    t.mock.timers.tick(HOLE_GRACE_MS / 2 + 1)
    while (holes() !== 0) await new Promise((resolve) => setImmediate(resolve))
    assert.ok(statSync(pack).blocks * 512 < 512 * 1024, 'punched after the grace')
    store.close()
  })

  it('keeps objects in one pack file per layer and punches evicted ones out of it', async () => {
    const dir = stateDir()
    const store = Store.open(dir)
    recordLayer(store)
    const big = Buffer.alloc(256 * 1024, 7)
    const units = ['b', 'c', 'd'].map((c, i) => ({ key: key(c), data: big, unit: unit(i) }))
    await store.chunks.writeMany(units)
    const pack = join(dir, 'chunks', 'packs', LAYER.slice(7))
    assert.deepEqual(readdirSync(join(dir, 'chunks')), ['packs'])
    assert.ok(statSync(pack).blocks * 512 >= 3 * big.length)

    store.gc(big.length)
    const left = ['b', 'c', 'd'].filter((c) => store.chunks.has(key(c)))
    assert.equal(left.length, 1)
    assert.ok(statSync(pack).blocks * 512 < 2 * big.length, 'evicted slots punched out')
    const status = store.cacheStatus()
    assert.equal(status.packDiskBytes, statSync(pack).blocks * 512, 'cache status counts it')
    assert.equal(status.holeBytes, 0)
    assert.equal(store.db.prepare('SELECT count(*) FROM pack_holes').pluck().get(), 0)
    assert.deepEqual(await store.chunks.read(key(left[0]!), 0, big.length), big)
    store.close()
  })

  it('fails a write on a full disk with EDGESTAR_STORE_DISK_FULL and gives its slot back', async () => {
    const dir = stateDir()
    const packs = join(dir, 'chunks', 'packs')
    mkdirSync(packs, { recursive: true })
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'edgestar-test-full', packs])
    try {
      const store = Store.open(dir)
      recordLayer(store)
      await assert.rejects(store.chunks.write(key('b'), Buffer.alloc(2 << 20, 1)), (err) =>
        isEdgestarError(err, 'EDGESTAR_STORE_DISK_FULL'),
      )
      assert.equal(store.chunks.has(key('b')), false)
      await store.chunks.punchHoles()
      assert.ok(statSync(join(packs, 'shared')).blocks * 512 < 64 * 1024, 'written part punched')

      await store.chunks.write(key('c'), Buffer.from('0123456789'))
      assert.equal((await store.chunks.read(key('c'), 0, 10)).toString(), '0123456789')
      store.close()
    } finally {
      execFileSync('umount', ['-l', packs])
    }
  })

  it('evicts least recently used chunks first and never those of a pinned image', async () => {
    const store = Store.open(stateDir(), { cacheLimitBytes: 15 })
    const pinnedImage = recordLayer(store, LAYER, ['b'])
    recordLayer(store, `sha256:${'9'.repeat(64)}`, ['c', 'd'])
    for (const c of ['b', 'c', 'd']) await store.chunks.write(key(c), Buffer.from('0123456789'))
    store.db.prepare('UPDATE chunks SET last_used_at = ? WHERE key = ?').run(1, key('b'))
    store.db.prepare('UPDATE chunks SET last_used_at = ? WHERE key = ?').run(2, key('d'))
    store.db.prepare('UPDATE chunks SET last_used_at = ? WHERE key = ?').run(3, key('c'))
    store.pins.add(pinnedImage, '/mnt/x')

    const report = store.gc()
    assert.equal(report.evictedChunks, 2)
    assert.equal(store.chunks.has(key('b')), true, 'pinned chunk kept although least recently used')
    assert.equal(store.chunks.has(key('d')), false)
    assert.equal(existsSync(store.chunks.pathOf(key('d'))), false)
    store.close()
  })

  it('open-file reads: no stale bytes after eviction or rewrite; a vanished file is missing', async () => {
    const store = Store.open(stateDir())
    recordLayer(store)
    await store.chunks.write(key('b'), Buffer.from('0123456789'))
    const into = Buffer.alloc(4)
    assert.equal(await store.chunks.readInto(key('b'), 2, into, 0, 4), 4)
    assert.equal(into.toString(), '2345')

    // Evicted (file removed) and written again with other bytes: the open file is dropped.
    store.gc(0)
    await assert.rejects(store.chunks.read(key('b'), 0, 10), (err) =>
      isEdgestarError(err, 'EDGESTAR_STORE_CHUNK_MISSING'),
    )
    await store.chunks.write(key('b'), Buffer.from('abcdefghij'))
    assert.equal((await store.chunks.read(key('b'), 0, 10)).toString(), 'abcdefghij')
    // A present object written again (two fetches of one key: the same bytes) keeps its
    // first copy, which a reader may hold; the second slot is freed.
    await store.chunks.write(key('b'), Buffer.from('ABCDEFGHIJ'))
    assert.equal((await store.chunks.read(key('b'), 0, 10)).toString(), 'abcdefghij')

    // A file of its own removed behind the cache's back: reported missing, row reset.
    await adoptFile(store, key('c'), '0123456789')
    rmSync(store.chunks.pathOf(key('c')))
    await assert.rejects(store.chunks.read(key('c'), 0, 10), (err) =>
      isEdgestarError(err, 'EDGESTAR_STORE_CHUNK_MISSING'),
    )
    assert.equal(store.chunks.has(key('c')), false)

    // More files than the open-file limit, read concurrently and repeatedly.
    const many = Array.from({ length: 150 }, (_, i) => `sha256-${i.toString(16).padStart(64, '0')}`)
    for (const k of many) await store.chunks.write(k, Buffer.from(k))
    for (let round = 0; round < 2; round++) {
      const got = await Promise.all(many.map((k) => store.chunks.read(k, 0, k.length)))
      assert.deepEqual(
        got.map((b) => b.toString()),
        many,
      )
    }
    store.close()
  })

  it('keeps uses in memory and writes them before gc and at close', async () => {
    const dir = stateDir()
    let store = Store.open(dir)
    recordLayer(store)
    for (const c of ['b', 'c']) await store.chunks.write(key(c), Buffer.from('0123456789'))
    store.db.prepare('UPDATE chunks SET last_used_at = 1').run()
    store.chunks.touch(key('b'))
    const lastUsed = (k: string): number =>
      (
        store.db.prepare('SELECT last_used_at AS t FROM chunks WHERE key = ?').get(k) as {
          t: number
        }
      ).t
    assert.equal(lastUsed(key('b')), 1, 'a use is not written on the read path')

    // gc sees the use: the chunk not touched goes first.
    store.gc(10)
    assert.equal(store.chunks.has(key('b')), true)
    assert.equal(store.chunks.has(key('c')), false)

    store.db.prepare('UPDATE chunks SET last_used_at = 1').run()
    store.chunks.touch(key('b'))
    store.close()
    rmSync(join(dir, 'owner.pid'))
    store = Store.open(dir)
    assert.ok(lastUsed(key('b')) > 1, 'the use was written at close')
    store.close()
  })

  it('ignores pins of a process that died', async () => {
    const store = Store.open(stateDir())
    const image = recordLayer(store, LAYER, ['b'])
    await store.chunks.write(key('b'), Buffer.from('0123456789'))
    store.pins.add(image, '/mnt/dead', 2 ** 22 + 12345)
    assert.equal(store.gc(0).evictedChunks, 1)
    store.close()
  })
})

describe('outbox', () => {
  it('drops the oldest telemetry first, keeps events, and counts losses', () => {
    const store = Store.open(stateDir(), { outboxLimits: { maxMessages: 4 } })
    store.outbox.enqueue('event', 'e', { n: 0 })
    for (let i = 1; i <= 5; i++) store.outbox.enqueue('telemetry', 't', { n: i })
    const kept = store.outbox.peek(10).map((m) => JSON.parse(m.payload).n)
    assert.deepEqual(kept, [0, 3, 4, 5])
    assert.equal(store.outbox.stats().droppedTelemetry, 2)
    assert.equal(store.outbox.stats().droppedOther, 0)
    store.outbox.remove(store.outbox.peek(2).map((m) => m.id))
    assert.equal(store.outbox.stats().messages, 2)
    store.close()
  })

  it('stays within its byte bound, dropping events only when no telemetry is left', () => {
    const store = Store.open(stateDir(), { outboxLimits: { maxBytes: 100 } })
    for (let i = 0; i < 5; i++) store.outbox.enqueue('event', 'e', 'x'.repeat(30))
    const stats = store.outbox.stats()
    assert.ok(stats.bytes <= 100)
    assert.equal(stats.droppedOther, 2)
    store.close()
  })
})

describe('command log and deployments', () => {
  it('remembers executed commands across a reopen', () => {
    const dir = stateDir()
    let store = Store.open(dir)
    assert.equal(store.commandLog.find('c1'), undefined)
    store.commandLog.record('c1', { ok: true })
    store.commandLog.record('c1', { ok: false })
    store.close()
    store = Store.open(dir)
    assert.deepEqual(store.commandLog.find('c1')?.result, { ok: true })
    store.close()
  })

  it('keeps deployments and their state history', () => {
    const store = Store.open(stateDir())
    store.deployments.put({ name: 'web', image: 'r/web:1', spec: { env: [] }, state: 'pending' })
    assert.equal(store.deployments.setState('web', 'running'), true)
    assert.equal(store.deployments.setState('nope', 'running'), false)
    assert.equal(store.deployments.get('web')?.state, 'running')
    assert.deepEqual(
      store.deployments.history('web').map((h) => h.state),
      ['pending', 'running'],
    )
    store.close()
  })
})
