import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { gzipSync } from 'node:zlib'
import { isEdgestarError } from '../../src/errors.js'
import { ESTARGZ_ERRORS } from '../../src/estargz/index.js'
import {
  type DecodeOutcome,
  DecodeWorker,
  type UnitToDecode,
} from '../../src/fetch/decode-worker.js'

const digestOf = (data: Buffer): string =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`

/** A fetch unit holding one gzip member: `data` as a single chunk checked against `digest`. */
function chunkUnit(data: Buffer, options: { digest?: string; declared?: number } = {}) {
  const compressed = gzipSync(data)
  const chunkDigest = options.digest ?? digestOf(data)
  return {
    unit: { kind: 'chunk', sizeBytes: compressed.length, chunkDigest },
    extents: [
      {
        entryName: 'file',
        chunkOffset: 0,
        chunkSize: options.declared ?? data.length,
        compressedOffset: 0,
        compressedSize: compressed.length,
        innerOffset: 0,
        chunkDigest,
      },
    ],
    compressed,
  } satisfies UnitToDecode
}

function codeOf(outcome: DecodeOutcome | undefined): string | undefined {
  return outcome !== undefined && 'error' in outcome
    ? (outcome.error as { code?: string }).code
    : undefined
}

describe('decode worker', () => {
  it('decodes and checks units on its thread, keeping the codes of each failure', async () => {
    const decoder = new DecodeWorker()
    try {
      const data = randomBytes(256 * 1024)
      const good = chunkUnit(data)
      const altered = chunkUnit(data, { digest: digestOf(Buffer.from('other')) })
      const bomb = chunkUnit(Buffer.alloc(32 << 20), { declared: 10 })
      const truncated = chunkUnit(data)
      truncated.compressed = truncated.compressed.subarray(0, 1000)
      const outcomes = await decoder.decode('estargz', [good, altered, bomb, truncated], 'demand')

      const first = outcomes[0]!
      assert.ok('decoded' in first)
      assert.ok(Buffer.isBuffer(first.decoded.object))
      assert.ok(first.decoded.object.equals(data))
      assert.equal(first.decoded.tail?.length, 0)
      assert.equal(first.decoded.memberBytes, data.length)
      assert.equal(codeOf(outcomes[1]), ESTARGZ_ERRORS.CHUNK_DIGEST_MISMATCH)
      assert.equal(codeOf(outcomes[2]), ESTARGZ_ERRORS.CHUNK_BOMB)
      assert.equal(codeOf(outcomes[3]), ESTARGZ_ERRORS.CHUNK_CORRUPT)
      assert.ok(outcomes.slice(1).every((o) => 'error' in o && isEdgestarError(o.error)))
      // The fetched bytes were moved to the thread, not copied.
      assert.equal(good.compressed.length, 0)
    } finally {
      decoder.close()
    }
  })

  it('hashes pieces in order as sha256 does, moving only the pieces given', async () => {
    const decoder = new DecodeWorker()
    try {
      const pieces = Array.from({ length: 24 }, (_, i) => randomBytes(300 * 1024 + i))
      const expected = createHash('sha256')
      for (const piece of pieces) expected.update(piece)
      const wanted = `sha256:${expected.digest('hex')}`

      const hash = decoder.sha256()
      for (const [i, piece] of pieces.entries()) await hash.update(piece, i % 2 === 0)
      assert.equal(await hash.digest(), wanted)
      // randomBytes of this size returns a buffer of its own: given ones moved.
      assert.ok(pieces.every((piece, i) => (i % 2 === 0) === (piece.length === 0)))
    } finally {
      decoder.close()
    }
  })

  it('keeps interleaved hashes apart and forgets one that is dropped', async () => {
    const decoder = new DecodeWorker()
    try {
      const pieces = Array.from({ length: 8 }, () => randomBytes(700 * 1024))
      const abandoned = decoder.sha256()
      const kept = decoder.sha256('demand')
      for (const piece of pieces) {
        await abandoned.update(piece)
        await kept.update(piece)
      }
      abandoned.drop()
      const expected = createHash('sha256')
      for (const piece of pieces) expected.update(piece)
      assert.equal(await kept.digest(), `sha256:${expected.digest('hex')}`)
      kept.drop()
    } finally {
      decoder.close()
    }
  })

  it('decodes queued demand units before queued background units', async () => {
    const decoder = new DecodeWorker()
    try {
      const order: string[] = []
      const decode = (name: string, priority: 'demand' | 'background') =>
        decoder
          .decode('estargz', [chunkUnit(randomBytes(64 * 1024))], priority)
          .then(() => order.push(name))
      // The first goes out at once; the other two wait for it in the queue.
      await Promise.all([
        decode('running', 'background'),
        decode('background', 'background'),
        decode('demand', 'demand'),
      ])
      assert.deepEqual(order, ['running', 'demand', 'background'])
    } finally {
      decoder.close()
    }
  })

  it('fails queued and later requests with EDGESTAR_FETCH_CLOSED once closed', async () => {
    const decoder = new DecodeWorker()
    const queued = [1, 2].map(() =>
      decoder.decode('estargz', [chunkUnit(randomBytes(1024))], 'background'),
    )
    decoder.close()
    for (const request of queued)
      await assert.rejects(request, (err) => isEdgestarError(err, 'EDGESTAR_FETCH_CLOSED'))
    await assert.rejects(decoder.decode('estargz', [], 'demand'), (err) =>
      isEdgestarError(err, 'EDGESTAR_FETCH_CLOSED'),
    )
  })
})
