import Database from 'better-sqlite3'

/** The SQL this thread ran while recording, and the switch that stops it. */
export interface StatementLog {
  seen: string[]
  restore: () => void
}

/**
 * Records the SQL of every better-sqlite3 statement run on this thread, on any connection
 * (every `run`, `get`, `all` and `iterate`; transactions and pragmas pass through them
 * too), until `restore`. The store's threads load their own copy of the module and are
 * not seen: what this catches is SQLite on the event loop.
 */
export function recordMainThreadSql(): StatementLog {
  const probe = new Database(':memory:')
  const proto = Object.getPrototypeOf(probe.prepare('SELECT 1')) as Record<string, unknown>
  probe.close()
  const seen: string[] = []
  const originals = ['run', 'get', 'all', 'iterate'].map(
    (method) => [method, proto[method] as (...args: unknown[]) => unknown] as const,
  )
  for (const [method, original] of originals)
    proto[method] = function (this: { source: string }, ...args: unknown[]) {
      seen.push(this.source)
      return original.apply(this, args)
    }
  return {
    seen,
    restore: () => {
      for (const [method, original] of originals) proto[method] = original
    },
  }
}
