import { type KeyObject, randomUUID } from 'node:crypto'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { EdgestarError, redactUrl } from '../errors.js'
import type { TlsFiles } from './options.js'
import { messageSchemas } from './schemas.js'
import { signCommand } from './signing.js'
import { readTlsFiles } from './tls-files.js'
import { checkTopicLevel, DEFAULT_TOPIC_PREFIX, groupCommandTopic } from './topics.js'
import type { CommandResult } from './types.js'

/** How the operator reaches the broker. */
export interface FleetClientOptions {
  url: string
  prefix?: string
  protocolVersion?: 4 | 5
  username?: string
  password?: string
  tls?: TlsFiles
  /** Ed25519 private key that signs every command sent (see `edgestar fleet keygen`). */
  signingKey?: KeyObject
  /** Connect timeout in milliseconds (default 10 000). */
  connectTimeoutMs?: number
}

/** Where a command goes: one device or every device of a group. */
export type FleetTarget = { device: string } | { group: string }

/** A command body without the fields the client fills in (id, target, times, sig). */
export type FleetCommandBody = { type: string } & Record<string, unknown>

/** Options of one `send`. */
export interface SendOptions {
  /** How long to wait for results, in milliseconds. */
  timeoutMs: number
  /** The command is refused by devices after this many seconds (default 600). */
  expiresInSec?: number
  /** Group commands: stop waiting after this many results (default: wait the timeout). */
  expectResults?: number
  /** Reuse an id, to ask again for the result of a command already sent. */
  id?: string
}

/** One message `watch` saw. */
export interface FleetMessage {
  device: string
  kind: 'status' | 'events' | 'telemetry' | 'result'
  topic: string
  body: unknown
}

/**
 * The operator's side of the fleet link: sends (signed) commands to a device or a
 * group and collects their results; watches status, events and telemetry.
 */
export class FleetClient {
  readonly #client: MqttClient
  readonly #prefix: string
  readonly #signingKey: KeyObject | undefined

  private constructor(client: MqttClient, prefix: string, signingKey?: KeyObject) {
    this.#client = client
    this.#prefix = prefix
    this.#signingKey = signingKey
  }

  /** Connects (clean session); throws EDGESTAR_MQTT_CONNECT_FAILED with the broker's reason. */
  static async connect(options: FleetClientOptions): Promise<FleetClient> {
    const prefix = options.prefix ?? DEFAULT_TOPIC_PREFIX
    const clientOptions: IClientOptions = {
      clientId: `edgestar-fleet-${randomUUID().slice(0, 12)}`,
      protocolVersion: options.protocolVersion ?? 5,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: options.connectTimeoutMs ?? 10_000,
      ...credentials(options),
    }
    try {
      const client = await mqtt.connectAsync(options.url, clientOptions)
      return new FleetClient(client, prefix, options.signingKey)
    } catch (err) {
      throw new EdgestarError(
        'EDGESTAR_MQTT_CONNECT_FAILED',
        `cannot connect to broker ${redactUrl(options.url)}: ${(err as Error).message}`,
        { cause: err, hint: 'check --mqtt-url, the credentials and the TLS files' },
      )
    }
  }

