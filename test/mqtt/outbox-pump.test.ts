import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { moduleLogger } from '../../src/log.js'
import { reconnectDelayMs } from '../../src/mqtt/backoff.js'
import { OutboxPump } from '../../src/mqtt/outbox-pump.js'
import type { OutboxItem, OutboxStore } from '../../src/mqtt/types.js'

/** An in-memory outbox with the store's contract (oldest first, remove by id). */
function memoryOutbox(count: number, payloadBytes = 10): OutboxStore & { rows: OutboxItem[] } {
  const rows: OutboxItem[] = Array.from({ length: count }, (_, i) => ({
    id: i + 1,
    kind: 'event',
    topic: 't',
    payload: 'x'.repeat(payloadBytes),
  }))
  return {
    rows,
    enqueueAsync: async () => ({ droppedTelemetry: 0, droppedOther: 0 }),
    peekAsync: async (n) => rows.slice(0, n),
    removeAsync: async (ids) => {
      for (const id of ids)
        rows.splice(
          rows.findIndex((r) => r.id === id),
          1,
        )
    },
    statsAsync: async () => ({
      messages: rows.length,
      bytes: 0,
      droppedTelemetry: 0,
      droppedOther: 0,
    }),
  }
}

describe('OutboxPump', () => {
  test('drains oldest first within the message rate', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] })
    const store = memoryOutbox(30)
    const sent: number[] = []
    const pump = new OutboxPump(store, async (row) => void sent.push(row.id), {
      publishPerSec: 10,
      publishBytesPerSec: 1 << 20,
      log: moduleLogger('test'),
    })
    pump.resume()
    for (let ms = 0; ms < 1000; ms += 10) {
      t.mock.timers.tick(10)
      await new Promise((resolve) => setImmediate(resolve))
    }
    // One per 100 ms: the first at once, then nine more within the first second.
    assert.ok(sent.length >= 9 && sent.length <= 11, `sent ${sent.length} in one second`)
    assert.deepEqual(
      sent,
      Array.from({ length: sent.length }, (_, i) => i + 1),
    )
    pump.pause()
  })

  test('drains within the byte rate when rows are large', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] })
    const store = memoryOutbox(30, 1000)
    let sentBytes = 0
    const count = async (row: OutboxItem): Promise<void> => {
      sentBytes += row.payload.length
    }
    const pump = new OutboxPump(store, count, {
      publishPerSec: 1000,
      publishBytesPerSec: 4000,
      log: moduleLogger('test'),
    })
    pump.resume()
    for (let ms = 0; ms < 2000; ms += 10) {
      t.mock.timers.tick(10)
      await new Promise((resolve) => setImmediate(resolve))
    }
    assert.ok(sentBytes <= 2 * 4000 + 1000, `sent ${sentBytes} bytes in two seconds`)
    assert.ok(sentBytes >= 2 * 4000 - 1000, `sent only ${sentBytes} bytes in two seconds`)
    pump.pause()
  })

  test('keeps a row whose publish failed and sends it again', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] })
    const store = memoryOutbox(1)
    let attempts = 0
    const pump = new OutboxPump(
      store,
      async () => {
        attempts += 1
        if (attempts === 1) throw new Error('client closed')
      },
      { publishPerSec: 100, log: moduleLogger('test') },
    )
    pump.resume()
    for (let ms = 0; ms < 3000; ms += 50) {
      t.mock.timers.tick(50)
      await new Promise((resolve) => setImmediate(resolve))
    }
    assert.equal(attempts, 2)
    assert.equal(store.rows.length, 0)
    pump.pause()
  })
})

describe('OutboxPump with a lost acknowledgement', () => {
  test('sends a row again when its PUBACK never comes', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] })
    const store = memoryOutbox(1)
    let attempts = 0
    const pump = new OutboxPump(
      store,
      (): Promise<void> => {
        attempts += 1
        return attempts === 1 ? new Promise(() => {}) : Promise.resolve()
      },
      { publishPerSec: 100, releaseAfterMs: 5000, log: moduleLogger('test') },
    )
    pump.resume()
    for (let ms = 0; ms < 6000; ms += 100) {
      t.mock.timers.tick(100)
      await new Promise((resolve) => setImmediate(resolve))
    }
    assert.equal(attempts, 2)
    assert.equal(store.rows.length, 0)
    pump.pause()
  })
})

describe('reconnectDelayMs', () => {
  test('doubles from the minimum up to the maximum with half of each step random', () => {
    const limits = { minMs: 1000, maxMs: 60_000 }
    assert.equal(
      reconnectDelayMs(0, limits, () => 0),
      500,
    )
    assert.equal(reconnectDelayMs(0, limits, () => 0.999999) < 1000, true)
    assert.equal(
      reconnectDelayMs(3, limits, () => 0),
      4000,
    )
    assert.equal(
      reconnectDelayMs(40, limits, () => 0),
      30_000,
    )
    assert.equal(
      reconnectDelayMs(40, limits, () => 0.5),
      45_000,
    )
  })

  test('spreads a fleet: 1000 devices at attempt 5 do not pick the same moment', () => {
    const delays = new Set(
      Array.from({ length: 1000 }, () =>
        Math.round(reconnectDelayMs(5, { minMs: 1000, maxMs: 60_000 })),
      ),
    )
    assert.ok(delays.size > 500)
  })
})
