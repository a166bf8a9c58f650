import { readFileSync } from 'node:fs'
import type { Command } from 'commander'
import { EdgestarError } from '../errors.js'
import type { FleetClientOptions, FleetTarget } from '../mqtt/index.js'
import { addHiddenAlias } from './options.js'

/**
 * The broker options of `edgestar fleet`, named as `edgestar agent` names them (and read
 * from the same environment variables), so one set of words reaches the broker from
 * either side.
 */
export interface ConnectionOptions {
  mqttUrl?: string
  mqttPrefix?: string
  mqttVersion?: string
  mqttUsername?: string
  mqttPasswordFile?: string
  mqttCaFile?: string
  mqttCertFile?: string
  mqttKeyFile?: string
  json?: boolean
}

/** The options of a fleet command that is sent to devices. */
export interface SendCliOptions extends ConnectionOptions {
  deviceId?: string
  group?: string
  mqttFleetKeyFile?: string
  timeout: string
  expiresIn: string
  expect?: string
  id?: string
}

// Names the fleet commands had before they took the agent's words; hidden, still accepted.
const CONNECTION_ALIASES: [flag: string, attribute: keyof ConnectionOptions][] = [
  ['--broker <url>', 'mqttUrl'],
  ['--prefix <prefix>', 'mqttPrefix'],
  ['--username <name>', 'mqttUsername'],
  ['--password-file <file>', 'mqttPasswordFile'],
  ['--ca <file>', 'mqttCaFile'],
  ['--cert <file>', 'mqttCertFile'],
  ['--cert-key <file>', 'mqttKeyFile'],
]

/**
 * Adds the broker options (`--mqtt-url`, `--mqtt-prefix`, `--mqtt-version`,
 * `--mqtt-username`, `--mqtt-password-file`, `--mqtt-ca-file`, `--mqtt-cert-file`,
 * `--mqtt-key-file`), their hidden old names, and `--json`. Read them with `connectionFrom`.
 */
export function addConnectionOptions(command: Command): Command {
  command
    .option(
      '--mqtt-url <url>',
      'broker URL: mqtt://, mqtts://, ws://, wss:// (env EDGESTAR_MQTT_URL)',
    )
    .option('--mqtt-prefix <prefix>', 'first topic level(s) (default edgestar)')
    .option('--mqtt-version <4|5>', 'MQTT protocol version: 4 (3.1.1) or 5 (default 5)')
    .option('--mqtt-username <name>', 'broker user name (env EDGESTAR_MQTT_USERNAME)')
    .option(
      '--mqtt-password-file <file>',
      'file holding the broker password (env EDGESTAR_MQTT_PASSWORD_FILE)',
    )
    .option('--mqtt-ca-file <file>', 'CA bundle to trust for mqtts:// and wss:// (PEM)')
    .option('--mqtt-cert-file <file>', 'client certificate for brokers that ask for one (PEM)')
    .option('--mqtt-key-file <file>', 'key of the client certificate (PEM)')
    .option('--json', 'print JSON for scripts')
  for (const [flag, attribute] of CONNECTION_ALIASES) addHiddenAlias(command, flag, attribute)
  return command
}

/**
 * Adds the options of a command sent to devices: the broker options, the target
 * (`--device-id` or `--group`), signing (`--mqtt-fleet-key-file`) and waiting.
 */
export function addSendOptions(command: Command): Command {
  addConnectionOptions(command)
    .option('--device-id <id>', 'send to this device')
    .option('--group <group>', 'send to every device in this group')
    .option(
      '--mqtt-fleet-key-file <file>',
      'sign with this Ed25519 private key, the one `fleet keygen` wrote (env EDGESTAR_FLEET_KEY)',
    )
    .option('--timeout <seconds>', 'how long to wait for results', '30')
    .option('--expires-in <seconds>', 'devices refuse the command after this', '600')
    .option('--expect <n>', 'with --group: stop waiting after this many results')
    .option('--id <id>', 'command id (resend an id to get its stored result again)')
  addHiddenAlias(command, '--device <id>', 'deviceId')
  addHiddenAlias(command, '--key <file>', 'mqttFleetKeyFile')
  return command
}

