import { createPublicKey, type KeyObject, randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import mqtt, {
  type IClientOptions,
  type IConnackPacket,
  type IPublishPacket,
  type MqttClient,
} from 'mqtt'
import { EdgestarError, redactUrl } from '../errors.js'
import { type Logger, moduleLogger } from '../log.js'
import { reconnectDelayMs } from './backoff.js'
import { CommandHandler, type Refusal, type ResultRoute } from './command-handler.js'
import { sampleDeviceMetrics } from './device-metrics.js'
import { defaultDeviceId } from './machine-id.js'
import type { MqttBridgeOptions } from './options.js'
import { OutboxPump } from './outbox-pump.js'
import { type OutboxLoss, OutboxWriter } from './outbox-writer.js'
import { packageVersion } from './package-version.js'
import { type MessageKind, type MessageSchemas, messageSchemas } from './schemas.js'
import { loadFleetPublicKey } from './signing.js'
import { readTlsFiles } from './tls-files.js'
import { DEFAULT_TOPIC_PREFIX, type DeviceTopics, deviceTopics } from './topics.js'
import type {
  BridgeStore,
  CommandResult,
  DeviceController,
  DeviceEvent,
  OutboxItem,
} from './types.js'

/** Connection state of the bridge as `state` reports it. */
export type BridgeState = 'idle' | 'connecting' | 'online' | 'offline' | 'stopped'

/** Events the bridge emits (for the agent's logs and for tests). */
export interface MqttBridgeEvents {
  state: [BridgeState]
  /** A result was handed to the MQTT client. */
  result: [CommandResult]
}

const DEFAULT_KEEPALIVE_SEC = 30
const DEFAULT_TELEMETRY_INTERVAL_MS = 60_000
const DEFAULT_SESSION_EXPIRY_SEC = 24 * 60 * 60
const DEFAULT_RECONNECT_MIN_MS = 1000
const DEFAULT_RECONNECT_MAX_MS = 60_000
const STOP_TIMEOUT_MS = 3000

/**
 * The device side of the fleet link: subscribes to the device's and its groups' command
 * topics, runs commands on the controller (once per id), publishes results, the retained
 * status (with a last will), periodic telemetry and events. Events and telemetry always
 * pass through the durable outbox, so they survive a dead broker and a restart, and are
 * drained in order at a bounded rate. Nothing the agent does waits on the broker.
 */
export class MqttBridge extends EventEmitter<MqttBridgeEvents> {
  readonly deviceId: string
  readonly topics: DeviceTopics
  readonly #options: MqttBridgeOptions
  readonly #controller: DeviceController
  readonly #prefix: string
  readonly #groups: string[]
  readonly #schemas: MessageSchemas
  readonly #log: Logger
  readonly #outbox: OutboxWriter
  readonly #pump: OutboxPump
  readonly #handler: CommandHandler
  readonly #fleetKey: KeyObject | undefined
  #client: MqttClient | undefined
  #state: BridgeState = 'idle'
  #reconnectAttempt = 0
  #reconnectTimer: NodeJS.Timeout | undefined
  #telemetryTimer: NodeJS.Timeout | undefined
  #statusQueued = false
  #lastRefusalCode: number | undefined
  /** The latest enqueue; the store's writer commits them in order (never rejects). */
  #lastEnqueue: Promise<void> = Promise.resolve()
  readonly #onControllerEvent = (event: DeviceEvent): void => this.#publishEvent(event)
  readonly #onStatusChanged = (): void => this.publishStatus()

  /**
   * Checks the options (throws EDGESTAR_MQTT_TOPIC_INVALID, EDGESTAR_MQTT_KEY_INVALID,
   * EDGESTAR_MQTT_URL_INVALID) and wires the parts; connects only on `start()`.
   */
  constructor(options: MqttBridgeOptions, controller: DeviceController, store: BridgeStore) {
    super()
    this.#options = options
    this.#controller = controller
    this.deviceId = options.deviceId ?? defaultDeviceId()
    this.#prefix = options.prefix ?? DEFAULT_TOPIC_PREFIX
    this.#groups = options.groups ?? []
    this.topics = deviceTopics(this.#prefix, this.deviceId, this.#groups)
    checkBrokerUrl(options.url)
    this.#schemas = messageSchemas()
    this.#log = moduleLogger('mqtt', { broker: redactUrl(options.url), device: this.deviceId })
    this.#fleetKey = fleetKey(options.fleetPublicKey)

    this.#outbox = new OutboxWriter(store.outbox, options.outbox ?? {}, (loss) =>
      this.#reportLoss(loss),
    )
    const keepaliveSec = options.keepaliveSec ?? DEFAULT_KEEPALIVE_SEC
    this.#pump = new OutboxPump(store.outbox, (row) => this.#publishRow(row), {
      ...options.outbox,
      releaseAfterMs: Math.max(10_000, keepaliveSec * 2000),
      log: this.#log,
    })
    this.#handler = new CommandHandler({
      deviceId: this.deviceId,
      prefix: this.#prefix,
      commandTopic: this.topics.command,
      resultTopic: this.topics.result,
      groupByTopic: new Map(this.#groups.map((g, i) => [this.topics.groupCommands[i]!, g])),
      controller,
      commandLog: store.commandLog,
      schemas: this.#schemas,
      fleetPublicKey: this.#fleetKey,
      publishResult: (result, route) => this.#publishResult(result, route),
      reportRefusal: (refusal) => this.#reportRefusal(refusal),
      publishStatus: () => this.#publishStatusMessage(),
      log: this.#log,
    })
  }

  /** Current connection state. */
  get state(): BridgeState {
    return this.#state
  }

  /**
   * Starts connecting in the background and listening to the controller's events.
   * Resolves at once; reads the TLS files first (throws EDGESTAR_MQTT_TLS_UNREADABLE).
   */
  async start(): Promise<void> {
    if (this.#state !== 'idle') throw new Error('MqttBridge.start called twice')
    const clientOptions = this.#clientOptions()
    this.#controller.events.on('event', this.#onControllerEvent)
    this.#controller.events.on('status-changed', this.#onStatusChanged)

    this.#setState('connecting')
    const client = mqtt.connect(this.#options.url, clientOptions)
    this.#client = client
    client.on('connect', (connack) => this.#onConnect(connack))
    client.on('message', (topic, payload, packet) => this.#onMessage(topic, payload, packet))
    client.on('close', () => this.#onClose())
    client.on('error', (err) => this.#onError(err))

    const intervalMs = this.#options.telemetryIntervalMs ?? DEFAULT_TELEMETRY_INTERVAL_MS
    if (intervalMs > 0) {
      this.#telemetryTimer = setInterval(() => void this.publishTelemetry(), intervalMs)
      this.#telemetryTimer.unref()
    }
  }

  /**
   * Stops: no more commands, telemetry or reconnects; when connected, replaces the
   * retained status with `online: false, reason: shutdown` and disconnects cleanly
   * (the last will is not sent). Rows still in the outbox stay for the next start.
   */
  async stop(): Promise<void> {
    if (this.#state === 'stopped') return
    const wasOnline = this.#state === 'online'
    this.#setState('stopped')
    this.#controller.events.off('event', this.#onControllerEvent)
    this.#controller.events.off('status-changed', this.#onStatusChanged)
    clearInterval(this.#telemetryTimer)
    clearTimeout(this.#reconnectTimer)
    this.#pump.pause()

    const client = this.#client
    if (client === undefined) return
    // The goodbye is bounded: a broker that stopped answering must not hold up shutdown
    // (its last will then says offline instead).
    let isClean = false
    if (wasOnline) {
      const offline = this.#offlineStatus('shutdown')
      const published = client
        .publishAsync(this.topics.status, offline, { qos: 1, retain: true })
        .then(() => true)
        .catch(() => false)
      isClean = await Promise.race([published, delay(STOP_TIMEOUT_MS, false)])
      if (!isClean) this.#log.warn('offline status not published')
    }
    await Promise.race([client.endAsync(!isClean), delay(STOP_TIMEOUT_MS, undefined)])
    if (!isClean) client.end(true)
  }

  /**
   * Samples device metrics and the controller's fetch figures and queues one telemetry
   * message in the outbox. Called by the timer; callable at any time.
   */
  async publishTelemetry(): Promise<void> {
    try {
      const [telemetry, system] = await Promise.all([
        this.#controller.telemetry(),
        sampleDeviceMetrics(this.#options.diskPath ?? '/'),
      ])
      const message = {
        device: this.deviceId,
        time: new Date().toISOString(),
        msgId: randomUUID(),
        ...telemetry,
        outbox: await this.#outboxFigures(),
        system,
      }
      await this.#enqueue('telemetry', this.topics.telemetry, message)
    } catch (err) {
      this.#log.warn({ err }, 'telemetry sample failed')
    }
  }

  /**
   * Resolves once every event and telemetry message produced so far is in the outbox,
   * durably (the store's writer thread commits them off the event loop, in order).
   */
  whenQueued(): Promise<void> {
    return this.#lastEnqueue
  }

  /** Publishes the retained status soon (coalesces bursts of changes into one message). */
  publishStatus(): void {
    if (this.#statusQueued) return
    this.#statusQueued = true
    setTimeout(() => {
      this.#statusQueued = false
      void this.#publishStatusNow()
    }, 50).unref()
  }

  #clientOptions(): IClientOptions {
    const keepaliveSec = this.#options.keepaliveSec ?? DEFAULT_KEEPALIVE_SEC
    const protocolVersion = this.#options.protocolVersion ?? 5
    const options: IClientOptions = {
      clientId: `edgestar-${this.deviceId}`,
      protocolVersion,
      // A persistent session keeps QoS 1 commands sent while the device was away.
      clean: false,
      // mqtt.js gives up on a silent broker after 1.5 x keepalive; this keeps the whole
      // detection within the configured keepalive.
      keepalive: Math.max(1, Math.floor((keepaliveSec * 2) / 3)),
      connectTimeout: Math.max(5, keepaliveSec) * 1000,
      // Reconnects are ours (backoff with jitter), and so are re-subscriptions.
      reconnectPeriod: 0,
      resubscribe: false,
      will: this.#lastWill(),
    }
    if (protocolVersion === 5)
      options.properties = {
        sessionExpiryInterval: this.#options.sessionExpirySec ?? DEFAULT_SESSION_EXPIRY_SEC,
      }
    if (this.#options.username !== undefined) options.username = this.#options.username
    if (this.#options.password !== undefined) options.password = this.#options.password
    Object.assign(options, readTlsFiles(this.#options.tls))
    return options
  }

  #onConnect(connack: IConnackPacket): void {
    this.#reconnectAttempt = 0
    this.#lastRefusalCode = undefined
    this.#setState('online')
    this.#log.info({ sessionPresent: connack.sessionPresent }, 'connected')

    // Without a session (first connect, broker restart, expired session) the broker
    // has forgotten our subscriptions.
    if (!connack.sessionPresent) {
      const topics = [this.topics.command, ...this.topics.groupCommands]
      this.#client?.subscribe(topics, { qos: 1 }, (err, granted) => {
        if (err) this.#log.error({ err: errorFields(err) }, 'subscribe failed')
        // A SUBACK code of 0x80 or more is a refusal (usually the broker's ACL).
        for (const grant of granted ?? [])
          if (grant.qos >= 0x80)
            this.#log.error({ topic: grant.topic, code: grant.qos }, 'subscription refused')
      })
    }
    this.#outbox.flushLoss()
    void this.#publishStatusNow()
    this.#pump.resume()
  }

  // A refusal in CONNACK (bad credentials, not authorised) needs an operator and is
  // logged once per reason; socket errors while the broker is away are routine, since
  // the disconnect itself was already logged.
  #onError(err: Error): void {
    const fields = errorFields(err)
    if (typeof fields.code !== 'number') {
      this.#log.debug({ err: fields }, 'broker connection error')
      return
    }
    if (this.#lastRefusalCode === fields.code) return
    this.#lastRefusalCode = fields.code
    this.#log.error({ err: fields }, 'broker refused the connection')
  }

  #onClose(): void {
    if (this.#state === 'stopped') return
    this.#pump.pause()
    if (this.#state === 'online') this.#log.warn('disconnected')
    this.#setState('offline')
    this.#scheduleReconnect()
  }

  #scheduleReconnect(): void {
    if (this.#reconnectTimer !== undefined) return
    const delayMs = reconnectDelayMs(this.#reconnectAttempt, {
      minMs: this.#options.reconnect?.minMs ?? DEFAULT_RECONNECT_MIN_MS,
      maxMs: this.#options.reconnect?.maxMs ?? DEFAULT_RECONNECT_MAX_MS,
    })
    this.#reconnectAttempt += 1
    this.#log.debug({ delayMs: Math.round(delayMs) }, 'reconnect scheduled')
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined
      if (this.#state === 'stopped') return
      this.#setState('connecting')
      // The will carries the time of the connect it belongs to.
      if (this.#client !== undefined) this.#client.options.will = this.#lastWill()
      this.#client?.reconnect()
    }, delayMs)
  }

  #onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (this.#state === 'stopped') return
    this.#handler.handle({
      topic,
      payload,
      responseTopic: packet.properties?.responseTopic,
      correlationData: packet.properties?.correlationData,
    })
  }

  #publishResult(result: CommandResult, route: ResultRoute): void {
    const payload = this.#serialize('result', result)
    const properties =
      route.correlationData === undefined ? undefined : { correlationData: route.correlationData }
    // QoS 1 while offline: mqtt.js keeps it and sends it on reconnect. A result lost to
    // a restart is answered again from the command log when the operator resends the id.
    this.#client?.publish(route.topic, payload, { qos: 1, properties }, (err) => {
      if (err) this.#log.warn({ err: errorFields(err), commandId: result.id }, 'result not sent')
    })
    this.emit('result', result)
  }

  async #publishStatusNow(): Promise<void> {
    if (this.#state !== 'online') return
    try {
      await this.#publishStatusMessage()
    } catch (err) {
      this.#log.warn({ err }, 'status not published')
    }
  }

  // Builds the status from the controller and publishes it retained; returns it (the
  // `status` command answers with it). Offline, the status is built but not sent:
  // the next connect publishes a fresh one.
  async #publishStatusMessage(): Promise<Record<string, unknown>> {
    const snapshot = await this.#controller.status()
    const status = {
      device: this.deviceId,
      online: true,
      time: new Date().toISOString(),
      version: this.#options.version ?? packageVersion(),
      groups: this.#groups,
      ...snapshot,
      outbox: await this.#outboxFigures(),
    }
    const payload = this.#serialize('status', status)
    const client = this.#client
    if (client?.connected)
      await client.publishAsync(this.topics.status, payload, { qos: 1, retain: true })
    return status
  }

  #publishEvent(event: DeviceEvent | Refusal | OutboxLoss, type?: string): void {
    const message = {
      device: this.deviceId,
      time: new Date().toISOString(),
      msgId: randomUUID(),
      ...(type === undefined ? {} : { type }),
      ...event,
    }
    void this.#enqueue('event', this.topics.events, message)
    if ('type' in event && event.type === 'deployment-state') this.publishStatus()
  }

  #reportRefusal(refusal: Refusal): void {
    this.#publishEvent(refusal, 'command-refused')
  }

  #reportLoss(loss: OutboxLoss): void {
    this.#log.warn(loss, 'outbox full, oldest messages dropped')
    this.#publishEvent({ ...loss }, 'outbox-loss')
  }

  // Resolves once the row is durable (never rejects): the pump only sends rows it can
  // read back, so nothing reaches the broker before it would survive a power cut.
  #enqueue(kind: 'event' | 'telemetry', topic: string, message: unknown): Promise<void> {
    this.#lastEnqueue = this.#enqueueNow(kind, topic, message)
    return this.#lastEnqueue
  }

  async #enqueueNow(kind: 'event' | 'telemetry', topic: string, message: unknown): Promise<void> {
    try {
      const payload = this.#serialize(kind, message)
      await this.#outbox.enqueue(kind, topic, payload)
      if (this.#state === 'online') this.#pump.resume()
    } catch (err) {
      this.#log.error({ err, kind }, 'outbox enqueue failed')
    }
  }

  #publishRow(row: OutboxItem): Promise<void> {
    // Only over a live connection: mqtt.js's offline queue would hold the row in memory,
    // and the outbox already does that durably.
    const client = this.#client
    if (client === undefined || !client.connected)
      return Promise.reject(new Error('not connected to the broker'))
    return new Promise((resolve, reject) => {
      client.publish(row.topic, Buffer.from(row.payload), { qos: 1 }, (err) =>
        err ? reject(err) : resolve(),
      )
    })
  }

  // Outgoing messages are checked against their schema; a mismatch is a bug, logged
  // loudly, and the message still goes out (the fleet learns more than from silence).
  #serialize(kind: MessageKind, message: unknown): string {
    const outcome = this.#schemas.validate(kind, message)
    if (!outcome.ok) this.#log.error({ kind, problem: outcome.message }, 'outgoing message invalid')
    return JSON.stringify(message)
  }

  #lastWill(): NonNullable<IClientOptions['will']> {
    const payload = Buffer.from(this.#offlineStatus('last-will'))
    return { topic: this.topics.status, payload, qos: 1, retain: true }
  }

  #offlineStatus(reason: 'last-will' | 'shutdown'): string {
    const status = { device: this.deviceId, online: false, reason, time: new Date().toISOString() }
    return this.#serialize('status', status)
  }

  async #outboxFigures(): Promise<{
    queued: number
    queuedBytes: number
    droppedTelemetry: number
    droppedEvents: number
  }> {
    const stats = await this.#outbox.stats()
    return {
      queued: stats.messages,
      queuedBytes: stats.bytes,
      droppedTelemetry: stats.droppedTelemetry,
      droppedEvents: stats.droppedOther,
    }
  }

  #setState(state: BridgeState): void {
    if (this.#state === state) return
    this.#state = state
    this.emit('state', state)
  }
}

