import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { openServices, settingsFrom } from '../../src/cli/options.js'
import { openLayer } from '../../src/estargz/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import { presentObjects } from '../helpers/cache-objects.js'
import { FaultProxy } from '../helpers/fault-proxy.js'
import { pushTestImage } from '../helpers/images.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'
import { lastJsonLine, runCli } from './cli.js'
import { type BigLayer, bigLayer, fixtureLayer } from './fixture-image.js'

const dirs: string[] = []
function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'edgestar-images-'))
  dirs.push(dir)
  return dir
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

let registry: RegistryServer
let client: RegistryClient
let big: BigLayer

before(async () => {
  registry = await startRegistry()
  client = new RegistryClient()
  big = await bigLayer()
  await pushTestImage(client, `${registry.host}/h4/big:1`, [big])
})

after(async () => {
  await client?.close()
  await registry?.stop()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

describe('lazy reads from a real registry', () => {
  it('cat of a 1 KiB file from a 100 MB layer transfers less than TOC + one chunk + 64 KiB', async () => {
    const run = await runCli([
      'cat',
      `${registry.host}/h4/big:1`,
      big.smallName,
      '--stats',
      '--state-dir',
      stateDir(),
    ])
    assert.equal(run.code, 0, run.stderr)
    assert.ok(run.stdout.equals(big.smallContent))

    const reader = {
      sizeBytes: big.blob.length,
      readAt: async (o: number, l: number) => big.blob.subarray(o, o + l),
    }
    const index = await openLayer(reader)
    const chunk = index.chunksByName.get(big.smallName)![0]!
    const tocBytes = big.blob.length - index.tocOffset
    const bound = tocBytes + chunk.compressedSize + 64 * 1024
    const stats = lastJsonLine(run.stderr)
    assert.ok(typeof stats.bytesFetched === 'number' && typeof stats.requests === 'number')
    assert.ok(
      (stats.bytesFetched as number) < bound,
      `fetched ${stats.bytesFetched} bytes; bound ${bound} (TOC ${tocBytes}, chunk ${chunk.compressedSize})`,
    )
    assert.ok(big.blob.length > 100 * 1024 * 1024)
  })

  it('pulls every reference fixture (eStargz, zstd:chunked, plain gzip), each file byte-exact and each layer verified', async () => {
    for (const format of ['estargz', 'zstdchunked', 'gzip']) {
      for (const name of [
        'tiny',
        'mixed',
        'large',
        'prioritized',
        'deep',
        'gnutar',
        'whiteout',
        'empty',
      ]) {
        const layer = fixtureLayer(`${name}.${format}`)
        const ref = `${registry.host}/h4/fx-${name}-${format}:1`
        await pushTestImage(client, ref, [layer])
        const state = stateDir()

        const files = layer.files.filter(
          (f) =>
            f.type === 'reg' &&
            !/(^|\/)(stargz\.index\.json|\.(no\.)?prefetch\.landmark)$/.test(f.name),
        )
        const services = openServices(settingsFrom({ stateDir: state }))
        try {
          const pulled = await services.images.pull(await services.images.resolve(ref))
          assert.equal(pulled.verifiedLayers, 1, `${name}.${format}`)
          const fetched = services.registry.stats().bytesReceived
          const image = await services.images.open(ref)
          for (const file of files) {
            const bytes = await services.images.readFile(image, file.name)
            assert.equal(sha(bytes), file.sha256, `${name}.${format} ${file.name}`)
          }
          assert.equal(
            services.registry.stats().bytesReceived,
            fetched,
            'a pulled image reads without the network',
          )
        } finally {
          await services.close()
        }
      }
    }
  })
})

describe('layers with nothing to verify lazily', () => {
  it('fetches a layer without a TOC digest annotation whole and checks its diffID before serving a byte', async () => {
    const layer = fixtureLayer('large.estargz')
    const ref = `${registry.host}/h4/unannotated:1`
    await pushTestImage(client, ref, [
      { blob: layer.blob, diffID: layer.diffID, mediaType: layer.mediaType },
    ])
    const state = stateDir()
    const cat = await runCli(['cat', ref, 'data/small-after.txt', '--stats', '--state-dir', state])
    assert.equal(cat.code, 0, cat.stderr)
    assert.ok((lastJsonLine(cat.stderr).bytesFetched as number) >= layer.blob.length)
    const images = await runCli(['images', '--json', '--state-dir', state])
    const row = (lastJsonLine(images.stdout.toString()).images as { verifiedLayers: number }[])[0]!
    assert.equal(row.verifiedLayers, 1)

    // Evicted, it is fetched and checked whole again before a byte is served.
    const gc = await runCli(['cache', 'gc', '--target', '0', '--json', '--state-dir', state])
    assert.ok((lastJsonLine(gc.stdout.toString()).evictedChunks as number) > 0)
    const again = await runCli([
      'cat',
      ref,
      'data/small-after.txt',
      '--stats',
      '--state-dir',
      state,
    ])
    assert.equal(again.code, 0, again.stderr)
    assert.ok(again.stdout.equals(cat.stdout))
    assert.ok((lastJsonLine(again.stderr).bytesFetched as number) >= layer.blob.length)
  })

  it('with --allow-unverified reads such a layer lazily', async () => {
    const layer = fixtureLayer('large.estargz')
    const ref = `${registry.host}/h4/unannotated:1`
    await pushTestImage(client, ref, [
      { blob: layer.blob, diffID: layer.diffID, mediaType: layer.mediaType },
    ])
    const cat = await runCli([
      'cat',
      ref,
      'data/small-after.txt',
      '--stats',
      '--allow-unverified',
      '--state-dir',
      stateDir(),
    ])
    assert.equal(cat.code, 0, cat.stderr)
    assert.ok((lastJsonLine(cat.stderr).bytesFetched as number) < layer.blob.length / 2)
  })
})

describe('offline', () => {
  it('serves a fetched file with the registry stopped and fails an unfetched one with EDGESTAR_FETCH_OFFLINE', async () => {
    const own = await startRegistry()
    try {
      const layer = fixtureLayer('prioritized.estargz')
      const ref = `${own.host}/h4/offline:1`
      await pushTestImage(client, ref, [layer])
      const state = stateDir()
      const first = await runCli(['cat', ref, 'usr/bin/app', '--state-dir', state])
      assert.equal(first.code, 0, first.stderr)
      await own.stop()

      const again = await runCli(['cat', ref, 'usr/bin/app', '--state-dir', state])
      assert.equal(again.code, 0, again.stderr)
      assert.ok(again.stdout.equals(first.stdout))

      const missing = await runCli([
        'cat',
        ref,
        'usr/share/doc/README',
        '--state-dir',
        state,
        '--offline-wait',
        '500ms',
        '--json',
      ])
      assert.notEqual(missing.code, 0)
      assert.equal(
        (lastJsonLine(missing.stdout.toString()).error as { code: string }).code,
        'EDGESTAR_FETCH_OFFLINE',
      )
    } finally {
      await own.stop().catch(() => {})
    }
  })
})

describe('corrupted chunks from the network', () => {
  it('refetches once, then reports EDGESTAR_FETCH_INTEGRITY and stores nothing', async () => {
    const layer = fixtureLayer('prioritized.estargz')
    const ref = `${registry.host}/h4/corrupt:1`
    const { manifestDigest } = await pushTestImage(client, ref, [layer])
    const reader = {
      sizeBytes: layer.blob.length,
      readAt: async (o: number, l: number) => layer.blob.subarray(o, o + l),
    }
    const index = await openLayer(reader)
    const target = index.chunksByName.get('usr/share/doc/README')![0]!
    const atBlobOffset = target.compressedOffset + Math.floor(target.compressedSize / 2)

    for (const [corruptions, expectOk] of [
      [1, true],
      [2, false],
    ] as const) {
      const proxy = await FaultProxy.start(registry.url)
      try {
        const state = stateDir()
        const proxied = ref.replace(registry.host, proxy.host)
        const pull = await runCli(['pull', proxied, '--lazy', '--state-dir', state])
        assert.equal(pull.code, 0, pull.stderr)
        proxy.setFault({ kind: 'corrupt-blob-byte', atBlobOffset }, { times: corruptions })
        const before = proxy.blobGets().length
        // By digest: `cat` of a tag asks the registry again, and the fault would hit the config.
        const cat = await runCli([
          'cat',
          proxied.replace(':1', `@${manifestDigest}`),
          'usr/share/doc/README',
          '--state-dir',
          state,
          '--json',
        ])
        assert.equal(proxy.blobGets().length - before, 2, 'fetched exactly twice')
        if (expectOk) {
          assert.equal(cat.code, 0, cat.stderr)
          continue
        }
        assert.notEqual(cat.code, 0)
        const error = lastJsonLine(cat.stdout.toString()).error as { code: string }
        assert.equal(error.code, 'EDGESTAR_FETCH_INTEGRITY')
        const db = new Database(join(state, 'edgestar.db'), { readonly: true })
        const present = db
          .prepare(
            "SELECT count(*) FROM layer_units u JOIN chunks c ON c.key = u.chunk_key WHERE u.offset = ? AND c.state = 'present'",
          )
          .pluck()
          .get(target.compressedOffset)
        db.close()
        assert.equal(present, 0)
        const objects = presentObjects(state).filter((object) => object.key.startsWith('sha256-'))
        assert.deepEqual(objects, [])
      } finally {
        await proxy.stop()
      }
    }
  })
})
