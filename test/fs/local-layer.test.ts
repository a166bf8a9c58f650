import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { gunzipSync } from 'node:zlib'
import { compress as zstdCompress } from 'zstd-napi'
import { isEdgestarError } from '../../src/errors.js'
import { ESTARGZ_ERRORS, FileReader, openLayer } from '../../src/estargz/index.js'
import { abortMount, openLocalLayer } from '../../src/fs/index.js'
import { runChild } from '../helpers/mount.js'

const CLI = join(process.cwd(), 'bin/edgestar')
const FIXTURES = process.env.EDGESTAR_FIXTURES_DIR ?? '/work/shared/fixtures/estargz'
const CORRUPT_CODES = [ESTARGZ_ERRORS.CHUNK_CORRUPT, ESTARGZ_ERRORS.CHUNK_DIGEST_MISMATCH]

/** A copy of fixture `blob` in `dir` with one byte flipped mid-way through a chunk of `name`. */
async function withCorruptChunk(dir: string, blob: string, name: string): Promise<string> {
  const path = join(dir, blob)
  await copyFile(join(FIXTURES, blob), path)
  const reader = await FileReader.open(path)
  let at: number
  try {
    const chunk = (await openLayer(reader)).chunksByName.get(name)![0]!
    at = chunk.compressedOffset + Math.floor(chunk.compressedSize / 2)
  } finally {
    await reader.close()
  }

  const file = await open(path, 'r+')
  try {
    const byte = Buffer.alloc(1)
    await file.read(byte, 0, 1, at)
    byte[0]! ^= 0xff
    await file.write(byte, 0, 1, at)
  } finally {
    await file.close()
  }
  return path
}

/** Log events of a background mount's log file, parsed. */
async function logEvents(logFile: string): Promise<Record<string, unknown>[]> {
  const lines = (await readFile(logFile, 'utf8')).split('\n').filter((line) => line !== '')
  return lines.map((line) => JSON.parse(line) as Record<string, unknown>)
}

describe('edgestar mount --layer with a corrupt chunk', () => {
  let workDir: string

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'edgestar-local-layer-'))
  })

  after(async () => {
    await rm(workDir, { recursive: true, force: true })
  })

  for (const blob of ['large.estargz.tar.gz', 'large.zstdchunked.tar.zst'])
    it(`fails the reader with EIO, logs the chunk's code, serves the rest (${blob})`, async () => {
      const dir = join(workDir, `mnt-${blob}`)
      await mkdir(dir)
      const corrupt = await withCorruptChunk(workDir, blob, 'data/large.bin')
      const mounted = await runChild(CLI, ['mount', '--layer', corrupt, dir, '--detach', '--json'])
      const { logFile } = JSON.parse(mounted.stdout.trim().split('\n').pop() ?? '{}') as {
        logFile: string
      }
      try {
        assert.equal(mounted.code, 0, mounted.stdout)

        // Readers are children: the serving process never reads its own mount.
        const bad = await runChild('cat', [join(dir, 'data/large.bin')])
        assert.notEqual(bad.code, 0)
        assert.match(bad.stderr, /Input\/output error/)
        const good = await runChild('cat', [join(dir, 'data/small-after.txt')])
        assert.equal(good.code, 0, good.stderr)

        const failures = (await logEvents(logFile)).filter(
          (event) => event.msg === 'read failed; the reader got EIO',
        )
        assert.ok(failures.length > 0, 'the failed read is logged')
        for (const failure of failures) {
          const { code } = failure.err as { code?: string }
          assert.ok(CORRUPT_CODES.includes(code as never), String(code))
        }
      } finally {
        await runChild(CLI, ['umount', dir])
        await abortMount(dir).catch(() => {})
        await rm(logFile, { force: true })
      }
    })
})

describe('openLocalLayer with a plain tar', () => {
  let workDir: string

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'edgestar-plain-layer-'))
  })

  after(async () => {
    await rm(workDir, { recursive: true, force: true })
  })

  const tar = (): Buffer => gunzipSync(readFileSync(join(FIXTURES, 'large.gzip.tar.gz')))
  const cases = {
    gzip: () => readFileSync(join(FIXTURES, 'large.gzip.tar.gz')),
    zstd: () => zstdCompress(tar()),
  }

  for (const [format, build] of Object.entries(cases)) {
    it(`serves a plain ${format} tar's files`, async () => {
      const path = join(workDir, `whole.${format}`)
      await writeFile(path, build())
      const local = await openLocalLayer(path)
      try {
        const entry = await local.layer.entry('data/small-after.txt')
        assert.ok(entry)
        const data = await local.layer.read(entry, 0, entry.sizeBytes)
        assert.equal(data.length, entry.sizeBytes)
      } finally {
        await local.close()
      }
    })

    it(`refuses a cut-short plain ${format} tar with STREAM_CORRUPT`, async () => {
      const whole = build()
      const path = join(workDir, `cut.${format}`)
      await writeFile(path, whole.subarray(0, Math.floor(whole.length / 2)))
      await assert.rejects(openLocalLayer(path), (err) =>
        isEdgestarError(err, ESTARGZ_ERRORS.STREAM_CORRUPT),
      )
    })
  }
})
