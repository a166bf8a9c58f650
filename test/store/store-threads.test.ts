import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { closeSync, existsSync, openSync, readSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { isEdgestarError } from '../../src/errors.js'
import { Store } from '../../src/store/index.js'
import { recordMainThreadSql } from '../helpers/main-thread-sql.js'
import { keyOf, LAYER, objectOf, sizeOf, UNITS } from './commit-child.js'
import { key, recordLayer as recordTestLayer, stateDir as tempStateDir } from './store-fixtures.js'

const CHILD = fileURLToPath(new URL('./commit-child.js', import.meta.url))
const KILLS = 8

const OTHER_LAYER = `sha256:${'a'.repeat(64)}`
const stateDir = (): string => tempStateDir('edgestar-threads-')
const recordLayer = (store: Store, layer = OTHER_LAYER, chunkChars?: string[]): number =>
  recordTestLayer(store, layer, chunkChars)

/** Rows of the crash layer's units, read with a connection of the test's own. */
interface UnitAndChunkRow {
  key: string
  size: number | null
  state: string | null
  memberBytes: number | null
  pack: string | null
  packOffset: number | null
}

function unitRows(dir: string): UnitAndChunkRow[] {
  const db = new Database(join(dir, 'edgestar.db'), { readonly: true })
  try {
    return db
      .prepare(
        `SELECT u.chunk_key AS key, c.size_bytes AS size, c.state, u.member_bytes AS memberBytes,
           c.pack, c.pack_offset AS packOffset
         FROM layer_units u LEFT JOIN chunks c ON c.key = u.chunk_key
         WHERE u.layer_digest = ? AND u.kind = 'chunk'`,
      )
      .all(LAYER) as UnitAndChunkRow[]
  } finally {
    db.close()
  }
}

// The bytes of a present row's slot in its pack file.
function slotBytes(dir: string, row: UnitAndChunkRow): Buffer {
  const fd = openSync(join(dir, 'chunks', 'packs', row.pack!), 'r')
  try {
    const bytes = Buffer.alloc(row.size!)
    const n = readSync(fd, bytes, 0, bytes.length, row.packOffset!)
    return bytes.subarray(0, n)
  } finally {
    closeSync(fd)
  }
}

// Runs the child until it has reported `afterUnits` stored units, then kills it with
// SIGKILL after `afterMs`; resolves with the last count it reported.
function storeAndKill(dir: string, afterUnits: number, afterMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, EDGESTAR_LOG_LEVEL: 'silent' },
    })
    let acknowledged = 0
    let killTimer: NodeJS.Timeout | undefined
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (text: string) => {
      for (const match of text.matchAll(/stored (\d+)/g)) acknowledged = Number(match[1])
      if (acknowledged >= afterUnits && killTimer === undefined)
        killTimer = setTimeout(() => child.kill('SIGKILL'), afterMs)
    })
    child.on('error', reject)
    child.on('exit', () => {
      clearTimeout(killTimer)
      resolve(acknowledged)
    })
  })
}

