import type { KeyObject } from 'node:crypto'
import { isEdgestarError } from '../errors.js'
import type { Logger } from '../log.js'
import type { MessageSchemas } from './schemas.js'
import { checkCommandSignature } from './signing.js'
import type {
  CommandData,
  CommandLog,
  CommandResult,
  DeploySpec,
  DeviceController,
} from './types.js'

/** One PUBLISH received on a command topic. */
export interface IncomingCommand {
  topic: string
  payload: Buffer
  /** MQTT 5 response topic and correlation data of the PUBLISH, when present. */
  responseTopic?: string
  correlationData?: Buffer
}

/** Where a result goes: a topic, plus the correlation data to echo (MQTT 5). */
export interface ResultRoute {
  topic: string
  correlationData?: Buffer
}

/** A refused command, reported as a `command-refused` event. */
export interface Refusal {
  commandId: string | null
  topic: string
  code: string
  message: string
}

/** What the handler needs from the bridge. */
export interface CommandHandlerOptions {
  deviceId: string
  prefix: string
  /** The device's own command topic and its default result topic. */
  commandTopic: string
  resultTopic: string
  /** Group name by group command topic. */
  groupByTopic: Map<string, string>
  controller: DeviceController
  commandLog: CommandLog
  schemas: MessageSchemas
  /** When set, commands must be signed by this key and name their target. */
  fleetPublicKey?: KeyObject
  publishResult: (result: CommandResult, route: ResultRoute) => void
  reportRefusal: (refusal: Refusal) => void
  /** Publishes the retained status now and returns it (the `status` command). */
  publishStatus: () => Promise<Record<string, unknown>>
  log: Logger
  now?: () => number
}

/**
 * A command that passed validation (schemas/command.schema.json): a deploy command carries
 * the DeploySpec fields, the others at most a name.
 */
interface ValidCommand extends Partial<DeploySpec> {
  id: string
  type: 'deploy' | 'stop' | 'start' | 'remove' | 'bandwidth' | 'prefetch' | 'gc' | 'status'
  expiresAt?: string
  target?: string
  capBytesPerSec?: number | null
}

/** Why a command is refused before it runs; `hint` goes into its result. */
interface Refused {
  code: string
  message: string
  hint?: string
}

/** Commands are small; a larger payload is refused before it is parsed. */
export const MAX_COMMAND_BYTES = 256 * 1024

const READABLE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/

/**
 * Turns command PUBLISHes into controller calls and results. Checks, in order: JSON,
 * schema, signature and target (when a fleet key is set), the command log (a known id
 * is answered from its stored result and never run again), expiry. Commands on one
 * deployment run one at a time in arrival order; `status` answers at once. Before a
 * command runs, an `interrupted` result is recorded durably under `ID#started`, so after
 * a power cut mid-command a redelivery is answered with it rather than running the
 * command twice. A bad message gets an error result; nothing a message holds can throw
 * out of `handle`.
 */
export class CommandHandler {
  readonly #options: CommandHandlerOptions
  readonly #pending = new Set<string>()
  /** The tail of each lane: one per deployment name, one for bandwidth, one for gc. */
  readonly #lanes = new Map<string, Promise<void>>()
  /** Commands between their checks and their lane (the command log is being read). */
  readonly #dispatching = new Set<Promise<void>>()

  constructor(options: CommandHandlerOptions) {
    this.#options = options
  }

  /** Handles one PUBLISH; returns at once, the result is published when ready. */
  handle(incoming: IncomingCommand): void {
    try {
      this.#handle(incoming)
    } catch (err) {
      this.#options.log.error({ err, topic: incoming.topic }, 'command handling failed')
    }
  }