/** The one device or group a command goes to; EDGESTAR_CLI_USAGE unless exactly one is given. */
export function targetFrom(options: SendCliOptions): FleetTarget {
  if ((options.deviceId === undefined) === (options.group === undefined))
    throw new EdgestarError(
      'EDGESTAR_CLI_USAGE',
      'give exactly one of --device-id ID or --group GROUP',
      { hint: 'edgestar fleet status --device-id ID --mqtt-url mqtt://HOST:1883' },
    )
  return options.deviceId !== undefined
    ? { device: options.deviceId }
    : { group: options.group as string }
}

/**
 * The broker connection from the options, then the agent's environment variables
 * (EDGESTAR_MQTT_URL, ...), then the fleet's older ones (EDGESTAR_FLEET_BROKER,
 * EDGESTAR_FLEET_PASSWORD). Throws EDGESTAR_CLI_USAGE naming the option at fault.
 */
export function connectionFrom(
  options: ConnectionOptions,
  env: NodeJS.ProcessEnv = process.env,
): FleetClientOptions {
  const url = firstSet(options.mqttUrl, env.EDGESTAR_MQTT_URL, env.EDGESTAR_FLEET_BROKER)
  if (url === undefined)
    throw new EdgestarError('EDGESTAR_CLI_USAGE', 'no broker given', {
      hint: 'pass --mqtt-url mqtt://HOST:1883 or set EDGESTAR_MQTT_URL',
    })
  const version = options.mqttVersion ?? '5'
  if (version !== '4' && version !== '5')
    throw new EdgestarError('EDGESTAR_CLI_USAGE', `--mqtt-version must be 4 or 5, not ${version}`)

  const connection: FleetClientOptions = {
    url,
    prefix: firstSet(options.mqttPrefix, env.EDGESTAR_MQTT_PREFIX) ?? 'edgestar',
    protocolVersion: version === '4' ? 4 : 5,
  }
  const username = firstSet(options.mqttUsername, env.EDGESTAR_MQTT_USERNAME)
  if (username !== undefined) connection.username = username
  const password = passwordFrom(options, env)
  if (password !== undefined) connection.password = password

  const caFile = firstSet(options.mqttCaFile, env.EDGESTAR_MQTT_CA_FILE)
  const certFile = firstSet(options.mqttCertFile, env.EDGESTAR_MQTT_CERT_FILE)
  const keyFile = firstSet(options.mqttKeyFile, env.EDGESTAR_MQTT_KEY_FILE)
  if (caFile !== undefined || certFile !== undefined) {
    connection.tls = {}
    if (caFile !== undefined) connection.tls.caFile = caFile
    if (certFile !== undefined) connection.tls.certFile = certFile
    if (keyFile !== undefined) connection.tls.keyFile = keyFile
  }
  return connection
}

function passwordFrom(options: ConnectionOptions, env: NodeJS.ProcessEnv): string | undefined {
  const file = firstSet(options.mqttPasswordFile, env.EDGESTAR_MQTT_PASSWORD_FILE)
  if (file === undefined) return firstSet(env.EDGESTAR_FLEET_PASSWORD)
  // NOTE: read synchronously at start-up; a password file is a few bytes.
  try {
    return readFileSync(file, 'utf8').trim()
  } catch (err) {
    throw new EdgestarError('EDGESTAR_CLI_USAGE', `cannot read --mqtt-password-file ${file}`, {
      cause: err,
    })
  }
}

// An empty variable counts as unset, as it does for the agent.
function firstSet(...values: (string | undefined)[]): string | undefined {
  return values.find((value) => value !== undefined && value !== '')
}
