import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt'

/** One message the observer saw. */
export interface Seen {
  topic: string
  body: unknown
  retain: boolean
  correlationData?: Buffer
}

/**
 * A fleet-side MQTT client for tests: subscribes to a topic filter with a persistent
 * session (so nothing published while it reconnects is missed), records every message,
 * and waits for the ones a test expects.
 */
export class Observer {
  readonly seen: Seen[] = []
  readonly client: MqttClient
  readonly #waiters = new Set<() => void>()

  private constructor(client: MqttClient) {
    this.client = client
    client.on('message', (topic, payload, packet) => {
      let body: unknown
      try {
        body = JSON.parse(payload.toString())
      } catch {
        body = payload.toString()
      }
      this.seen.push({
        topic,
        body,
        retain: packet.retain,
        correlationData: packet.properties?.correlationData,
      })
      for (const wake of this.#waiters) wake()
    })
  }

  /** Connects and subscribes (QoS 1) to `filter`. */
  static async connect(
    url: string,
    filter: string,
    options: IClientOptions = {},
  ): Promise<Observer> {
    const isV5 = (options.protocolVersion ?? 5) === 5
    const client = await mqtt.connectAsync(url, {
      clientId: `observer-${Math.random().toString(16).slice(2)}`,
      protocolVersion: 5,
      clean: false,
      ...(isV5 ? { properties: { sessionExpiryInterval: 600 } } : {}),
      reconnectPeriod: 200,
      ...options,
    })
    const observer = new Observer(client)
    await client.subscribeAsync(filter, { qos: 1 })
    return observer
  }

  /** Bodies seen on `topic`, in arrival order. */
  bodies(topic: string): Record<string, unknown>[] {
    return this.seen.filter((m) => m.topic === topic).map((m) => m.body as Record<string, unknown>)
  }

  /** Waits until `find` returns something from the messages seen; bounded (test fails). */
  async waitFor<T>(
    what: string,
    find: (seen: Seen[]) => T | undefined,
    timeoutMs = 20_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = find(this.seen)
      if (found !== undefined && found !== false) return found
      const leftMs = deadline - Date.now()
      if (leftMs <= 0) throw new Error(`timed out waiting for ${what}; saw ${this.#summary()}`)
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer)
          this.#waiters.delete(wake)
          resolve()
        }
        const timer = setTimeout(wake, Math.min(leftMs, 200))
        this.#waiters.add(wake)
      })
    }
  }

  /** Waits for the result of command `id` on `topic`. */
  async result(topic: string, id: string | null, nth = 1): Promise<Record<string, unknown>> {
    return this.waitFor(`result ${nth} of ${id}`, () => {
      const results = this.bodies(topic).filter((b) => b.id === id)
      return results[nth - 1]
    })
  }

  /** Publishes a command (object → JSON, string as is) with QoS 1. */
  async publish(topic: string, body: unknown, options: IClientPublishOptions = {}): Promise<void> {
    const payload = typeof body === 'string' ? body : JSON.stringify(body)
    await this.client.publishAsync(topic, payload, { qos: 1, ...options })
  }

  async close(): Promise<void> {
    await this.client.endAsync(true)
  }

  #summary(): string {
    return JSON.stringify(this.seen.slice(-10).map((m) => [m.topic, m.body]))
  }
}
