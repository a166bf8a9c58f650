import assert from 'node:assert/strict'
import { existsSync, mkdirSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { isEdgestarError } from '../../src/errors.js'
import { SCHEMA_VERSION, Store } from '../../src/store/index.js'
import { key, recordLayer as recordTestLayer, stateDir as tempStateDir } from './store-fixtures.js'

const LAYER = `sha256:${'a'.repeat(64)}`
const stateDir = (): string => tempStateDir('edgestar-store-')
const recordLayer = (store: Store, layer = LAYER, chunkChars?: string[]): number =>
  recordTestLayer(store, layer, chunkChars)

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
    for (const c of ['b', 'c', 'd']) await store.chunks.write(key(c), Buffer.from('0123456789'))
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
    await store.chunks.write(key('b'), Buffer.from('ABCDEFGHIJ'))
    assert.equal((await store.chunks.read(key('b'), 0, 10)).toString(), 'ABCDEFGHIJ')

    // Removed behind the cache's back while open elsewhere: reported missing, row reset.
    await store.chunks.write(key('c'), Buffer.from('0123456789'))
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
