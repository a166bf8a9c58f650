import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { type PacedReadOptions, readPaced, TokenBucket, takeTokens } from '../../src/fetch/index.js'
import type { ByteRange } from '../../src/registry/index.js'

/** Simulated time: sleeps resolve in time order when `runUntil` moves the clock. */
class FakeTime {
  now = 0
  private timers: { at: number; seq: number; wake: () => void }[] = []
  private seq = 0

  sleep = (ms: number): Promise<void> =>
    new Promise((wake) => {
      this.timers.push({ at: this.now + ms, seq: this.seq++, wake })
    })

  /** Runs every sleeper due before `endMs`, letting promise chains settle in between. */
  async runUntil(endMs: number): Promise<void> {
    for (;;) {
      await settle()
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq)
      const next = this.timers[0]
      if (next === undefined || next.at >= endMs) break
      this.timers.shift()
      this.now = Math.max(this.now, next.at)
      next.wake()
    }
    this.now = endMs
  }

  /** Wakes every sleeper left, until none sleeps (callers stop once they see the end). */
  async drain(): Promise<void> {
    while (this.timers.length > 0) await this.runUntil(this.now + 1000)
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve))
}

const KIB = 1024

describe('paced background reads', () => {
  it('counts bytes within 10% of the cap in every 10 s window while large units share it', async () => {
    // The bench case that read 18% low: 256 KiB/s, several large units paced side by side
    // by three background slots. Counted per piece as it arrives, the rate holds.
    for (const rate of [256 * KIB, 1024 * KIB]) {
      const time = new FakeTime()
      const bucket = new TokenBucket(rate, () => time.now)
      const arrivals: { at: number; bytes: number }[] = []
      const reader = {
        readRanges: async (ranges: readonly ByteRange[]): Promise<Buffer[]> => {
          await time.sleep(3) // a loopback round trip
          return ranges.map((r) => Buffer.alloc(r.length))
        },
      }
      const options: PacedReadOptions = {
        bucket,
        pieceBytes: () => bucket.burstBytes,
        sleep: time.sleep,
        isClosed: () => time.now >= 60_000,
        onBytes: (bytes) => arrivals.push({ at: time.now, bytes }),
      }
      // Large units (as under usr/) mixed with small ones, fetched by three slots that
      // each pay for a unit's first piece before asking (as the scheduler's dispatcher).
      const sizes = Array.from({ length: 400 }, (_, i) => (i % 3 === 0 ? 900 : 40) * KIB)
      const slot = async (): Promise<void> => {
        for (let size = sizes.shift(); size !== undefined; size = sizes.shift()) {
          await takeTokens(Math.min(size, bucket.burstBytes), options)
          if (size > bucket.burstBytes) await readPaced(reader, 0, size, options)
          else {
            const [data] = await reader.readRanges([{ offset: 0, length: size }])
            options.onBytes(data!.length)
          }
        }
      }
      const slots = [slot(), slot(), slot()].map((p) => p.catch(() => {}))
      await time.runUntil(60_000)
      await time.drain()
      await Promise.all(slots)

      for (let from = 3000; from + 10_000 <= 33_000; from += 1000) {
        const bytes = arrivals
          .filter((a) => a.at >= from && a.at < from + 10_000)
          .reduce((sum, a) => sum + a.bytes, 0)
        const actual = bytes / 10
        assert.ok(
          Math.abs(actual - rate) / rate <= 0.1,
          `rate ${rate}: ${actual.toFixed(0)} B/s in the window from ${from} ms`,
        )
      }
    }
  })

  it('asks for no piece larger than the bucket and returns the unit whole', async () => {
    const time = new FakeTime()
    const bucket = new TokenBucket(64 * KIB, () => time.now, 16 * KIB)
    const blob = Buffer.from(Array.from({ length: 100 * KIB }, (_, i) => i % 251))
    const asked: number[] = []
    const reader = {
      readRanges: async (ranges: readonly ByteRange[]): Promise<Buffer[]> => {
        asked.push(...ranges.map((r) => r.length))
        return ranges.map((r) => blob.subarray(r.offset, r.offset + r.length))
      },
    }
    bucket.tryTake(16 * KIB)
    const reading = readPaced(reader, 10, 90 * KIB, {
      bucket,
      pieceBytes: () => bucket.burstBytes,
      sleep: time.sleep,
      isClosed: () => false,
      onBytes: () => {},
    })
    await time.runUntil(10_000)
    const data = await reading
    assert.deepEqual(data, blob.subarray(10, 10 + 90 * KIB))
    assert.ok(Math.max(...asked) <= 16 * KIB)
  })
})
