import type { Database } from 'better-sqlite3'
import type { StoreThreads } from './outbox.js'

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
 * `findAsync` and `recordAsync` do the same in the store's threads, off the event loop.
 */
export class CommandLog {
  constructor(
    private readonly db: Database,
    private readonly durably: <T>(fn: () => T) => T,
    private readonly threads?: StoreThreads,
  ) {}

  /** `find` in the reader thread: it sees every record whose `recordAsync` has resolved. */
  findAsync(id: string): Promise<CommandLogEntry | undefined> {
    return this.requireThreads().reader.call('commandFind', [id])
  }

  /**
   * `record`, committed durably by the writer thread: once this resolves, the command can
   * never run a second time. Rejects with EDGESTAR_STORE_QUERY_FAILED or
   * EDGESTAR_STORE_CLOSED.
   */
  recordAsync(id: string, result: unknown): Promise<void> {
    return this.requireThreads().writer.call('commandRecord', [id, result ?? null])
  }

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

  private requireThreads(): StoreThreads {
    if (this.threads === undefined) throw new Error('this command log has no store threads')
    return this.threads
  }

  /** Drops entries older than `maxAgeMs`, keeping the log bounded; returns how many. */
  prune(maxAgeMs: number): number {
    return this.db.prepare('DELETE FROM command_log WHERE at < ?').run(Date.now() - maxAgeMs)
      .changes
  }
}
