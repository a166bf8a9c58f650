import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseByteSize, TokenBucket } from '../../src/fetch/index.js'

function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000
  return { now: () => t, advance: (ms) => (t += ms) }
}

describe('token bucket', () => {
  it('lets a burst through, then asks to wait for the refill', () => {
    const clock = fakeClock()
    const bucket = new TokenBucket(1000, clock.now, 2000)
    assert.equal(bucket.tryTake(2000), 0)
    assert.equal(bucket.tryTake(500), 500)
    clock.advance(499)
    assert.ok(bucket.tryTake(500) > 0)
    clock.advance(1)
    assert.equal(bucket.tryTake(500), 0)
  })

  it('never holds anything back at rate 0', () => {
    const bucket = new TokenBucket(0, fakeClock().now)
    for (let i = 0; i < 100; i++) assert.equal(bucket.tryTake(1 << 30), 0)
  })

  it('lets a unit larger than the burst through when full and makes the next one wait it off', () => {
    const clock = fakeClock()
    const bucket = new TokenBucket(1000, clock.now, 100)
    assert.equal(bucket.tryTake(5000), 0)
    const waitMs = bucket.tryTake(100)
    assert.ok(waitMs >= 5000, `waited ${waitMs} ms`)
  })

  it('holds the rate within 10% over every 10 s window of a simulated trickle', () => {
    for (const rate of [64 * 1024, 512 * 1024, 2 * 1024 * 1024]) {
      const clock = fakeClock()
      const bucket = new TokenBucket(rate, clock.now)
      const unitBytes = 96 * 1024
      const sent: { at: number; bytes: number }[] = []
      const start = clock.now()
      while (clock.now() - start < 60_000) {
        const waitMs = bucket.tryTake(unitBytes)
        if (waitMs === 0) sent.push({ at: clock.now(), bytes: unitBytes })
        else clock.advance(waitMs)
      }
      for (let from = start + 5000; from + 10_000 <= start + 60_000; from += 1000) {
        const bytes = sent
          .filter((s) => s.at >= from && s.at < from + 10_000)
          .reduce((a, s) => a + s.bytes, 0)
        const actual = bytes / 10
        assert.ok(
          Math.abs(actual - rate) / rate <= 0.1,
          `rate ${rate}: ${actual} B/s in window at ${from - start}`,
        )
      }
    }
  })

  it('changes its rate at run time', () => {
    const clock = fakeClock()
    const bucket = new TokenBucket(1000, clock.now, 1000)
    assert.equal(bucket.tryTake(1000), 0)
    bucket.setRate(0)
    assert.equal(bucket.tryTake(10_000), 0)
    bucket.setRate(100, 100)
    assert.ok(bucket.tryTake(100) > 0)
  })
})

describe('byte sizes', () => {
  it('reads the --bandwidth forms', () => {
    assert.equal(parseByteSize('512KiB'), 512 * 1024)
    assert.equal(parseByteSize('2MB'), 2_000_000)
    assert.equal(parseByteSize('1.5MiB/s'), 1.5 * 1024 * 1024)
    assert.equal(parseByteSize('0'), 0)
    assert.equal(parseByteSize(1234), 1234)
    assert.throws(() => parseByteSize('fast'), { code: 'EDGESTAR_CONFIG_BAD_SIZE' })
  })
})
