import type { OutboxKind, OutboxStats, OutboxStore } from './types.js'

/** Messages the outbox bounds dropped during one enqueue. */
export interface OutboxLoss {
  droppedTelemetry: number
  droppedEvents: number
}

/**
 * Writes to the durable outbox and notices when its bounds drop messages (the store
 * drops the oldest telemetry first, events only when no telemetry is left, and counts
 * both), so the loss can be reported as an `outbox-loss` event.
 */
export class OutboxWriter {
  readonly #store: OutboxStore
  readonly #onLoss: (loss: OutboxLoss) => void

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

  /** Appends a message durably; reports what the bounds dropped to make room. */
  enqueue(kind: OutboxKind, topic: string, payload: string): void {
    const before = this.#store.stats()
    this.#store.enqueue(kind, topic, payload)
    const after = this.#store.stats()
    const loss = {
      droppedTelemetry: after.droppedTelemetry - before.droppedTelemetry,
      droppedEvents: after.droppedOther - before.droppedOther,
    }
    if (loss.droppedTelemetry + loss.droppedEvents > 0) this.#onLoss(loss)
  }

  /** The store's figures. */
  stats(): OutboxStats {
    return this.#store.stats()
  }
}
