/**
 * A byte rate averaged over a sliding window, from samples of a growing byte counter.
 * Chunk fetches arrive in bursts (a 4 MiB range every few seconds on a slow link), so a
 * one-second difference swings between zero and several times the link's rate; over
 * ten seconds it reads as what the link delivers.
 */
export class RateWindow {
  readonly windowMs: number
  private readonly samples: Array<{ atMs: number; totalBytes: number }> = []

  /** `windowMs`: how far back the average reaches. */
  constructor(windowMs: number) {
    this.windowMs = windowMs
  }

  /** Records the counter's value `totalBytes` at time `atMs` (monotonic milliseconds). */
  add(totalBytes: number, atMs: number): void {
    this.samples.push({ atMs, totalBytes })
    // Keep one sample at or before the window's start, so the average spans all of it.
    while (this.samples.length > 2 && (this.samples[1]?.atMs ?? 0) <= atMs - this.windowMs)
      this.samples.shift()
  }

  /**
   * Bytes per second between the oldest kept sample and the newest, rounded; 0 before
   * two samples exist. Shorter than the window while the agent has just started.
   */
  rateBytesPerSec(): number {
    const first = this.samples[0]
    const last = this.samples[this.samples.length - 1]
    if (first === undefined || last === undefined || last.atMs <= first.atMs) return 0
    const bytes = Math.max(0, last.totalBytes - first.totalBytes)
    return Math.round((bytes * 1000) / (last.atMs - first.atMs))
  }
}
