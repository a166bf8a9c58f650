import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { type LinkChange, LinkMonitor } from '../../src/fetch/index.js'

// Slow: more than 100 ms plus 1 KiB/s, so 1 KiB in 2 s is slow and in 50 ms is not.
const THRESHOLDS = { latencyMs: 100, rateBytesPerSec: 1024 }

function monitor(sampleTtlMs = 60_000): {
  link: LinkMonitor
  changes: LinkChange[]
  clock: { ms: number }
} {
  const clock = { ms: 0 }
  const link = new LinkMonitor({ ...THRESHOLDS, sampleTtlMs }, () => clock.ms)
  const changes: LinkChange[] = []
  link.on('change', (change) => changes.push(change))
  return { link, changes, clock }
}

function answer(link: LinkMonitor, durationMs: number): void {
  link.observed(1024, durationMs)
  link.succeeded()
}

describe('link monitor', () => {
  it('calls a link degraded after three slow answers of four and online after fast ones', () => {
    const { link, changes } = monitor()
    answer(link, 2000)
    answer(link, 50)
    answer(link, 2000)
    assert.equal(link.state, 'online', 'two slow answers of three')
    answer(link, 2500)
    assert.equal(link.state, 'degraded')
    assert.equal(
      changes[0]!.reason,
      'slow link: 3 of the last 4 requests were slow (latest: 1024 bytes in 2500 ms)',
    )

    answer(link, 50)
    assert.equal(link.state, 'online', 'two slow answers of the last four')
    assert.deepEqual(
      changes.map((change) => change.state),
      ['degraded', 'online'],
    )
    link.close()
  })

  it('never calls a slow but answering link offline', () => {
    const { link } = monitor()
    for (let i = 0; i < 20; i++) answer(link, 60_000)
    assert.equal(link.state, 'degraded')
    link.close()
  })

  it('forgets timings older than their lifetime', () => {
    const { link, clock } = monitor(1000)
    for (let i = 0; i < 3; i++) answer(link, 2000)
    assert.equal(link.state, 'degraded')
    clock.ms += 1500
    link.observed(1024, 50)
    link.succeeded()
    assert.equal(link.state, 'online')
    link.close()
  })

  it('judges an idle degraded link again once its timings expire', async () => {
    const link = new LinkMonitor({ ...THRESHOLDS, sampleTtlMs: 200 })
    for (let i = 0; i < 3; i++) answer(link, 2000)
    assert.equal(link.state, 'degraded')
    // The monitor's own timer does not keep a process alive; this test has to.
    const keepAlive = setTimeout(() => {}, 10_000)
    const back = new Promise<LinkChange>((resolve) => link.once('change', resolve))
    assert.equal((await back).state, 'online')
    clearTimeout(keepAlive)
    link.close()
  })

  it('drops timings from before an outage', () => {
    const { link } = monitor()
    for (let i = 0; i < 3; i++) answer(link, 2000)
    link.failed('refused', true)
    assert.equal(link.state, 'offline')
    link.succeeded()
    assert.equal(link.state, 'online', 'the probe that finds the registry back is enough')
    link.close()
  })
})