describe('store threads', () => {
  it('commits a chunk and its unit bookkeeping together, seen by the reader at once', async () => {
    const store = Store.open(stateDir())
    try {
      recordLayer(store)
      const before = await store.queries.readPlan(OTHER_LAYER, 'fb', 0, 10)
      assert.equal(before.refs[0]?.isPresent, false)
      assert.deepEqual(before.entry, { type: 'reg', size: 10 })

      await store.chunks.write(key('b'), Buffer.from('0123456789'), {
        layerDigest: OTHER_LAYER,
        offset: 100,
        memberBytes: 522,
        dataBytes: 10,
        tail: Buffer.alloc(512, 1),
      })
      const after = await store.queries.readPlan(OTHER_LAYER, 'fb', 0, 10)
      assert.equal(after.refs[0]?.isPresent, true)
      const [unit] = await store.queries.unitsWithTails(OTHER_LAYER, 100, 1)
      assert.equal(unit?.memberBytes, 522)
      assert.deepEqual(Buffer.from(unit!.tail!), Buffer.alloc(512, 1))
      assert.equal(store.chunks.has(key('b')), true, 'the main connection sees it too')
    } finally {
      store.close()
    }
  })

  it("runs the agent's records and sums with no SQLite on the event loop, durably", async () => {
    const dir = stateDir()
    let store = Store.open(dir)
    const imageId = recordLayer(store)
    const layerRow = store.layers.get(OTHER_LAYER)!
    const statements = recordMainThreadSql()
    try {
      // A new layer's index, as a deploy records it.
      const layer = `sha256:${'e'.repeat(64)}`
      await store.recordLayerIndex(
        { ...layerRow, digest: layer },
        {
          entries: [{ name: 'fe', type: 'reg', size: 10 }],
          chunks: [
            {
              entryName: 'fe',
              chunkOffset: 0,
              chunkSize: 10,
              compressedOffset: 100,
              compressedSize: 100,
              innerOffset: 0,
              chunkDigest: `sha256:${'e'.repeat(64)}`,
            },
          ],
          blobSizeBytes: 10_000,
        },
      )
      const progress = await store.queries.imageProgress([OTHER_LAYER, layer])
      assert.deepEqual(await store.queries.cacheUsage(), { presentChunks: 0, presentBytes: 0 })

      // Deployment rows, the command log and the outbox, as the agent writes them.
      const row = await store.deployments.putAsync({
        name: 'web',
        image: 'r/x:1',
        spec: { imageId },
        state: 'pending',
      })
      assert.equal(row.state, 'pending')
      assert.equal(await store.deployments.setStateAsync('web', 'running', 'started'), true)
      assert.equal(await store.deployments.setStateAsync('gone', 'running'), false)
      await store.commandLog.recordAsync('c1', { ok: true })
      await store.commandLog.recordAsync('c1', { ok: false })
      assert.deepEqual((await store.commandLog.findAsync('c1'))?.result, { ok: true })
      const queued = await store.outbox.enqueueAsync('event', 'e', { n: 1 })
      await store.outbox.enqueueAsync('telemetry', 't', 'sample')
      const rows = await store.outbox.peekAsync(10)
      assert.deepEqual(
        rows.map((r) => [r.id, r.payload]),
        [
          [queued.id, '{"n":1}'],
          [queued.id + 1, 'sample'],
        ],
      )
      await store.outbox.removeAsync([queued.id])
      assert.equal((await store.outbox.statsAsync()).messages, 1)
      statements.restore()
      assert.deepEqual(statements.seen, [], 'no SQLite on the event loop')

      const units = [OTHER_LAYER, layer].map((d) => store.layers.progress(d).totalUnits)
      assert.equal(progress.totalUnits, units[0]! + units[1]!, 'the sum the main thread makes')
    } finally {
      statements.restore()
      store.close()
    }

    // What resolved was committed: a fresh open finds it.
    store = Store.open(dir)
    try {
      assert.equal(store.layers.isIndexed(`sha256:${'e'.repeat(64)}`), true)
      assert.equal(store.deployments.get('web')?.state, 'running')
      assert.deepEqual(
        store.deployments.history('web').map((h) => h.state),
        ['pending', 'running'],
      )
      assert.deepEqual(store.commandLog.find('c1')?.result, { ok: true })
      assert.deepEqual(
        store.outbox.peek(10).map((r) => r.payload),
        ['sample'],
      )
      assert.equal(await store.deployments.removeAsync('web'), true)
      assert.equal(store.deployments.get('web'), undefined)
    } finally {
      store.close()
    }
  })

  it('lets the writer finish what it was sent before close returns', async () => {
    const dir = stateDir()
    let store = Store.open(dir)
    recordLayer(store)
    const committing = store.setLayerState(OTHER_LAYER, 'verified')
    store.close()
    await committing
    store = Store.open(dir)
    assert.equal(store.layers.get(OTHER_LAYER)?.state, 'verified')
    store.close()
  })

  it('rejects questions to a closed store with EDGESTAR_STORE_CLOSED', async () => {
    const store = Store.open(stateDir())
    recordLayer(store)
    await store.queries.layer(OTHER_LAYER)
    store.close()
    await assert.rejects(store.queries.layer(OTHER_LAYER), (err) =>
      isEdgestarError(err, 'EDGESTAR_STORE_CLOSED'),
    )
    await assert.rejects(store.setLayerState(OTHER_LAYER, 'verified'), (err) =>
      isEdgestarError(err, 'EDGESTAR_STORE_CLOSED'),
    )
  })

  it('evicts off the event loop as gc does: least recently used first, never a pinned image', async () => {
    const store = Store.open(stateDir(), { cacheLimitBytes: 15 })
    try {
      const pinnedImage = recordLayer(store, OTHER_LAYER, ['b'])
      recordLayer(store, `sha256:${'9'.repeat(64)}`, ['c', 'd'])
      for (const c of ['b', 'c', 'd']) await store.chunks.write(key(c), Buffer.from('0123456789'))
      store.db.prepare('UPDATE chunks SET last_used_at = ? WHERE key = ?').run(1, key('b'))
      store.db.prepare('UPDATE chunks SET last_used_at = ? WHERE key = ?').run(2, key('c'))
      store.db.prepare('UPDATE chunks SET last_used_at = ? WHERE key = ?').run(3, key('d'))
      store.pins.add(pinnedImage, '/mnt/x')
      // A use still held in memory counts: `c` becomes the most recent, so `d` goes.
      store.chunks.touch(key('c'))

      const report = await store.gcAsync(20)
      assert.equal(report.evictedChunks, 1)
      assert.equal(
        store.chunks.has(key('b')),
        true,
        'pinned chunk kept although least recently used',
      )
      assert.equal(store.chunks.has(key('c')), true)
      assert.equal(store.chunks.has(key('d')), false)
      assert.equal(existsSync(store.chunks.pathOf(key('d'))), false)
    } finally {
      store.close()
    }
  })

  it(`leaves rows and files in agreement when killed while committing (${KILLS} kills)`, async () => {
    let stored = 0
    for (let run = 0; run < KILLS; run++) {
      const dir = stateDir()
      // Kill points spread over the first commits, from at once to a few batches later.
      const acknowledged = await storeAndKill(dir, 1 + run * 16, run * 7)
      const rows = unitRows(dir)
      assert.equal(rows.length, UNITS)

      const present = rows.filter((row) => row.state === 'present')
      stored += present.length
      assert.ok(
        present.length >= acknowledged,
        `run ${run}: ${present.length} rows, ${acknowledged} acknowledged`,
      )
      for (const row of rows) {
        const i = Number.parseInt(row.key.slice(7), 16)
        if (row.state === 'present') {
          // Marked present only after its slot was written and synced.
          assert.equal(row.size, sizeOf(i), `run ${run}: row size of ${i}`)
          assert.equal(row.pack, LAYER.slice(7), `run ${run}: pack of ${i}`)
          assert.ok(slotBytes(dir, row).equals(objectOf(i)), `run ${run}: bytes of ${i}`)
        }
        // The unit bookkeeping went in the same transaction as the chunk row.
        assert.equal(row.memberBytes !== null, row.state === 'present', `run ${run}: unit ${i}`)
        assert.equal(keyOf(i), row.key)
      }

      // Reopening reconciles: whatever the kill left, rows and files agree and nothing is lost.
      const store = Store.open(dir)
      assert.equal(store.reconciled.rowsMarkedMissing, 0, `run ${run}`)
      assert.equal(store.cacheStatus().presentChunks, present.length)
      store.close()
    }
    assert.ok(stored > 0, 'some runs were killed after commits')
  })
})
