import type { Database } from 'better-sqlite3'

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

const DEFAULT_LIMITS: OutboxLimits = { maxMessages: 10_000, maxBytes: 16 * 1024 * 1024 }

/**
 * Store-and-forward queue for MQTT while the broker is unreachable. Bounded by count and
 * bytes: when full, the oldest telemetry goes first (a newer sample supersedes it), other
 * kinds (events, acknowledgements) only when no telemetry is left; every loss is counted.
 * Enqueue is durable so an acknowledged event survives a power cut.
 */
export class Outbox {
  limits: OutboxLimits

  constructor(
    private readonly db: Database,
    private readonly durably: <T>(fn: () => T) => T,
    limits: Partial<OutboxLimits> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits }
  }

  /** Queues a message; returns its id. Drops older messages to stay within the limits. */
  enqueue(kind: OutboxKind, topic: string, payload: unknown): number {
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
      this.enforceLimits(id)
      return id
    })
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

  private enforceLimits(newestId: number): void {
    let { messages, bytes } = this.db
      .prepare('SELECT count(*) AS messages, coalesce(sum(size_bytes), 0) AS bytes FROM outbox')
      .get() as { messages: number; bytes: number }
    if (messages <= this.limits.maxMessages && bytes <= this.limits.maxBytes) return

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
