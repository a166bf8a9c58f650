import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import {
  cleanEntryName,
  detectLayerFormat,
  FileReader,
  type LayerIndex,
  type LayerTarEntry,
  openLayer,
  type RandomAccessReader,
  readFileRange,
  verifyLayer,
  walkLayer,
} from '../../src/estargz/index.js'
import { type Fixture, type FixtureFile, listFixtures } from '../helpers/fixtures.js'
import { MemoryReader, rewriteZstdToc, type TocJson, toLegacyStargz } from './blob-builder.js'

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

async function withReader<T>(
  fixture: Fixture,
  fn: (r: RandomAccessReader) => Promise<T>,
): Promise<T> {
  const reader = await FileReader.open(fixture.path)
  try {
    return await fn(reader)
  } finally {
    await reader.close()
  }
}

// The TOC form of a sidecar file: cleaned names, hardlink targets cleaned too.
function expectedLink(file: FixtureFile): string | undefined {
  if (file.type === 'hardlink') return cleanEntryName(file.linkName ?? '')
  return file.linkName
}

function checkTocAgainstSidecar(index: LayerIndex, fixture: Fixture): void {
  const side = fixture.sidecar
  const content = side.files.filter((f) => f.estargzMeta !== 'toc')
  assert.equal(index.byName.size, content.length, 'one TOC entry per tar entry')

  for (const file of content) {
    const name = cleanEntryName(file.name)
    const entry = index.byName.get(name)
    assert.ok(entry, `TOC has ${name}`)
    assert.equal(entry.type, file.type, `${name} type`)
    assert.equal(entry.mode, file.mode, `${name} mode`)
    assert.equal(entry.uid, file.uid, `${name} uid`)
    assert.equal(entry.gid, file.gid, `${name} gid`)
    assert.equal(entry.linkName, expectedLink(file), `${name} link`)
    assert.deepEqual(entry.xattrs ?? {}, file.xattrs ?? {}, `${name} xattrs`)
    assert.equal(entry.devMajor, file.devMajor ?? 0, `${name} devMajor`)
    assert.equal(entry.devMinor, file.devMinor ?? 0, `${name} devMinor`)
    if (file.type === 'reg') {
      assert.equal(entry.size, file.size, `${name} size`)
      if (file.size > 0) assert.equal(entry.digest, `sha256:${file.sha256}`, `${name} digest`)
    }
    if (file.chunks && fixture.index.compression === 'estargz') {
      const chunks = index.chunksByName.get(name) ?? []
      assert.deepEqual(
        chunks.map((c) => [c.compressedOffset, c.chunkOffset, c.chunkSize, c.chunkDigest]),
        file.chunks.map((c) => [c.offset, c.chunkOffset, c.chunkSize, c.chunkDigest]),
        `${name} chunks`,
      )
    }
  }
}

async function checkContent(
  reader: RandomAccessReader,
  index: LayerIndex,
  fixture: Fixture,
): Promise<void> {
  for (const file of fixture.sidecar.files) {
    if (file.type !== 'reg' || file.estargzMeta === 'toc') continue
    const data = await readFileRange(reader, index, file.name)
    assert.equal(data.length, file.size, `${file.name} length`)
    assert.equal(sha256(data), file.sha256, `${file.name} sha256`)
  }
  for (const file of fixture.sidecar.files.filter((f) => f.type === 'hardlink')) {
    const target = fixture.sidecar.files.find(
      (f) => cleanEntryName(f.name) === cleanEntryName(file.linkName ?? ''),
    )
    if (target?.type !== 'reg') continue
    assert.equal(
      sha256(await readFileRange(reader, index, file.name)),
      target.sha256,
      `${file.name} via hardlink`,
    )
  }
}

