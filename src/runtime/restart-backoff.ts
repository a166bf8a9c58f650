import type { RestartPolicy } from './types.js'

/** How long to wait before restarting a container that keeps exiting. */
export interface BackoffOptions {
  /** Delay before the first restart. */
  initialMs: number
  /** Upper bound of the doubling delay. */
  maxMs: number
  /** A run at least this long counts as healthy and resets the doubling. */
  resetAfterMs: number
}

/** 1 s doubling to 60 s; 10 s of running resets it. */
export const DEFAULT_BACKOFF: BackoffOptions = {
  initialMs: 1000,
  maxMs: 60_000,
  resetAfterMs: 10_000,
}

/** True when `policy` restarts a container that exited with `exitCode` on its own. */
export function shouldRestart(policy: RestartPolicy, exitCode: number): boolean {
  if (policy === 'always') return true
  return policy === 'on-failure' && exitCode !== 0
}

/** The delay before restart number `attempt` (1-based) of a run of quick exits. */
export function restartDelayMs(attempt: number, options: BackoffOptions): number {
  const doubled = options.initialMs * 2 ** Math.max(0, attempt - 1)
  return Math.min(options.maxMs, doubled)
}
