/**
 * A duration for people: `500 ms` below a second, `16 s` or `2.5 s` below two minutes,
 * `5 min` or `7.5 min` above. `ms` is in milliseconds.
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 120_000) return `${trimmed(ms / 1000)} s`
  return `${trimmed(ms / 60_000)} min`
}

/**
 * What a stop that needed SIGKILL tells the operator (stop, rm, shutdown and status
 * show it): the program did not exit on SIGTERM within `timeoutMs`.
 */
export function sigkillNote(timeoutMs: number): string {
  return (
    `did not exit on SIGTERM within ${formatDuration(timeoutMs)}, so it was killed; ` +
    'deploy with --init, or handle SIGTERM in the program, to stop it at once'
  )
}

// One decimal at most, none when it is whole.
function trimmed(value: number): string {
  return String(Math.round(value * 10) / 10)
}
