/**
 * Delay before reconnect attempt `attempt` (0 for the first after a loss): an
 * exponential step from `minMs` doubling up to `maxMs`, of which half is fixed and half
 * random ("equal jitter"), so a fleet that lost its broker at the same moment spreads
 * its reconnects while no device retries faster than half the step. `random` is
 * injectable for tests and returns a number in [0, 1).
 */
export function reconnectDelayMs(
  attempt: number,
  options: { minMs: number; maxMs: number },
  random: () => number = Math.random,
): number {
  const stepMs = Math.min(options.maxMs, options.minMs * 2 ** Math.min(attempt, 30))
  return stepMs / 2 + random() * (stepMs / 2)
}