function delay<T>(ms: number, value: T): Promise<T> {
  return new Promise((resolve) => setTimeout(() => resolve(value), ms).unref())
}

// TODO(mqtt): ws:// and wss:// go to mqtt.js untested: Debian's mosquitto 2.0.11 on the
// test machine would not open a websockets listener, so no test covers those schemes.
function checkBrokerUrl(url: string): void {
  let protocol: string
  try {
    protocol = new URL(url).protocol
  } catch {
    protocol = ''
  }
  if (['mqtt:', 'mqtts:', 'ws:', 'wss:'].includes(protocol)) return
  throw new EdgestarError(
    'EDGESTAR_MQTT_URL_INVALID',
    `broker URL ${redactUrl(url)} is not usable`,
    {
      hint: 'give mqtt://HOST:PORT, mqtts://HOST:PORT, ws://HOST:PORT/PATH or wss://HOST:PORT/PATH',
    },
  )
}

function fleetKey(key: string | KeyObject | undefined): KeyObject | undefined {
  if (key === undefined) return undefined
  if (typeof key === 'string') return loadFleetPublicKey(key, 'the fleet public key option')
  return key.type === 'private' ? createPublicKey(key) : key
}

function errorFields(err: unknown): { message: string; code?: unknown } {
  if (err instanceof Error) return { message: err.message, code: (err as { code?: unknown }).code }
  return { message: String(err) }
}