  /**
   * Sends one command and waits for results. A device target resolves with its one
   * result (resending the same id once halfway, which the device answers from its
   * command log if the first result was lost); a group target collects results until
   * the timeout or `expectResults`. Throws EDGESTAR_MQTT_COMMAND_TIMEOUT when a device
   * does not answer in time.
   */
  async send(
    target: FleetTarget,
    body: FleetCommandBody,
    options: SendOptions,
  ): Promise<CommandResult[]> {
    const command = this.#command(target, body, options)
    const topic =
      'device' in target
        ? `${this.#prefix}/${target.device}/cmd`
        : groupCommandTopic(this.#prefix, target.group)
    const resultFilter =
      'device' in target
        ? `${this.#prefix}/${target.device}/cmd/result`
        : `${this.#prefix}/+/cmd/result`

    const results: CommandResult[] = []
    let finish = (): void => {}
    const done = new Promise<void>((resolve) => {
      finish = resolve
    })
    const onMessage = (_topic: string, payload: Buffer): void => {
      const result = parseResult(payload)
      if (result === undefined || result.id !== command.id) return
      if (results.some((seen) => seen.device === result.device)) return
      results.push(result)
      const expected = 'device' in target ? 1 : options.expectResults
      if (expected !== undefined && results.length >= expected) finish()
    }
    this.#client.on('message', onMessage)
    const timer = setTimeout(finish, options.timeoutMs)
    // A device target gets the same id again halfway: a lost result is answered from the
    // device's command log, and the command never runs twice.
    const resend = setTimeout(() => {
      if ('device' in target) void this.#publish(topic, command).catch(() => {})
    }, options.timeoutMs / 2)

    await this.#client.subscribeAsync(resultFilter, { qos: 1 })
    try {
      await this.#publish(topic, command)
      await done
    } finally {
      clearTimeout(timer)
      clearTimeout(resend)
      this.#client.off('message', onMessage)
    }

    if (results.length === 0 && 'device' in target)
      throw new EdgestarError(
        'EDGESTAR_MQTT_COMMAND_TIMEOUT',
        `device ${target.device} did not answer command ${command.id} within ${options.timeoutMs / 1000}s`,
        {
          hint:
            'the device may be offline: it will run the command when it reconnects unless it ' +
            `expires first (${command.expiresAt}); ask again with --id ${command.id}`,
        },
      )
    return results
  }

  /**
   * Calls `onMessage` for every status, event (and telemetry when asked) message of one
   * device, or of every device under the prefix. Runs until `close()`.
   */
  async watch(
    options: { device?: string; telemetry?: boolean },
    onMessage: (message: FleetMessage) => void,
  ): Promise<void> {
    const device = options.device ?? '+'
    const kinds = ['status', 'events', ...(options.telemetry ? ['telemetry'] : [])]
    this.#client.on('message', (topic, payload) => {
      const levels = topic.slice(this.#prefix.length + 1).split('/')
      const kind = levels[1] as FleetMessage['kind']
      if (levels.length !== 2 || !kinds.includes(kind)) return
      let body: unknown
      try {
        body = JSON.parse(payload.toString('utf8'))
      } catch {
        body = payload.toString('utf8')
      }
      onMessage({ device: levels[0]!, kind, topic, body })
    })
    const filters = kinds.map((kind) => `${this.#prefix}/${device}/${kind}`)
    await this.#client.subscribeAsync(filters, { qos: 1 })
  }

  /** Disconnects. */
  async close(): Promise<void> {
    await this.#client.endAsync()
  }

  #command(
    target: FleetTarget,
    body: FleetCommandBody,
    options: SendOptions,
  ): Record<string, unknown> & { id: string; expiresAt: string } {
    const name = 'device' in target ? target.device : target.group
    checkTopicLevel(name, 'device' in target ? 'device id' : 'group')
    const now = Date.now()
    const command = {
      ...body,
      id: options.id ?? randomUUID(),
      target: 'device' in target ? `device/${target.device}` : `group/${target.group}`,
      issuedAt: new Date(now).toISOString(),
      expiresAt: new Date(now + (options.expiresInSec ?? 600) * 1000).toISOString(),
    }
    const signed = this.#signingKey === undefined ? command : signCommand(command, this.#signingKey)
    messageSchemas().assert('command', signed)
    return signed
  }

  async #publish(topic: string, command: Record<string, unknown>): Promise<void> {
    await this.#client.publishAsync(topic, JSON.stringify(command), { qos: 1 })
  }
}

function parseResult(payload: Buffer): CommandResult | undefined {
  try {
    const body = JSON.parse(payload.toString('utf8')) as unknown
    return typeof body === 'object' && body !== null && 'ok' in body
      ? (body as CommandResult)
      : undefined
  } catch {
    return undefined
  }
}

function credentials(options: FleetClientOptions): Partial<IClientOptions> {
  const result: Partial<IClientOptions> = {}
  if (options.username !== undefined) result.username = options.username
  if (options.password !== undefined) result.password = options.password
  return { ...result, ...readTlsFiles(options.tls) }
}
