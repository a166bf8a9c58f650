import { EventEmitter } from 'node:events'

/** The scheduler's view of the link to the registry. */
export type LinkState = 'online' | 'degraded' | 'offline'

/** Emitted as `change` with the new and the previous state. */
export interface LinkChange {
  state: LinkState
  previous: LinkState
  reason: string
}

/**
 * When an answered request counts as slow: it took longer than `latencyMs` plus its bytes
 * at `rateBytesPerSec`. The defaults (2 s, 16 KiB/s) leave a healthy LTE or satellite link
 * online and call degraded what a user would: seconds per small read.
 */
export interface SlowLinkThresholds {
  latencyMs: number
  rateBytesPerSec: number
  /**
   * How long a request's timing counts. Once the fetch is idle (the image complete) no new
   * timing comes, and a link called slow must not stay `degraded` for good. Default 60 s.
   */
  sampleTtlMs?: number
}

export const DEFAULT_SLOW_LINK: SlowLinkThresholds = {
  latencyMs: 2000,
  rateBytesPerSec: 16 * 1024,
  sampleTtlMs: 60_000,
}

/** Answered requests remembered to judge the link's speed. */
const RECENT_REQUESTS = 4

/** Of those, this many slow ones make an answering link `degraded`. */
const SLOW_TO_DEGRADE = 3

interface Sample {
  isSlow: boolean
  bytes: number
  durationMs: number
  atMs: number
}

/**
 * Tracks the link from request outcomes: one failed request makes it `degraded`, a
 * second in a row (or a refused connection) `offline`. An answered request brings it back
 * `online`, unless most of the last few answered requests were slow (see
 * `SlowLinkThresholds`): then it stays or becomes `degraded`. Timings older than a minute,
 * or from before an outage, no longer count; a link called slow is judged again when its
 * timings expire. The scheduler probes while offline; durations are measured by the caller.
 */
export class LinkMonitor extends EventEmitter<{ change: [LinkChange] }> {
  private current: LinkState = 'online'
  private failuresInRow = 0
  private readonly thresholds: SlowLinkThresholds
  private readonly sampleTtlMs: number
  private readonly now: () => number
  private samples: Sample[] = []
  private expiryTimer: NodeJS.Timeout | undefined

  constructor(thresholds: SlowLinkThresholds = DEFAULT_SLOW_LINK, now: () => number = Date.now) {
    super()
    this.thresholds = thresholds
    this.sampleTtlMs = thresholds.sampleTtlMs ?? 60_000
    this.now = now
  }

  get state(): LinkState {
    return this.current
  }

  /**
   * Records how long an answered request for `bytes` bytes took on the wire (request sent
   * to last byte; time spent waiting for the bandwidth cap excluded).
   */
  observed(bytes: number, durationMs: number): void {
    const { latencyMs, rateBytesPerSec } = this.thresholds
    const isSlow = durationMs > latencyMs + (bytes * 1000) / rateBytesPerSec
    this.samples.push({ isSlow, bytes, durationMs, atMs: this.now() })
    if (this.samples.length > RECENT_REQUESTS) this.samples.shift()
  }

  /** Records a successful request (after `observed` for its timing, when known). */
  succeeded(): void {
    this.failuresInRow = 0
    this.judgeSpeed()
  }

  /** Records a failed request; `hard` when the registry could not be reached at all. */
  failed(reason: string, hard: boolean): void {
    this.failuresInRow++
    const state = hard || this.failuresInRow >= 2 ? 'offline' : 'degraded'
    // Timings from before an outage say nothing about the link that comes back.
    if (state === 'offline') this.samples = []
    this.set(state, reason)
  }

  /** Stops the expiry timer (the scheduler is closing). */
  close(): void {
    clearTimeout(this.expiryTimer)
    this.expiryTimer = undefined
  }

  private judgeSpeed(): void {
    const nowMs = this.now()
    this.samples = this.samples.filter((sample) => nowMs - sample.atMs < this.sampleTtlMs)
    const slow = this.samples.filter((sample) => sample.isSlow)
    if (slow.length < SLOW_TO_DEGRADE) {
      this.set('online', 'request succeeded')
      return
    }

    const latest = slow[slow.length - 1]!
    this.set(
      'degraded',
      `slow link: ${slow.length} of the last ${this.samples.length} requests were slow ` +
        `(latest: ${latest.bytes} bytes in ${Math.round(latest.durationMs)} ms)`,
    )
    this.judgeAgainWhenSamplesExpire(slow[0]!.atMs + this.sampleTtlMs - nowMs)
  }

  private judgeAgainWhenSamplesExpire(delayMs: number): void {
    clearTimeout(this.expiryTimer)
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined
      if (this.current === 'degraded' && this.failuresInRow === 0) this.judgeSpeed()
    }, delayMs + 1)
    this.expiryTimer.unref()
  }

  private set(state: LinkState, reason: string): void {
    if (state === this.current) return
    const previous = this.current
    this.current = state
    this.emit('change', { state, previous, reason })
  }
}
