/**
 * Parity with the reference converter: each fixture's plain gzip layer (the reference's
 * input) converted by edgestar with the same chunk size and prioritized paths gives the
 * same TOC as the reference's own eStargz / zstd:chunked blob, entry for entry, except
 * for compressed offsets (the compressors differ) and user/group names (the reference
 * writes a name only on its first use).
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import {
  type ConvertFormat,
  convertLayer,
  FileReader,
  openLayer,
  type TocEntry,
} from '../../src/estargz/index.js'

const FIXTURES = '/work/shared/fixtures/estargz'

interface IndexRow {
  blob: string
  sidecar: string
  compression: string
  chunkSize: number
  prioritized: string[]
}

interface Sidecar {
  tocDigest: string
  diffID: string
  prioritized: string[]
  chunkSize: number
}

const rows = JSON.parse(readFileSync(join(FIXTURES, 'index.json'), 'utf8')) as IndexRow[]
const FORMATS: Record<string, ConvertFormat> = {
  estargz: 'estargz',
  'zstd:chunked': 'zstd-chunked',
}

let work: string
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'edgestar-parity-'))
})
after(async () => {
  await rm(work, { recursive: true, force: true })
})

async function tocEntries(blob: string, tocDigest: string): Promise<Partial<TocEntry>[]> {
  const reader = await FileReader.open(blob)
  try {
    const index = await openLayer(reader, { tocDigest })
    return index.entries.map(comparable)
  } finally {
    await reader.close()
  }
}

function comparable(entry: TocEntry): Partial<TocEntry> {
  const { offset, endOffset, innerOffset, userName, groupName, ...rest } = entry
  void [offset, endOffset, innerOffset, userName, groupName]
  return rest
}

describe('parity with the reference converter on the shared fixtures', () => {
  for (const row of rows) {
    const format = FORMATS[row.compression]
    if (format === undefined) continue
    const name = row.blob.split('.')[0] as string
    test(`${name} as ${format}: same TOC entries as the reference`, async () => {
      const sidecar = JSON.parse(readFileSync(join(FIXTURES, row.sidecar), 'utf8')) as Sidecar
      const input = join(FIXTURES, `${name}.gzip.tar.gz`)
      const out = join(work, `${name}.${format}`)
      const result = await convertLayer(input, out, {
        format,
        chunkSizeBytes: sidecar.chunkSize,
        prioritizedPaths: sidecar.prioritized,
        allowMissingPrioritized: true,
        workers: 0,
      })

      const ours = await tocEntries(out, result.tocDigest)
      const theirs = await tocEntries(join(FIXTURES, row.blob), sidecar.tocDigest)
      assert.deepEqual(ours, theirs)
    })
  }
})
