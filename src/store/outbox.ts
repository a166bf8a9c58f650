import type { Database } from 'better-sqlite3'
import type { IndexWorker } from './index-worker.js'

/** Kinds of outbox messages; `telemetry` is dropped first when the outbox is full. */
export type OutboxKind = 'telemetry' | 'event' | (string & {})

/** One queued message. */
export interface OutboxMessage {
  id: number
  kind: OutboxKind
  topic: string
  /** The payload as enqueued (strings as they are; anything else as JSON text). */
  payload: string
  at: number
}

/** Bounds of the outbox. */
export interface OutboxLimits {
  /** Messages kept at most. Default 10 000. */
  maxMessages: number
  /** Payload bytes kept at most. Default 16 MiB. */
  maxBytes: number
}

/** Outbox size and what was lost to its bounds since the store was created. */
export interface OutboxStats {
  messages: number
  bytes: number
  oldestAt: number | null
  droppedTelemetry: number
  droppedOther: number
  limits: OutboxLimits
}

/** What one enqueue did: the new row's id and what the bounds dropped to make room. */
export interface OutboxEnqueued {
  id: number
  droppedTelemetry: number
  droppedOther: number
}

/** The store's threads (`IndexWorker`), which run the `...Async` methods. */
export interface StoreThreads {
  writer: IndexWorker
  reader: IndexWorker
}

const DEFAULT_LIMITS: OutboxLimits = { maxMessages: 10_000, maxBytes: 16 * 1024 * 1024 }

/**
 * Store-and-forward queue for MQTT while the broker is unreachable. Bounded by count and
 * bytes: when full, the oldest telemetry goes first (a newer sample supersedes it), other
 * kinds (events, acknowledgements) only when no telemetry is left; every loss is counted.
 * Enqueue is durable so an acknowledged event survives a power cut. The `...Async`
 * methods do the same in the store's threads, off the event loop (for the agent, which
 * serves FUSE on it); the others run on the calling thread (CLI, tests).
 */
export class Outbox {
  limits: OutboxLimits

  constructor(
    private readonly db: Database,
    private readonly durably: <T>(fn: () => T) => T,
    limits: Partial<OutboxLimits> = {},
    private readonly threads?: StoreThreads,
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits }
  }

  /** Queues a message; returns its id. Drops older messages to stay within the limits. */
  enqueue(kind: OutboxKind, topic: string, payload: unknown): number {
    return this.enqueueCounted(kind, topic, payload).id
  }

  /** `enqueue` that also says what the bounds dropped (the writer thread runs this one). */
  enqueueCounted(kind: OutboxKind, topic: string, payload: unknown): OutboxEnqueued {
    const text = typeof payload === 'string' ? payload : JSON.stringify(payload)
    const size = Buffer.byteLength(text) + Buffer.byteLength(topic)
    return this.durably(() => {
      const id = Number(
        this.db
          .prepare(
            'INSERT INTO outbox (kind, topic, payload, size_bytes, at) VALUES (?, ?, ?, ?, ?)',
          )
          .run(kind, topic, text, size, Date.now()).lastInsertRowid,
      )
      return { id, ...this.enforceLimits(id) }
    })
  }

  /**
   * `enqueueCounted`, committed durably by the writer thread with the current `limits`:
   * once this resolves the row survives a power cut. Rejects with
   * EDGESTAR_STORE_QUERY_FAILED or EDGESTAR_STORE_CLOSED.
   */
  enqueueAsync(kind: OutboxKind, topic: string, payload: unknown): Promise<OutboxEnqueued> {
    const text = typeof payload === 'string' ? payload : JSON.stringify(payload)
    return this.requireThreads().writer.call('outboxEnqueue', [kind, topic, text, this.limits])
  }

  /**
   * `peek` in the writer thread, behind every enqueue and removal sent before it: a row
   * whose removal resolved before this answers is never in it. (The reader thread could
   * answer with a snapshot taken before a removal that resolved first, and a drain would
   * send that row again.)
   */
  peekAsync(n: number): Promise<OutboxMessage[]> {
    return this.requireThreads().writer.call('outboxPeek', [n])
  }

  /** `remove`, committed durably by the writer thread. */
  removeAsync(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return Promise.resolve()
    return this.requireThreads().writer.call('outboxRemove', [ids])
  }

  /** `stats` in the reader thread. */
  async statsAsync(): Promise<OutboxStats> {
    const stats = await this.requireThreads().reader.call<OutboxStats>('outboxStats', [])
    return { ...stats, limits: { ...this.limits } }
  }

  /** The oldest `n` messages, oldest first (they stay queued until `remove`). */
  peek(n: number): OutboxMessage[] {
    return this.db
      .prepare('SELECT id, kind, topic, payload, at FROM outbox ORDER BY id LIMIT ?')
      .all(n) as OutboxMessage[]
  }

  /** Removes delivered messages. */
  remove(ids: readonly number[]): void {
    if (ids.length === 0) return
    this.durably(() => {
      const remove = this.db.prepare('DELETE FROM outbox WHERE id = ?')
      for (const id of ids) remove.run(id)
    })
  }

  /** Size and losses. */
  stats(): OutboxStats {
    const row = this.db
      .prepare(
        'SELECT count(*) AS messages, coalesce(sum(size_bytes), 0) AS bytes, min(at) AS oldestAt FROM outbox',
      )
      .get() as { messages: number; bytes: number; oldestAt: number | null }
    return {
      ...row,
      droppedTelemetry: this.counter('outbox.dropped.telemetry'),
      droppedOther: this.counter('outbox.dropped.other'),
      limits: { ...this.limits },
    }
  }

  private requireThreads(): StoreThreads {
    if (this.threads === undefined) throw new Error('this outbox has no store threads')
    return this.threads
  }

  private enforceLimits(newestId: number): { droppedTelemetry: number; droppedOther: number } {
    let { messages, bytes } = this.db
      .prepare('SELECT count(*) AS messages, coalesce(sum(size_bytes), 0) AS bytes FROM outbox')
      .get() as { messages: number; bytes: number }
    if (messages <= this.limits.maxMessages && bytes <= this.limits.maxBytes)
      return { droppedTelemetry: 0, droppedOther: 0 }

    const victims = this.db
      .prepare(
        `SELECT id, kind, size_bytes AS size FROM outbox
         ORDER BY CASE kind WHEN 'telemetry' THEN 0 ELSE 1 END, id`,
      )
      .all() as { id: number; kind: string; size: number }[]
    const remove = this.db.prepare('DELETE FROM outbox WHERE id = ?')
    let droppedTelemetry = 0
    let droppedOther = 0
    for (const victim of victims) {
      if (messages <= this.limits.maxMessages && bytes <= this.limits.maxBytes) break
      // Never drop the message just enqueued: the caller holds its id.
      if (victim.id === newestId) continue
      remove.run(victim.id)
      messages--
      bytes -= victim.size
      if (victim.kind === 'telemetry') droppedTelemetry++
      else droppedOther++
    }
    this.addCounter('outbox.dropped.telemetry', droppedTelemetry)
    this.addCounter('outbox.dropped.other', droppedOther)
    return { droppedTelemetry, droppedOther }
  }

  private counter(name: string): number {
    const value = this.db.prepare('SELECT value FROM counters WHERE name = ?').pluck().get(name) as
      | number
      | undefined
    return value ?? 0
  }

  private addCounter(name: string, delta: number): void {
    if (delta === 0) return
    this.db
      .prepare(
        'INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value',
      )
      .run(name, delta)
  }
}
