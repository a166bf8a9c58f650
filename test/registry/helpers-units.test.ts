import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { redirectExpiryMs } from '../../src/registry/blob-location.js'
import { coalesce } from '../../src/registry/blob-reader.js'
import { parseContentRange } from '../../src/registry/multipart.js'
import { retryDelayMs } from '../../src/registry/transport.js'

const POLICY = { maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 1000 }

describe('coalesce', () => {
  const ranges = (...pairs: [number, number][]) =>
    pairs.map(([offset, length], index) => ({ index, offset, length }))

  it('merges touching ranges and keeps apart the rest', () => {
    const spans = coalesce(ranges([0, 10], [10, 5], [30, 5]), 1 << 20, 0)
    assert.deepEqual(
      spans.map((s) => [s.start, s.end, s.members.length]),
      [
        [0, 15, 2],
        [30, 35, 1],
      ],
    )
  })

  it('bridges gaps up to the allowed size and never grows past the limit', () => {
    assert.equal(coalesce(ranges([0, 10], [20, 10]), 1 << 20, 10).length, 1)
    assert.equal(coalesce(ranges([0, 10], [21, 10]), 1 << 20, 10).length, 2)
    assert.equal(coalesce(ranges([0, 60], [60, 60]), 100, 0).length, 2)
  })

  it('sorts out-of-order input and keeps each caller index', () => {
    const spans = coalesce(ranges([50, 10], [0, 50]), 1 << 20, 0)
    assert.equal(spans.length, 1)
    assert.deepEqual(
      spans[0]?.members.map((m) => m.index),
      [1, 0],
    )
  })
})

describe('retryDelayMs', () => {
  it('grows exponentially with jitter inside [half, full] of the ceiling', () => {
    assert.equal(
      retryDelayMs(1, POLICY, undefined, () => 0),
      50,
    )
    assert.equal(
      retryDelayMs(1, POLICY, undefined, () => 1),
      100,
    )
    assert.equal(
      retryDelayMs(3, POLICY, undefined, () => 1),
      400,
    )
    assert.equal(
      retryDelayMs(10, POLICY, undefined, () => 1),
      1000,
    )
  })

  it('honours Retry-After in seconds or as a date, capped', () => {
    assert.equal(retryDelayMs(1, POLICY, '0.5'), 500)
    assert.equal(retryDelayMs(1, POLICY, '120'), 1000)
    const inAMoment = new Date(Date.now() + 60_000).toUTCString()
    assert.equal(retryDelayMs(1, POLICY, inAMoment), 1000)
  })
})

describe('redirectExpiryMs', () => {
  it('reads S3, CloudFront and Azure expiries', () => {
    const s3 =
      'https://b.s3.example/x?X-Amz-Date=20260102T030405Z&X-Amz-Expires=600&X-Amz-Signature=s'
    assert.equal(redirectExpiryMs(s3), Date.UTC(2026, 0, 2, 3, 4, 5) + 600_000)
    assert.equal(
      redirectExpiryMs('https://cdn.example/x?Expires=1700000000&Signature=s'),
      1_700_000_000_000,
    )
    assert.equal(
      redirectExpiryMs('https://a.blob.example/x?se=2026-01-02T03:04:05Z&sig=s'),
      Date.UTC(2026, 0, 2, 3, 4, 5),
    )
    assert.equal(redirectExpiryMs('https://cdn.example/x'), undefined)
  })
})

describe('parseContentRange', () => {
  it('parses complete and unknown-length ranges, refuses nonsense', () => {
    assert.deepEqual(parseContentRange('bytes 0-9/100'), { first: 0, last: 9, total: 100 })
    assert.deepEqual(parseContentRange('bytes 5-9/*'), { first: 5, last: 9 })
    assert.equal(parseContentRange('bytes 9-5/100'), undefined)
    assert.equal(parseContentRange('bytes */100'), undefined)
    assert.equal(parseContentRange(undefined), undefined)
  })
})
