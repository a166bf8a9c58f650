/** A clock in milliseconds; tests pass a fake one. */
export type Clock = () => number

/**
 * The background bandwidth cap: a token bucket holding up to `burstBytes`, refilled at
 * `rateBytesPerSec`. A take larger than what is in the bucket is allowed once the bucket
 * is full or no longer in debt, and leaves it in debt, so a unit larger than the burst
 * still goes out and the average rate holds over any window longer than one unit.
 * Rate 0 means no cap. Pure arithmetic over an injected clock: no timers.
 */
export class TokenBucket {
  private tokens: number
  private lastRefillMs: number
  private rate: number
  private burst: number

  constructor(
    rateBytesPerSec: number,
    private readonly clock: Clock = Date.now,
    burstBytes?: number,
  ) {
    this.rate = rateBytesPerSec
    this.burst = burstBytes ?? defaultBurst(rateBytesPerSec)
    this.tokens = this.burst
    this.lastRefillMs = clock()
  }

  /** Most bytes the bucket holds: the largest request that goes out without waiting. */
  get burstBytes(): number {
    return this.burst
  }

  /** The cap in bytes per second (0 = none). */
  get rateBytesPerSec(): number {
    return this.rate
  }

  /** Changes the cap at run time; tokens already saved are kept up to the new burst. */
  setRate(rateBytesPerSec: number, burstBytes?: number): void {
    this.refill()
    this.rate = rateBytesPerSec
    this.burst = burstBytes ?? defaultBurst(rateBytesPerSec)
    this.tokens = Math.min(this.tokens, this.burst)
  }

  /**
   * Takes `bytes` if the bucket allows it now and returns 0; otherwise takes nothing and
   * returns how many ms to wait before asking again.
   */
  tryTake(bytes: number): number {
    if (this.rate <= 0) return 0
    this.refill()
    const needed = Math.min(bytes, this.burst)
    if (this.tokens >= needed) {
      this.tokens -= bytes
      return 0
    }
    return Math.max(1, Math.ceil(((needed - this.tokens) / this.rate) * 1000))
  }

  /** Gives back bytes taken for work that did not happen (a failed request). */
  refund(bytes: number): void {
    if (this.rate <= 0) return
    this.tokens = Math.min(this.burst, this.tokens + bytes)
  }

  private refill(): void {
    const now = this.clock()
    const elapsedMs = Math.max(0, now - this.lastRefillMs)
    this.lastRefillMs = now
    this.tokens = Math.min(this.burst, this.tokens + (elapsedMs * this.rate) / 1000)
  }
}

// A quarter second of traffic, at least 16 KiB: small enough that the 10 s window the
// design promises stays within 10% of the cap, big enough to avoid tiny requests.
function defaultBurst(rateBytesPerSec: number): number {
  return Math.max(16 * 1024, Math.floor(rateBytesPerSec / 4))
}
