import type { Database } from 'better-sqlite3'

/** An executed command and the result that was acknowledged for it. */
export interface CommandLogEntry {
  id: string
  result: unknown
  at: number
}

/**
 * Ids of commands already executed, with their results, so a command delivered twice
 * (MQTT QoS 1 redelivery, a retry after a power cut) is answered without running again.
 * `record` is durable: once it returns, the command can never run a second time.
 */
export class CommandLog {
  constructor(
    private readonly db: Database,
    private readonly durably: <T>(fn: () => T) => T,
  ) {}

  /** The recorded entry for command `id`, or undefined when it never ran. */
  find(id: string): CommandLogEntry | undefined {
    const row = this.db.prepare('SELECT * FROM command_log WHERE id = ?').get(id) as
      | { id: string; result_json: string; at: number }
      | undefined
    return row === undefined
      ? undefined
      : { id: row.id, result: JSON.parse(row.result_json) as unknown, at: row.at }
  }

  /** Records that command `id` ran with `result` (JSON-serialisable); first record wins. */
  record(id: string, result: unknown): void {
    this.durably(() =>
      this.db
        .prepare('INSERT OR IGNORE INTO command_log (id, result_json, at) VALUES (?, ?, ?)')
        .run(id, JSON.stringify(result ?? null), Date.now()),
    )
  }

  /** Drops entries older than `maxAgeMs`, keeping the log bounded; returns how many. */
  prune(maxAgeMs: number): number {
    return this.db.prepare('DELETE FROM command_log WHERE at < ?').run(Date.now() - maxAgeMs)
      .changes
  }
}
