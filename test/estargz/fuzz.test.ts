import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { extractLayer } from '../../src/cli/commands/extract.js'
import { isEdgestarError } from '../../src/errors.js'
import { decodeChunk, openLayer, readFileRange, verifyLayer } from '../../src/estargz/index.js'
import { listFixtures } from '../helpers/fixtures.js'
import { MemoryReader, rewriteEstargzToc, rewriteZstdToc, type TocJson } from './blob-builder.js'

// Bounded by iterations and by a wall-clock budget, whichever ends first; the seed makes
// a failure reproducible (EDGESTAR_FUZZ_SEED=N).
const ITERATIONS = Number(process.env.EDGESTAR_FUZZ_ITERATIONS ?? 2000)
const BUDGET_MS = Number(process.env.EDGESTAR_FUZZ_BUDGET_MS ?? 20_000)
const SEED = Number(process.env.EDGESTAR_FUZZ_SEED ?? 20261204)
const ITERATION_DEADLINE_MS = 15_000

function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const random = mulberry32(SEED)
const int = (n: number): number => Math.floor(random() * n)
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!

const bases = listFixtures()
  .filter((f) => f.index.compression !== 'gzip')
  .map((f) => ({ name: f.index.blob, compression: f.index.compression, bytes: f.bytes() }))

const ODD_VALUES: unknown[] = [
  -1,
  0,
  1,
  7,
  511,
  2 ** 31,
  2 ** 53,
  1e300,
  0.5,
  'x',
  '',
  '../x',
  '/',
  null,
  {},
  [],
  true,
  'sha256:00',
]
const FIELDS = [
  'name',
  'type',
  'size',
  'offset',
  'chunkOffset',
  'chunkSize',
  'linkName',
  'mode',
  'uid',
  'xattrs',
  'digest',
  'chunkDigest',
  'innerOffset',
  'endOffset',
  'chunkType',
]

function mutateBytes(blob: Buffer): Buffer {
  const kind = int(4)
  if (kind === 0) return blob.subarray(0, int(blob.length))
  const copy = Buffer.from(blob)
  if (kind === 1) {
    // Flip bytes, mostly near the end where the footer and TOC live.
    for (let i = int(8) + 1; i > 0; i--) {
      const at =
        random() < 0.6 ? copy.length - 1 - int(Math.min(copy.length, 700)) : int(copy.length)
      copy[at] = int(256)
    }
    return copy
  }
  const at = int(copy.length)
  if (kind === 2)
    return Buffer.concat([
      copy.subarray(0, at),
      Buffer.from([int(256), int(256)]),
      copy.subarray(at),
    ])
  return Buffer.concat([
    copy.subarray(0, at),
    copy.subarray(Math.min(copy.length, at + 1 + int(16))),
  ])
}

function mutateToc(toc: TocJson): TocJson {
  const entries = toc.entries
  const kind = int(4)
  if (entries.length === 0 || kind === 0) {
    entries.push({
      name: pick(['a', '../b', 'etc', './x/']),
      type: pick(['reg', 'hardlink', 'chunk', 'dir']),
      linkName: 'a',
      size: int(100),
    })
  } else if (kind === 1) {
    entries.splice(int(entries.length), 1)
  } else if (kind === 2) {
    const a = int(entries.length)
    const b = int(entries.length)
    ;[entries[a], entries[b]] = [entries[b]!, entries[a]!]
  } else {
    for (let i = int(3) + 1; i > 0; i--) {
      const target = pick(entries)
      const value = random() < 0.3 ? pick(entries).name : pick(ODD_VALUES)
      target[pick(FIELDS)] = value
    }
  }
  return toc
}

function mutate(base: (typeof bases)[number]): Buffer {
  if (random() < 0.6) return mutateBytes(base.bytes)
  if (base.compression === 'estargz') return rewriteEstargzToc(base.bytes, mutateToc)
  return rewriteZstdToc(base.bytes, random() < 0.5 ? 'snapshotter' : 'containers', mutateToc)
}

// Every failure must be an EdgestarError: anything else is a crash.
async function exercise(blob: Buffer): Promise<void> {
  const reader = new MemoryReader(blob)
  const index = await openLayer(reader, { maxTocBytes: 1024 * 1024 }).catch(expectEdgestar)
  if (index) {
    for (const chunk of index.chunks.slice(0, 40)) {
      const compressed = await reader.readAt(chunk.compressedOffset, chunk.compressedSize)
      try {
        decodeChunk(index.format, compressed, chunk)
      } catch (err) {
        expectEdgestar(err)
      }
    }
    for (const name of [...index.chunksByName.keys()].slice(0, 5)) {
      await readFileRange(reader, index, name, { offset: 1, length: 70_000 }).catch(expectEdgestar)
    }
  }
  if (blob.length < 200_000) await verifyLayer(reader).catch(expectEdgestar)
  if (blob.length < 200_000 && random() < 0.25) await extractMutated(blob)
}

const scratch = mkdtempSync(join(tmpdir(), 'edgestar-fuzz-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

// Extraction walks the stream and writes files: a mutated blob must fail with a code too.
async function extractMutated(blob: Buffer): Promise<void> {
  const path = join(scratch, 'blob')
  const out = join(scratch, 'out')
  writeFileSync(path, blob)
  rmSync(out, { recursive: true, force: true })
  await extractLayer(path, out).catch(expectEdgestar)
}

function expectEdgestar(err: unknown): undefined {
  if (isEdgestarError(err)) return undefined
  throw err
}

async function withDeadline(work: Promise<void>, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} hung for ${ITERATION_DEADLINE_MS} ms`)),
      ITERATION_DEADLINE_MS,
    )
  })
  try {
    await Promise.race([work, deadline])
  } finally {
    clearTimeout(timer)
  }
}

describe('fuzzing the reader with mutated fixtures', () => {
  it(`finds no crash and no hang in up to ${ITERATIONS} mutations (seed ${SEED})`, async () => {
    const startedMs = Date.now()
    let runs = 0
    for (; runs < ITERATIONS && Date.now() - startedMs < BUDGET_MS; runs++) {
      const base = pick(bases)
      const blob = mutate(base)
      await withDeadline(exercise(blob), `iteration ${runs} on ${base.name}`).catch((err) => {
        assert.fail(`iteration ${runs} (seed ${SEED}) on ${base.name}: ${(err as Error).stack}`)
      })
    }
    assert.ok(runs > 0)
  })
})
