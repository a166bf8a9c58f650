import type { OutboxKind, OutboxStats, OutboxStore } from './types.js'

/** Messages the outbox bounds dropped during one enqueue. */
export interface OutboxLoss {
  droppedTelemetry: number
  droppedEvents: number
}

/** How often at most a loss is reported while it keeps happening. */
export const LOSS_REPORT_INTERVAL_MS = 10_000

/**
 * Writes to the durable outbox and notices when its bounds drop messages (the store
 * drops the oldest telemetry first, events only when no telemetry is left, and counts
 * both). Losses add up and are handed to `onLoss` at most every LOSS_REPORT_INTERVAL_MS
 * (and on `flushLoss`), so the report itself, which goes through the outbox and may
 * push out another message, cannot set off a cascade of reports.
 */
export class OutboxWriter {
  readonly #store: OutboxStore
  readonly #onLoss: (loss: OutboxLoss) => void
  readonly #unreported: OutboxLoss = { droppedTelemetry: 0, droppedEvents: 0 }
  #lastReportAtMs = Number.NEGATIVE_INFINITY
  #isReporting = false

  constructor(
    store: OutboxStore,
    limits: { maxCount?: number; maxBytes?: number },
    onLoss: (loss: OutboxLoss) => void,
  ) {
    this.#store = store
    this.#onLoss = onLoss
    if (store.limits !== undefined) {
      if (limits.maxCount !== undefined) store.limits.maxMessages = limits.maxCount
      if (limits.maxBytes !== undefined) store.limits.maxBytes = limits.maxBytes
    }
  }

  /**
   * Appends a message; resolves once it is durable (calls resolve in the order they were
   * made) and reports what the bounds dropped to make room. Rejects as the store does.
   */
  async enqueue(kind: OutboxKind, topic: string, payload: string): Promise<void> {
    const dropped = await this.#store.enqueueAsync(kind, topic, payload)
    this.#unreported.droppedTelemetry += dropped.droppedTelemetry
    this.#unreported.droppedEvents += dropped.droppedOther
    if (Date.now() - this.#lastReportAtMs >= LOSS_REPORT_INTERVAL_MS) this.flushLoss()
  }

  /** Reports the losses not reported yet, if any (call on reconnect). */
  flushLoss(): void {
    const loss = { ...this.#unreported }
    if (this.#isReporting || loss.droppedTelemetry + loss.droppedEvents === 0) return
    this.#unreported.droppedTelemetry = 0
    this.#unreported.droppedEvents = 0
    this.#lastReportAtMs = Date.now()
    this.#isReporting = true
    try {
      this.#onLoss(loss)
    } finally {
      this.#isReporting = false
    }
  }

  /** The store's figures. */
  stats(): Promise<OutboxStats> {
    return this.#store.statsAsync()
  }
}
