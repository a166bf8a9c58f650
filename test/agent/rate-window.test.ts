import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RateWindow } from '../../src/agent/rate-window.js'

describe('RateWindow', () => {
  it('is 0 before two samples', () => {
    const window = new RateWindow(10_000)
    assert.equal(window.rateBytesPerSec(), 0)
    window.add(500, 0)
    assert.equal(window.rateBytesPerSec(), 0)
  })

  it('averages a bursty counter over the window instead of the last second', () => {
    const window = new RateWindow(10_000)
    // One 4 MiB range every 4 s, sampled each second: the last second saw nothing.
    let total = 0
    for (let second = 0; second <= 12; second++) {
      if (second % 4 === 1) total += 4 * 1024 * 1024
      window.add(total, second * 1000)
    }
    // Within the last 10 s (from 2 s to 12 s): the bursts at 5 and 9 s.
    assert.equal(window.rateBytesPerSec(), Math.round((8 * 1024 * 1024) / 10))
  })

  it('averages over the time so far while the window is not yet full', () => {
    const window = new RateWindow(10_000)
    window.add(0, 0)
    window.add(3000, 1000)
    window.add(6000, 3000)
    assert.equal(window.rateBytesPerSec(), 2000)
  })

  it('forgets samples older than the window', () => {
    const window = new RateWindow(10_000)
    window.add(0, 0)
    window.add(1_000_000, 1000)
    for (let second = 2; second <= 20; second++) window.add(1_000_000, second * 1000)
    assert.equal(window.rateBytesPerSec(), 0)
  })
})