function entryFacts(e: LayerTarEntry): unknown {
  return {
    name: e.rawName,
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    mtime: e.mtimeSec,
    linkName: e.type === 'hardlink' || e.type === 'symlink' ? e.linkName : undefined,
    devMajor: e.type === 'char' || e.type === 'block' ? e.devMajor : undefined,
    devMinor: e.type === 'char' || e.type === 'block' ? e.devMinor : undefined,
    xattrs: Object.fromEntries(Object.entries(e.xattrs).map(([k, v]) => [k, v.toString('base64')])),
  }
}

function fileFacts(f: FixtureFile): unknown {
  return {
    name: f.name,
    type: f.type,
    mode: f.mode,
    uid: f.uid,
    gid: f.gid,
    mtime: f.mtime,
    linkName: f.type === 'hardlink' || f.type === 'symlink' ? expectedLink(f) : undefined,
    devMajor: f.type === 'char' || f.type === 'block' ? f.devMajor : undefined,
    devMinor: f.type === 'char' || f.type === 'block' ? f.devMinor : undefined,
    xattrs: f.xattrs ?? {},
  }
}

describe('reference fixtures: TOC, chunks and content', () => {
  for (const fixture of listFixtures().filter((f) => f.index.compression !== 'gzip')) {
    it(`reads ${fixture.index.blob} as its sidecar says`, async () => {
      await withReader(fixture, async (reader) => {
        const index = await openLayer(reader, { tocDigest: fixture.index.tocDigest! })
        assert.equal(
          index.format,
          fixture.index.compression === 'estargz' ? 'estargz' : 'zstd-chunked',
        )
        assert.equal(index.tocDigest, fixture.sidecar.tocDigest)
        assert.equal(index.tocOffset, fixture.sidecar.tocOffset)
        assert.equal(index.tocCompressedSize, fixture.sidecar.tocCompressedSize)
        assert.equal(index.footerSizeBytes, fixture.sidecar.footerSize)
        assert.equal(index.entries.length, fixture.sidecar.tocEntries)
        assert.equal(
          index.landmark,
          fixture.sidecar.prioritized.length > 0 ? 'prefetch' : 'no-prefetch',
        )
        checkTocAgainstSidecar(index, fixture)
        await checkContent(reader, index, fixture)
      })
    })
  }
})

describe('reference fixtures: the whole decompressed stream', () => {
  for (const fixture of listFixtures()) {
    it(`walks ${fixture.index.blob} entry by entry with the sidecar's diffID`, async () => {
      await withReader(fixture, async (reader) => {
        const format = await detectLayerFormat(reader)
        const seen: { facts: unknown; sha: string; size: number }[] = []
        const result = await walkLayer(reader, format, async (entry, content) => {
          const hash = createHash('sha256')
          let size = 0
          for await (const piece of content) {
            hash.update(piece)
            size += piece.length
          }
          seen.push({ facts: entryFacts(entry), sha: hash.digest('hex'), size })
        })

        assert.equal(result.diffID, fixture.index.diffID)
        assert.equal(result.uncompressedSizeBytes, fixture.index.uncompressedSize)
        assert.deepEqual(
          seen.map((s) => s.facts),
          fixture.sidecar.files.map(fileFacts),
        )
        for (const [i, file] of fixture.sidecar.files.entries()) {
          if (file.type !== 'reg') continue
          assert.equal(seen[i]!.size, file.size, `${file.name} size`)
          assert.equal(seen[i]!.sha, file.sha256, `${file.name} sha256`)
        }
      })
    })

    it(`verifies ${fixture.index.blob} against its TOC digest and diffID`, async () => {
      await withReader(fixture, async (reader) => {
        const report = await verifyLayer(reader, {
          ...(fixture.index.tocDigest ? { tocDigest: fixture.index.tocDigest } : {}),
          diffID: fixture.index.diffID,
        })
        assert.deepEqual(report.errors, [])
        assert.equal(report.ok, true)
        assert.equal(report.diffID, fixture.index.diffID)
        assert.equal(report.tocDigest, fixture.index.tocDigest)
      })
    })
  }
})

