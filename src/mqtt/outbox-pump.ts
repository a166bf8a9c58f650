import type { Logger } from '../log.js'
import type { OutboxItem, OutboxStore } from './types.js'

/** Default drain rate in messages per second: a reconnect must not flood a thin link. */
export const DEFAULT_PUBLISH_PER_SEC = 20
/** Default drain rate in payload bytes per second. */
export const DEFAULT_PUBLISH_BYTES_PER_SEC = 64 * 1024

/** Messages handed to the MQTT client and not yet acknowledged, at most. */
const MAX_IN_FLIGHT = 10

/** Publishes one outbox row with QoS 1; resolves on PUBACK, rejects when it was not sent. */
export type PublishRow = (item: OutboxItem) => Promise<void>

/**
 * Drains the outbox to the broker while connected: oldest row first, at most
 * MAX_IN_FLIGHT unacknowledged, within a message rate and a byte rate, and removes a
 * row only after its PUBACK. A row in flight when the link drops stays in flight: the
 * MQTT client resends it on reconnect (persistent session), so it is never sent twice
 * by this pump. Delivery is at least once (a crash between PUBACK and removal repeats a
 * row); consumers drop repeats by `msgId`.
 */
export class OutboxPump {
  readonly #store: OutboxStore
  readonly #publish: PublishRow
  readonly #log: Logger
  readonly #perSec: number
  readonly #bytesPerSec: number
  readonly #releaseAfterMs: number
  readonly #inFlight = new Set<number>()
  #isRunning = false
  #timer: NodeJS.Timeout | undefined
  #nextSendAtMs = 0
  #isDraining = false
  #isDrainWanted = false

  constructor(
    store: OutboxStore,
    publish: PublishRow,
    options: {
      publishPerSec?: number
      publishBytesPerSec?: number
      /** Release a row whose PUBACK has not come after this long (default 60 000). */
      releaseAfterMs?: number
      log: Logger
    },
  ) {
    this.#store = store
    this.#publish = publish
    this.#log = options.log
    this.#perSec = options.publishPerSec ?? DEFAULT_PUBLISH_PER_SEC
    this.#bytesPerSec = options.publishBytesPerSec ?? DEFAULT_PUBLISH_BYTES_PER_SEC
    this.#releaseAfterMs = options.releaseAfterMs ?? 60_000
  }

  /** Starts (or continues) draining; call on connect and after each enqueue. */
  resume(): void {
    this.#isRunning = true
    this.#schedule(0)
  }

  /** Stops handing out new rows (the link is down); rows in flight stay in flight. */
  pause(): void {
    this.#isRunning = false
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** Rows handed to the client and not yet acknowledged. */
  get inFlightCount(): number {
    return this.#inFlight.size
  }

  #schedule(delayMs: number): void {
    if (!this.#isRunning || this.#timer !== undefined) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      void this.#drainOnce()
    }, delayMs)
    this.#timer.unref()
  }

  // One drain at a time: two overlapping reads of the outbox would both pick the row
  // not yet in flight and send it twice.
  async #drainOnce(): Promise<void> {
    if (this.#isDraining) {
      this.#isDrainWanted = true
      return
    }
    this.#isDraining = true
    try {
      await this.#drain()
    } finally {
      this.#isDraining = false
    }
    if (!this.#isDrainWanted) return
    this.#isDrainWanted = false
    this.#schedule(0)
  }

  async #drain(): Promise<void> {
    if (!this.#isRunning || this.#inFlight.size >= MAX_IN_FLIGHT) return

    const waitMs = this.#nextSendAtMs - Date.now()
    if (waitMs > 0) {
      this.#schedule(waitMs)
      return
    }

    let rows: OutboxItem[]
    try {
      rows = await this.#store.peekAsync(MAX_IN_FLIGHT * 2 + this.#inFlight.size)
    } catch (err) {
      this.#log.warn({ err }, 'outbox read failed')
      this.#schedule(1000)
      return
    }
    const row = rows.find((candidate) => !this.#inFlight.has(candidate.id))
    if (!this.#isRunning || row === undefined) return

    this.#send(row)
    this.#schedule(0)
  }

  #send(row: OutboxItem): void {
    // Token bucket of depth one: the next send waits for whichever budget is slower.
    const bytes = Buffer.byteLength(row.payload)
    const spacingMs = Math.max(1000 / this.#perSec, (bytes * 1000) / this.#bytesPerSec)
    this.#nextSendAtMs = Math.max(this.#nextSendAtMs, Date.now()) + spacingMs

    this.#inFlight.add(row.id)
    // NOTE: mqtt.js can drop a publish callback when a reconnect races its resend of
    // the session's unacknowledged packets; a row unanswered for this long is released
    // and sent again (at least once, never lost).
    const release = setTimeout(() => {
      if (!this.#inFlight.delete(row.id)) return
      this.#log.warn({ outboxId: row.id }, 'outbox publish unanswered, sending again')
      this.#schedule(0)
    }, this.#releaseAfterMs)
    release.unref()

    this.#publish(row).then(
      () => {
        clearTimeout(release)
        // The row stays in flight until its removal is durable: a drain in between would
        // read it back and send it again.
        void this.#store.removeAsync([row.id]).then(
          () => this.#delivered(row.id),
          (err: unknown) => {
            this.#log.warn({ err, outboxId: row.id }, 'outbox row not removed')
            this.#delivered(row.id)
          },
        )
      },
      (err: unknown) => {
        // Not sent (client closed): the row stays in the outbox for the next drain.
        clearTimeout(release)
        this.#inFlight.delete(row.id)
        this.#log.debug({ err, outboxId: row.id }, 'outbox publish failed')
        this.#schedule(1000)
      },
    )
  }

  #delivered(id: number): void {
    this.#inFlight.delete(id)
    this.#schedule(0)
  }
}