  /** Resolves when every queued command has finished (for shutdown and tests). */
  async idle(): Promise<void> {
    await Promise.all(this.#dispatching)
    await Promise.all(this.#lanes.values())
  }

  #handle(incoming: IncomingCommand): void {
    const route = this.#routeFor(incoming)

    // Parse and validate; a readable id is echoed even when the rest is wrong.
    if (incoming.payload.length > MAX_COMMAND_BYTES) {
      this.#refuse(incoming, route, null, {
        code: 'EDGESTAR_MQTT_COMMAND_MALFORMED',
        message: `payload of ${incoming.payload.length} bytes exceeds ${MAX_COMMAND_BYTES}`,
        hint: 'a command is one small JSON object; pass large settings by reference',
      })
      return
    }
    const body = parseJson(incoming.payload)
    if (body === undefined) {
      this.#refuse(incoming, route, null, {
        code: 'EDGESTAR_MQTT_COMMAND_MALFORMED',
        message: 'payload is not JSON',
        hint: `publish one JSON object as ${SCHEMA_HINT}`,
      })
      return
    }
    const id = readableId(body)
    const validation = this.#options.schemas.validate('command', body)
    if (!validation.ok) {
      this.#refuse(incoming, route, id, {
        code: 'EDGESTAR_MQTT_COMMAND_INVALID',
        message: `command does not match schemas/command.schema.json: ${validation.message}`,
        hint: `fix the fields named, as ${SCHEMA_HINT}`,
      })
      return
    }
    const command = body as ValidCommand

    const authError = this.#checkAuthenticity(command, incoming.topic)
    if (authError !== undefined) {
      this.#refuse(incoming, route, command.id, authError)
      return
    }

    // One still queued or running answers when it finishes (its `started` marker is not
    // its result). It counts as pending from here, while the log is read off the loop.
    if (this.#pending.has(command.id)) return
    this.#pending.add(command.id)
    const dispatch = this.#dispatch(command, incoming, route).catch((err: unknown) => {
      this.#pending.delete(command.id)
      this.#options.log.error({ err, commandId: command.id }, 'command handling failed')
    })
    this.#dispatching.add(dispatch)
    void dispatch.then(() => this.#dispatching.delete(dispatch))
  }

  // The store's reader thread answers in arrival order, so commands reach their lanes in
  // the order they arrived.
  async #dispatch(command: ValidCommand, incoming: IncomingCommand, route: ResultRoute) {
    // A known id: the stored result, never a second run.
    const stored = await this.#storedResult(command.id)
    if (stored !== undefined) {
      this.#pending.delete(command.id)
      this.#options.publishResult({ ...stored, duplicate: true }, route)
      return
    }

    if (this.#isExpired(command)) {
      const result = this.#failure(command, {
        code: 'EDGESTAR_MQTT_COMMAND_EXPIRED',
        message: `command ${command.id} expired at ${command.expiresAt}`,
        hint: 'send it again with a new id; a longer --expires-in lets offline devices catch up',
      })
      await this.#options.commandLog.recordAsync(command.id, result)
      this.#pending.delete(command.id)
      this.#options.reportRefusal({
        commandId: command.id,
        topic: incoming.topic,
        code: result.error!.code,
        message: result.error!.message,
      })
      this.#options.publishResult(result, route)
      return
    }

    if (command.type === 'status') {
      void this.#run(command, route)
      return
    }
    this.#enqueue(command, route)
  }

  // Commands on one deployment run in arrival order; commands on different deployments,
  // a bandwidth change and gc do not wait for each other, so a deploy that takes minutes
  // on a thin link does not hold up `bandwidth` or a `stop` of something else.
  #enqueue(command: ValidCommand, route: ResultRoute): void {
    const lane = command.name === undefined ? `#${command.type}` : `deployment:${command.name}`
    const tail = (this.#lanes.get(lane) ?? Promise.resolve()).then(() => this.#run(command, route))
    this.#lanes.set(lane, tail)
    void tail.then(() => {
      if (this.#lanes.get(lane) === tail) this.#lanes.delete(lane)
    })
  }

  #checkAuthenticity(command: ValidCommand, topic: string): Refused | undefined {
    const key = this.#options.fleetPublicKey
    if (key === undefined) return this.#checkTarget(command, topic)

    const verdict = checkCommandSignature(command as unknown as Record<string, unknown>, key)
    if (verdict === 'missing')
      return {
        code: 'EDGESTAR_MQTT_COMMAND_UNSIGNED',
        message: `command ${command.id} is not signed and this device requires fleet signatures`,
        hint: 'sign it: edgestar fleet ... --mqtt-fleet-key-file FILE (the fleet private key)',
      }
    if (verdict === 'invalid')
      return {
        code: 'EDGESTAR_MQTT_SIGNATURE_INVALID',
        message: `signature of command ${command.id} does not verify with the fleet key`,
        hint: "sign with the private key whose FILE.pub is the device's --mqtt-fleet-key-file",
      }
    if (command.target === undefined)
      return {
        code: 'EDGESTAR_MQTT_COMMAND_WRONG_TARGET',
        message: `signed command ${command.id} names no target, so it could be replayed elsewhere`,
        hint: 'sign the command with target device/ID or group/GROUP (edgestar fleet does)',
      }
    return this.#checkTarget(command, topic)
  }

  // A command names where the operator sent it; it must be where it arrived.
  #checkTarget(command: ValidCommand, topic: string): Refused | undefined {
    if (command.target === undefined) return undefined
    const group = this.#options.groupByTopic.get(topic)
    const arrivedAt = group === undefined ? `device/${this.#options.deviceId}` : `group/${group}`
    if (command.target === arrivedAt) return undefined
    return {
      code: 'EDGESTAR_MQTT_COMMAND_WRONG_TARGET',
      message: `command ${command.id} is for ${command.target} but arrived as ${arrivedAt}`,
      hint: 'publish the command on the topic of the device or group its target names',
    }
  }

  // The final result when the command finished; else the `interrupted` marker when it
  // started and the device stopped before it finished.
  async #storedResult(id: string): Promise<CommandResult | undefined> {
    const log = this.#options.commandLog
    const entry = (await log.findAsync(id)) ?? (await log.findAsync(startedKey(id)))
    const result = entry?.result
    return typeof result === 'object' && result !== null ? (result as CommandResult) : undefined
  }

  #isExpired(command: ValidCommand): boolean {
    if (command.expiresAt === undefined) return false
    const now = this.#options.now?.() ?? Date.now()
    return Date.parse(command.expiresAt) <= now
  }

  async #run(command: ValidCommand, route: ResultRoute): Promise<void> {
    const { commandLog, publishResult, log } = this.#options
    // Durable before the command starts: a power cut from here on is answered with it.
    await commandLog.recordAsync(
      startedKey(command.id),
      this.#failure(command, {
        code: 'EDGESTAR_MQTT_COMMAND_INTERRUPTED',
        message: `the device stopped while running command ${command.id}; its outcome is unknown`,
        hint: 'check the device with `edgestar fleet status`, then send a new command if needed',
      }),
    )

    let result: CommandResult
    try {
      const data = await this.#execute(command)
      result = { ...data, ...this.#base(command), ok: true }
    } catch (err) {
      if (!isEdgestarError(err)) log.error({ err, commandId: command.id }, 'command failed')
      result = this.#failure(command, refusedOf(err))
    }

    // Durable before the result goes out: a redelivery is then answered from the log.
    try {
      await commandLog.recordAsync(command.id, result)
    } catch (err) {
      log.error({ err, commandId: command.id }, 'command result not recorded')
    }
    this.#pending.delete(command.id)
    publishResult(result, route)
  }

  async #execute(command: ValidCommand): Promise<CommandData> {
    const { controller } = this.#options
    const name = command.name ?? ''
    switch (command.type) {
      case 'deploy':
        return (await controller.deploy(deploySpec(command))) ?? {}
      case 'stop':
        return (await controller.stop(name)) ?? {}
      case 'start':
        return (await controller.start(name)) ?? {}
      case 'remove':
        return (await controller.remove(name)) ?? {}
      case 'prefetch':
        return (await controller.prefetch(name)) ?? {}
      case 'bandwidth':
        return (await controller.bandwidth(command.capBytesPerSec ?? null)) ?? {}
      case 'gc':
        return (await controller.gc()) ?? {}
      case 'status':
        return { status: await this.#options.publishStatus() }
    }
  }

  #refuse(incoming: IncomingCommand, route: ResultRoute, id: string | null, why: Refused): void {
    const { code, message } = why
    this.#options.log.warn({ topic: incoming.topic, commandId: id, code }, 'command refused')
    this.#options.reportRefusal({ commandId: id, topic: incoming.topic, code, message })
    const result: CommandResult = {
      id,
      ok: false,
      device: this.#options.deviceId,
      time: new Date().toISOString(),
      error: errorOf(why),
    }
    this.#options.publishResult(result, route)
  }

  #base(command: ValidCommand): CommandResult {
    const time = new Date().toISOString()
    return { id: command.id, ok: true, device: this.#options.deviceId, type: command.type, time }
  }

  #failure(command: ValidCommand, why: Refused): CommandResult {
    return { ...this.#base(command), ok: false, error: errorOf(why) }
  }

  // An MQTT 5 response topic is honoured only under the prefix, so a command cannot
  // make the device publish into another application's topics.
  #routeFor(incoming: IncomingCommand): ResultRoute {
    const topic = incoming.responseTopic ?? ''
    const isAllowed = topic.startsWith(`${this.#options.prefix}/`) && !/[+#]/.test(topic)
    if (!isAllowed) return { topic: this.#options.resultTopic }
    return { topic, correlationData: incoming.correlationData }
  }
}

