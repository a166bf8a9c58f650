/**
 * Round trip of a real Debian root filesystem ($EDGESTAR_TEST_ROOTFS) through the
 * converter, in both formats: the layer, read back chunk by chunk with edgestar's
 * reader, matches the tree entry by entry, and the reference implementation reads it
 * too. Conversions are cached under $EDGESTAR_CACHE_DIR keyed by their inputs.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { promisify } from 'node:util'
import { FileReader, verifyLayer } from '../../src/estargz/index.js'
import {
  cachedConvert,
  diffListings,
  listLayer,
  listTree,
  refgenPath,
  refgenVerify,
} from './support.js'

const rootfs = process.env.EDGESTAR_TEST_ROOTFS
const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname
const run = promisify(execFile)

describe('converting the Debian rootfs', {
  skip: rootfs ? false : 'EDGESTAR_TEST_ROOTFS unset (run through scripts/test.sh)',
}, () => {
  const tree = rootfs ? listTree(rootfs) : Promise.resolve(new Map())

  for (const format of ['estargz', 'zstd-chunked'] as const) {
    const title = 'every entry reads back as in the tree (type, mode, owner, size, sha256, link)'
    test(`${format}: ${title}`, async () => {
      const { blob, result } = await cachedConvert(rootfs as string, { format })
      const { index, entries } = await listLayer(blob, result.tocDigest)

      assert.equal(index.tocDigest, result.tocDigest)
      assert.equal(index.landmark, 'no-prefetch')
      assert.deepEqual(diffListings(await tree, entries).slice(0, 20), [])
    })

    test(`${format}: \`edgestar extract\` of the layer gives back the tree, entry by entry`, async () => {
      const { blob, result } = await cachedConvert(rootfs as string, { format })
      const dir = await mkdtemp(join(tmpdir(), 'edgestar-rootfs-extract-'))
      try {
        const target = join(dir, 'root')
        const args = ['extract', blob, target, '--toc-digest', result.tocDigest]
        await run(process.execPath, [CLI, ...args, '--diff-id', result.diffID, '--json'])
        const extracted = await listTree(target)
        extracted.delete('') // the extraction directory itself is ours, not the layer's
        const expected = new Map(await tree)
        expected.delete('')
        assert.deepEqual(diffListings(expected, extracted).slice(0, 20), [])
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })

    test(`${format}: the whole stream verifies against the reported diffID`, async () => {
      const { blob, result } = await cachedConvert(rootfs as string, { format })
      const reader = await FileReader.open(blob)
      try {
        const report = await verifyLayer(reader, {
          tocDigest: result.tocDigest,
          diffID: result.diffID,
        })
        assert.deepEqual(report.errors, [])
        assert.equal(report.ok, true)
        assert.equal(reader.sizeBytes, result.size)
      } finally {
        await reader.close()
      }
    })

    test(`${format}: the reference implementation reads it and finds the tree`, async (t) => {
      const refgen = await refgenPath()
      if (refgen === undefined) {
        t.skip('the reference refgen could not be built (see stderr); interop not checked')
        return
      }
      const { blob, result } = await cachedConvert(rootfs as string, { format })
      const report = await refgenVerify(refgen, blob, result.tocDigest, rootfs)

      assert.deepEqual(report.errors, [])
      assert.deepEqual(report.differences, [])
      assert.equal(report.ok, true)
      assert.equal(report.diffID, result.diffID)
      assert.equal(report.tocDigest, result.tocDigest)
    })
  }
})