describe('readFileRange', () => {
  it('reads any range of a chunked file by decoding only the chunks that cover it', async () => {
    const fixture = listFixtures('estargz').find((f) => f.name === 'large')!
    await withReader(fixture, async (reader) => {
      const index = await openLayer(reader)
      const big = fixture.sidecar.files.find((f) => (f.chunks?.length ?? 0) > 10)!
      const whole = await readFileRange(reader, index, big.name)
      assert.equal(sha256(whole), big.sha256)

      const chunkSize = fixture.sidecar.chunkSize
      const ranges = [
        [0, 1],
        [chunkSize - 3, 6],
        [5 * chunkSize, chunkSize],
        [7 * chunkSize + 100, 3 * chunkSize],
        [big.size - 10, 100],
        [big.size, 10],
      ] as const
      for (const [offset, length] of ranges) {
        let reads = 0
        const counting: RandomAccessReader = {
          sizeBytes: reader.sizeBytes,
          readAt: (o, n) => {
            reads++
            return reader.readAt(o, n)
          },
        }
        const got = await readFileRange(counting, index, big.name, { offset, length })
        assert.deepEqual(got, whole.subarray(offset, offset + length), `range ${offset}+${length}`)
        const end = Math.min(big.size, offset + length)
        const covering =
          end > offset ? Math.ceil(end / chunkSize) - Math.floor(offset / chunkSize) : 0
        assert.equal(reads, covering, `chunks fetched for ${offset}+${length}`)
      }
    })
  })
})

// No fixture has the legacy stargz footer; each eStargz fixture gets one, once with its
// digests and once without (as old stargz layers were written).
describe('legacy stargz (47-byte footer)', () => {
  for (const fixture of listFixtures('estargz')) {
    it(`reads ${fixture.name} with a legacy footer, with and without digests`, async () => {
      for (const dropDigests of [false, true]) {
        const reader = new MemoryReader(toLegacyStargz(fixture.bytes(), dropDigests))
        const index = await openLayer(reader)
        assert.equal(index.format, 'stargz-legacy')
        assert.equal(index.footerSizeBytes, 47)
        assert.equal(
          index.chunks.some((c) => c.chunkDigest),
          !dropDigests,
        )
        await checkContent(reader, index, fixture)
        const report = await verifyLayer(reader)
        assert.deepEqual(report.errors, [])
      }
    })
  }
})

// No fixture is written by containers/storage, so each zstd:chunked fixture is re-framed
// in that dialect: 64-byte footer, tar-split frame, `endOffset` on every chunk.
describe('containers/storage zstd:chunked dialect', () => {
  for (const fixture of listFixtures('zstd:chunked')) {
    it(`reads ${fixture.name} re-framed with a 64-byte footer`, async () => {
      const blob = rewriteZstdToc(fixture.bytes(), 'containers', (toc) =>
        addEndOffsets(toc, fixture),
      )
      const reader = new MemoryReader(blob)
      const index = await openLayer(reader)
      assert.equal(index.format, 'zstd-chunked-containers')
      assert.equal(index.footerSizeBytes, 64)
      checkTocAgainstSidecar(index, fixture)
      await checkContent(reader, index, fixture)
      const report = await verifyLayer(reader, { diffID: fixture.index.diffID })
      assert.deepEqual(report.errors, [])
    })
  }
})

function addEndOffsets(toc: TocJson, fixture: Fixture): TocJson {
  const offsets = [
    ...new Set(
      toc.entries.map((e) => e.offset as number | undefined).filter((o): o is number => !!o),
    ),
  ]
  offsets.sort((a, b) => a - b)
  const dataEnd = fixture.sidecar.tocOffset! - 8
  for (const entry of toc.entries) {
    const offset = entry.offset as number | undefined
    if (!offset) continue
    entry.endOffset = offsets[offsets.indexOf(offset) + 1] ?? dataEnd
  }
  return toc
}
