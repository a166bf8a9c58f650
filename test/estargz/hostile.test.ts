import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import { gzipSync } from 'node:zlib'
import { isEdgestarError } from '../../src/errors.js'
import {
  decodeChunk,
  ESTARGZ_ERRORS,
  type OpenLayerOptions,
  openLayer,
  readFileRange,
  resolveHardlink,
  verifyLayer,
} from '../../src/estargz/index.js'
import { getFixture } from '../helpers/fixtures.js'
import {
  buildEstargz,
  estargzFooter,
  estargzToc,
  MemoryReader,
  rewriteEstargzToc,
  type TocJson,
} from './blob-builder.js'

const digestOf = (data: Buffer): string =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`
const mixed = getFixture('mixed', 'estargz').bytes()
const large = getFixture('large', 'estargz').bytes()
const tinyZstd = getFixture('tiny', 'zstd:chunked').bytes()
const plainGzip = getFixture('tiny', 'gzip').bytes()

function entry(toc: TocJson, name: string): Record<string, unknown> {
  const found = toc.entries.find((e) => e.name === name)
  if (!found) throw new Error(`fixture TOC has no ${name}`)
  return found
}

// An edit that sets one field of one named TOC entry.
function setField(name: string, key: string, value: unknown): (toc: TocJson) => undefined {
  return (toc) => {
    entry(toc, name)[key] = value
    return undefined
  }
}

// An edit that moves the sixth chunk entry's chunkOffset by `delta`.
function shiftChunk(delta: number): (toc: TocJson) => undefined {
  return (toc) => {
    const chunk = toc.entries.filter((e) => e.type === 'chunk')[5]!
    chunk.chunkOffset = (chunk.chunkOffset as number) + delta
    return undefined
  }
}

function withEntries(...extra: Record<string, unknown>[]): (toc: TocJson) => TocJson {
  return (toc) => ({ ...toc, entries: [...toc.entries, ...extra] })
}

function patched(blob: Buffer, at: number, bytes: Buffer | string): Buffer {
  const copy = Buffer.from(blob)
  copy.write(typeof bytes === 'string' ? bytes : bytes.toString('latin1'), at, 'latin1')
  return copy
}

function zstdFooterField(blob: Buffer, field: number, value: bigint): Buffer {
  const copy = Buffer.from(blob)
  copy.writeBigUInt64LE(value, copy.length - 40 + field * 8)
  return copy
}

// A chunk that inflates to 64 MiB of zeros though the TOC says it holds 100 bytes.
function bombBlob(): Buffer {
  const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 1 })
  const declared = Buffer.alloc(100)
  return buildEstargz([bomb], ([offset]) => ({
    version: 1,
    entries: [
      {
        name: 'bomb',
        type: 'reg',
        size: 100,
        offset,
        digest: digestOf(declared),
        chunkDigest: digestOf(declared),
      },
    ],
  }))
}

// A TOC member that inflates to 16 MiB, refused under a 1 MiB limit while inflating.
function tocBombBlob(): Buffer {
  const member = gzipSync(Buffer.alloc(16 * 1024 * 1024), { level: 1 })
  return Buffer.concat([member, estargzFooter(0)])
}

interface OpenCase {
  name: string
  blob: () => Buffer
  code: string
  opts?: OpenLayerOptions
}

const openCases: OpenCase[] = [
  {
    name: 'a truncated gzip footer',
    blob: () => mixed.subarray(0, mixed.length - 10),
    code: ESTARGZ_ERRORS.FOOTER_TRUNCATED,
  },
  {
    name: 'a truncated zstd footer',
    blob: () => tinyZstd.subarray(0, tinyZstd.length - 5),
    code: ESTARGZ_ERRORS.FOOTER_TRUNCATED,
  },
  {
    name: 'a blob too short for any footer',
    blob: () => Buffer.from('hi'),
    code: ESTARGZ_ERRORS.FOOTER_TRUNCATED,
  },
  {
    name: 'a bad gzip footer magic',
    blob: () => patched(mixed, mixed.length - 51 + 32, 'STARGX'),
    code: ESTARGZ_ERRORS.BAD_MAGIC,
  },
  {
    name: 'a bad zstd footer magic',
    blob: () => patched(tinyZstd, tinyZstd.length - 8, 'GnUlInUz'),
    code: ESTARGZ_ERRORS.BAD_MAGIC,
  },
  {
    name: 'bytes that are no layer at all',
    blob: () => Buffer.alloc(1000, 0x41),
    code: ESTARGZ_ERRORS.BAD_MAGIC,
  },
  { name: 'a plain gzip tar', blob: () => plainGzip, code: ESTARGZ_ERRORS.NO_TOC },
  {
    name: 'a TOC that is not JSON',
    blob: () => rewriteEstargzToc(mixed, () => Buffer.from('{"version":1,"entries":[')),
    code: ESTARGZ_ERRORS.TOC_NOT_JSON,
  },
  {
    name: 'a TOC placed past the end of the blob',
    blob: () =>
      Buffer.concat([mixed.subarray(0, mixed.length - 51), estargzFooter(mixed.length + 100)]),
    code: ESTARGZ_ERRORS.TOC_OUT_OF_RANGE,
  },
  {
    name: 'a zstd TOC larger than the blob',
    blob: () => zstdFooterField(tinyZstd, 1, 1n << 40n),
    code: ESTARGZ_ERRORS.TOC_OUT_OF_RANGE,
  },
  {
    name: 'a TOC past the size limit',
    blob: () => mixed,
    opts: { maxTocBytes: 200 },
    code: ESTARGZ_ERRORS.TOC_TOO_LARGE,
  },
  {
    name: 'a zstd TOC declaring 1 TiB uncompressed',
    blob: () => zstdFooterField(tinyZstd, 2, 1n << 40n),
    code: ESTARGZ_ERRORS.TOC_TOO_LARGE,
  },
  {
    name: 'a TOC member that inflates past the limit',
    blob: tocBombBlob,
    opts: { maxTocBytes: 1024 * 1024 },
    code: ESTARGZ_ERRORS.TOC_TOO_LARGE,
  },
  {
    name: 'a TOC stream that does not decompress',
    blob: () => {
      const { tocOffset } = estargzToc(mixed)
      return Buffer.concat([
        mixed.subarray(0, tocOffset),
        Buffer.alloc(300, 0x5a),
        estargzFooter(tocOffset),
      ])
    },
    code: ESTARGZ_ERRORS.TOC_CORRUPT,
  },
  {
    name: 'a wrong TOC digest',
    blob: () => mixed,
    opts: { tocDigest: `sha256:${'0'.repeat(64)}` },
    code: ESTARGZ_ERRORS.TOC_DIGEST_MISMATCH,
  },
  {
    name: 'TOC version 2',
    blob: () => rewriteEstargzToc(mixed, (t) => ({ ...t, version: 2 })),
    code: ESTARGZ_ERRORS.TOC_INVALID,
  },
  {
    name: 'entries that are not an array',
    blob: () => rewriteEstargzToc(mixed, (t) => ({ ...t, entries: {} as never })),
    code: ESTARGZ_ERRORS.TOC_INVALID,
  },
  {
    name: 'an unknown entry type',
    blob: () => rewriteEstargzToc(mixed, withEntries({ name: 'sock', type: 'socket' })),
    code: ESTARGZ_ERRORS.TOC_INVALID,
  },
  {
    name: 'a chunk entry before any file',
    blob: () =>
      rewriteEstargzToc(mixed, (t) => ({
        ...t,
        entries: [{ name: 'x', type: 'chunk', offset: 85 }, ...t.entries],
      })),
    code: ESTARGZ_ERRORS.TOC_INVALID,
  },
  {
    name: 'a name with ..',
    blob: () => rewriteEstargzToc(mixed, withEntries({ name: '../../etc/evil', type: 'dir' })),
    code: ESTARGZ_ERRORS.NAME_ESCAPE,
  },
  {
    name: 'an absolute name climbing out',
    blob: () => rewriteEstargzToc(mixed, withEntries({ name: '/../evil', type: 'dir' })),
    code: ESTARGZ_ERRORS.NAME_ESCAPE,
  },
  {
    name: 'a hardlink target with ..',
    blob: () =>
      rewriteEstargzToc(
        mixed,
        withEntries({ name: 'h', type: 'hardlink', linkName: '../outside' }),
      ),
    code: ESTARGZ_ERRORS.NAME_ESCAPE,
  },
  {
    name: 'a name with a NUL byte',
    blob: () => rewriteEstargzToc(mixed, withEntries({ name: 'a\u0000b', type: 'dir' })),
    code: ESTARGZ_ERRORS.NAME_ESCAPE,
  },
  {
    name: 'a duplicate name',
    blob: () => rewriteEstargzToc(mixed, withEntries({ name: './etc', type: 'dir' })),
    code: ESTARGZ_ERRORS.DUPLICATE_NAME,
  },
  {
    name: 'a hardlink to a missing target',
    blob: () => rewriteEstargzToc(mixed, setField('etc/config-hardlink', 'linkName', 'etc/nope')),
    code: ESTARGZ_ERRORS.HARDLINK_MISSING,
  },
  {
    name: 'a hardlink cycle',
    blob: () =>
      rewriteEstargzToc(
        mixed,
        withEntries(
          { name: 'l1', type: 'hardlink', linkName: 'l2' },
          { name: 'l2', type: 'hardlink', linkName: 'l1' },
        ),
      ),
    code: ESTARGZ_ERRORS.HARDLINK_CYCLE,
  },
  {
    name: 'a hardlink to itself',
    blob: () =>
      rewriteEstargzToc(mixed, withEntries({ name: 'me', type: 'hardlink', linkName: './me' })),
    code: ESTARGZ_ERRORS.HARDLINK_CYCLE,
  },
  {
    name: 'a hardlink to a directory',
    blob: () =>
      rewriteEstargzToc(mixed, withEntries({ name: 'hd', type: 'hardlink', linkName: 'etc/' })),
    code: ESTARGZ_ERRORS.HARDLINK_TO_DIR,
  },
  {
    name: 'a chunk gap',
    blob: () => rewriteEstargzToc(large, shiftChunk(1)),
    code: ESTARGZ_ERRORS.CHUNK_GAP,
  },
  {
    name: 'a gap at the end of a file',
    blob: () =>
      rewriteEstargzToc(large, (t) => {
        const chunks = t.entries.filter((e) => e.type === 'chunk')
        chunks.at(-1)!.chunkSize = 10
        return undefined
      }),
    code: ESTARGZ_ERRORS.CHUNK_GAP,
  },
  {
    name: 'a chunk overlap',
    blob: () => rewriteEstargzToc(large, shiftChunk(-1)),
    code: ESTARGZ_ERRORS.CHUNK_OVERLAP,
  },
  {
    name: 'a chunk offset past the data',
    blob: () => rewriteEstargzToc(mixed, setField('etc/config', 'offset', mixed.length + 10)),
    code: ESTARGZ_ERRORS.OFFSET_OUT_OF_RANGE,
  },
  {
    name: 'a size of 2^60',
    blob: () => rewriteEstargzToc(mixed, setField('etc/config', 'size', 2 ** 60)),
    code: ESTARGZ_ERRORS.ABSURD_SIZE,
  },
  {
    name: 'a negative size',
    blob: () => rewriteEstargzToc(mixed, setField('etc/config', 'size', -5)),
    code: ESTARGZ_ERRORS.ABSURD_SIZE,
  },
  {
    name: 'a size its compressed bytes cannot hold',
    blob: () => rewriteEstargzToc(mixed, setField('etc/config', 'size', 1e10)),
    code: ESTARGZ_ERRORS.ABSURD_SIZE,
  },
]

describe('hostile blobs: openLayer refuses each with its own code', () => {
  for (const c of openCases) {
    it(`refuses ${c.name} (${c.code})`, async () => {
      await assert.rejects(openLayer(new MemoryReader(c.blob()), c.opts), (err) =>
        isEdgestarError(err, c.code),
      )
    })
  }

  it('refuses an oversized zstd TOC without reading it', async () => {
    const blob = zstdFooterField(tinyZstd, 2, 1n << 40n)
    const reads: number[] = []
    const reader = new MemoryReader(blob)
    const counting = {
      sizeBytes: reader.sizeBytes,
      readAt: (o: number, n: number) => {
        reads.push(n)
        return reader.readAt(o, n)
      },
    }
    await assert.rejects(openLayer(counting), (err) =>
      isEdgestarError(err, ESTARGZ_ERRORS.TOC_TOO_LARGE),
    )
    assert.ok(Math.max(...reads) <= 128, 'only the footer and head were read')
  })
})

interface ChunkCase {
  name: string
  blob: () => Buffer
  code: string
}

const chunkCases: ChunkCase[] = [
  {
    name: 'a chunk whose digest does not match',
    blob: () =>
      rewriteEstargzToc(
        mixed,
        setField('etc/config', 'chunkDigest', digestOf(Buffer.from('other'))),
      ),
    code: ESTARGZ_ERRORS.CHUNK_DIGEST_MISMATCH,
  },
  { name: 'a decompression bomb', blob: bombBlob, code: ESTARGZ_ERRORS.CHUNK_BOMB },
  {
    name: 'a chunk whose bytes do not decompress',
    blob: () => {
      const { toc } = estargzToc(mixed)
      const at = entry(toc, 'etc/config').offset as number
      return patched(mixed, at + 12, Buffer.alloc(20, 0xff))
    },
    code: ESTARGZ_ERRORS.CHUNK_CORRUPT,
  },
]

describe('hostile blobs: chunks fail verification with their own code', () => {
  for (const c of chunkCases) {
    it(`reports ${c.name} (${c.code})`, async () => {
      const reader = new MemoryReader(c.blob())
      const index = await openLayer(reader)
      const report = await verifyLayer(reader)
      assert.equal(report.ok, false)
      assert.ok(
        report.errors.some((e) => e.code === c.code),
        JSON.stringify(report.errors),
      )

      const failing = index.chunks.find((chunk) => {
        try {
          decodeChunk(
            index.format,
            Buffer.from(
              c
                .blob()
                .subarray(chunk.compressedOffset, chunk.compressedOffset + chunk.compressedSize),
            ),
            chunk,
          )
          return false
        } catch (err) {
          assert.ok(isEdgestarError(err, c.code), String(err))
          return true
        }
      })
      assert.ok(failing, 'decodeChunk refuses the chunk')
    })
  }

  it('reports a wrong diffID', async () => {
    const report = await verifyLayer(new MemoryReader(mixed), {
      diffID: `sha256:${'1'.repeat(64)}`,
    })
    assert.deepEqual(
      report.errors.map((e) => e.code),
      [ESTARGZ_ERRORS.DIFFID_MISMATCH],
    )
  })
})

describe('valid but unusual shapes keep working', () => {
  const content = Buffer.from('shared content\n')
  const build = (entries: (offset: number) => Record<string, unknown>[]): MemoryReader =>
    new MemoryReader(
      buildEstargz([gzipSync(content)], ([offset]) => ({ version: 1, entries: entries(offset!) })),
    )
  const file = (offset: number) => ({
    name: 'a',
    type: 'reg',
    size: content.length,
    offset,
    digest: digestOf(content),
    chunkDigest: digestOf(content),
  })

  it('reads through a hardlink chain', async () => {
    const reader = build((o) => [
      file(o),
      { name: 'b', type: 'hardlink', linkName: 'a' },
      { name: 'c', type: 'hardlink', linkName: '/b' },
    ])
    const index = await openLayer(reader)
    assert.deepEqual(await readFileRange(reader, index, 'c'), content)
  })

  it('accepts a hardlink listed before its target', async () => {
    const reader = build((o) => [{ name: 'early', type: 'hardlink', linkName: 'a' }, file(o)])
    const index = await openLayer(reader)
    assert.deepEqual(await readFileRange(reader, index, 'early'), content)
  })

  it('accepts a hardlink to a symlink', async () => {
    const reader = build((o) => [
      file(o),
      { name: 's', type: 'symlink', linkName: 'a' },
      { name: 'hs', type: 'hardlink', linkName: 's' },
    ])
    const index = await openLayer(reader)
    assert.equal(resolveHardlink(index.byName, 'hs')?.type, 'symlink')
  })

  it('opens a 20000-link hardlink chain listed target-last', async () => {
    const links = Array.from({ length: 20_000 }, (_, i) => ({
      name: `l${i + 1}`,
      type: 'hardlink',
      linkName: `l${i}`,
    }))
    const reader = build((o) => [...links.reverse(), { ...file(o), name: 'l0' }])
    const index = await openLayer(reader)
    assert.deepEqual(await readFileRange(reader, index, 'l20000'), content)
  })

  it('opens an empty layer', async () => {
    for (const compression of ['estargz', 'zstd:chunked'] as const) {
      const index = await openLayer(new MemoryReader(getFixture('empty', compression).bytes()))
      assert.equal(index.chunks.length, 1, 'only the landmark has content')
      assert.equal(index.landmark, 'no-prefetch')
    }
  })
})