const SCHEMA_HINT = 'schemas/command.schema.json and docs/telemetry.md describe'

// The controller's EdgestarError keeps its code and hint; anything else is a bug there.
function refusedOf(err: unknown): Refused {
  if (isEdgestarError(err))
    return { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) }
  const message = err instanceof Error ? err.message : String(err)
  return { code: 'EDGESTAR_MQTT_COMMAND_FAILED', message }
}

// A result's error has no `hint` key at all when there is none (not `undefined`).
function errorOf(why: Refused): NonNullable<CommandResult['error']> {
  const { code, message, hint } = why
  return hint === undefined ? { code, message } : { code, message, hint }
}

// Command ids cannot hold '#', so the marker never collides with a real id. A separate
// key, because the log keeps the first record of an id.
function startedKey(id: string): string {
  return `${id}#started`
}

// undefined for anything that is not JSON (JSON itself has no undefined).
function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8')) as unknown
  } catch {
    return undefined
  }
}

function readableId(body: unknown): string | null {
  if (typeof body !== 'object' || body === null) return null
  const id = (body as { id?: unknown }).id
  return typeof id === 'string' && READABLE_ID.test(id) ? id : null
}

function deploySpec(command: ValidCommand): DeploySpec {
  const spec: DeploySpec = { name: command.name!, image: command.image! }
  if (command.command !== undefined) spec.command = command.command
  if (command.env !== undefined) spec.env = command.env
  if (command.restart !== undefined) spec.restart = command.restart
  if (command.network !== undefined) spec.network = command.network
  if (command.binds !== undefined) spec.binds = command.binds
  if (command.workingDir !== undefined) spec.workingDir = command.workingDir
  if (command.user !== undefined) spec.user = command.user
  if (command.init !== undefined) spec.init = command.init
  if (command.update !== undefined) spec.update = command.update
  return spec
}
