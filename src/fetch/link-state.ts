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
}

export const DEFAULT_SLOW_LINK: SlowLinkThresholds = {
  latencyMs: 2000,
  rateBytesPerSec: 16 * 1024,
}

/** Answered requests remembered to judge the link's speed. */
const RECENT_REQUESTS = 4
/** Of those, this many slow ones make an answering link `degraded`. */
const SLOW_TO_DEGRADE = 3

/**
 * Tracks the link from request outcomes: one failed request makes it `degraded`, a
 * second in a row (or a refused connection) `offline`. An answered request brings it back
 * `online`, unless most of the last few answered requests were slow (see
 * `SlowLinkThresholds`): then it stays or becomes `degraded`. The scheduler probes while
 * offline; nothing here keeps time, durations are measured by the caller.
 */
export class LinkMonitor extends EventEmitter<{ change: [LinkChange] }> {
  private current: LinkState = 'online'
  private failuresInRow = 0
  private readonly thresholds: SlowLinkThresholds
  private readonly recentSlow: boolean[] = []
  private slowest = { bytes: 0, durationMs: 0 }

  constructor(thresholds: SlowLinkThresholds = DEFAULT_SLOW_LINK) {
    super()
    this.thresholds = thresholds
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
    this.recentSlow.push(isSlow)
    if (this.recentSlow.length > RECENT_REQUESTS) this.recentSlow.shift()
    if (isSlow) this.slowest = { bytes, durationMs }
  }

  /** Records a successful request (after `observed` for its timing, when known). */
  succeeded(): void {
    this.failuresInRow = 0
    const slowCount = this.recentSlow.filter(Boolean).length
    if (slowCount >= SLOW_TO_DEGRADE) {
      const { bytes, durationMs } = this.slowest
      this.set(
        'degraded',
        `slow link: ${slowCount} of the last ${this.recentSlow.length} requests were slow (${bytes} bytes in ${Math.round(durationMs)} ms)`,
      )
      return
    }
    this.set('online', 'request succeeded')
  }

  /** Records a failed request; `hard` when the registry could not be reached at all. */
  failed(reason: string, hard: boolean): void {
    this.failuresInRow++
    this.set(hard || this.failuresInRow >= 2 ? 'offline' : 'degraded', reason)
  }

  private set(state: LinkState, reason: string): void {
    if (state === this.current) return
    const previous = this.current
    this.current = state
    this.emit('change', { state, previous, reason })
  }
}
