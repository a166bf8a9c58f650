import { readFileSync } from 'node:fs'
import { chmod, readFile, writeFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { EdgestarError } from '../../errors.js'
import { parseByteSize } from '../../fetch/index.js'
import {
  type CommandResult,
  FleetClient,
  type FleetClientOptions,
  type FleetCommandBody,
  type FleetMessage,
  type FleetTarget,
  generateFleetKeyPair,
  loadFleetPrivateKey,
} from '../../mqtt/index.js'
import { printResult } from '../output.js'

interface ConnectionOptions {
  broker?: string
  prefix?: string
  mqttVersion?: string
  username?: string
  passwordFile?: string
  ca?: string
  cert?: string
  certKey?: string
  json?: boolean
}

interface SendCliOptions extends ConnectionOptions {
  device?: string
  group?: string
  key?: string
  timeout: string
  expiresIn: string
  expect?: string
  id?: string
}

/** `edgestar fleet ...`: operate devices over MQTT, watch them, make signing keys. */
export function register(program: Command): void {
  const fleet = program
    .command('fleet')
    .description(
      'operate devices over MQTT: send a (signed) command to one device or a group and ' +
        'wait for its result, watch status and events live, make the fleet signing key.',
    )

  const deploy = fleet
    .command('deploy')
    .description('deploy an image on the device(s); a command after -- replaces the default')
    .argument('<name>', 'deployment name (a-z 0-9 . _ -)')
    .argument('<image>', 'image reference')
    .argument('[command...]', 'command and arguments to run instead of the image default')
    .option('--env <K=V>', 'environment variable (repeatable)', collect, [])
    .option('--restart <policy>', 'restart policy: no, on-failure, always')
  addSendOptions(deploy).action(
    async (
      name: string,
      image: string,
      command: string[],
      options: SendCliOptions & { env: string[]; restart?: string },
    ) => {
      const body: FleetCommandBody = { type: 'deploy', name, image }
      if (command.length > 0) body.command = command
      if (options.env.length > 0) body.env = parseEnv(options.env)
      if (options.restart !== undefined) body.restart = options.restart
      await sendAndPrint(body, options)
    },
  )

  for (const type of ['stop', 'start', 'remove', 'prefetch'] as const) {
    const command = fleet
      .command(type)
      .description(`${type} a deployment on the device(s)`)
      .argument('<name>', 'deployment name')
    addSendOptions(command).action(async (name: string, options: SendCliOptions) => {
      await sendAndPrint({ type, name }, options)
    })
  }

  const bandwidth = fleet
    .command('bandwidth')
    .description('set the background fetch cap of the device(s), e.g. 512KiB; 0 or off = none')
    .argument('<rate>', 'bytes per second with an optional unit, or off')
  addSendOptions(bandwidth).action(async (rate: string, options: SendCliOptions) => {
    const bytes = rate === 'off' ? 0 : parseByteSize(rate, 'rate')
    await sendAndPrint({ type: 'bandwidth', capBytesPerSec: bytes === 0 ? null : bytes }, options)
  })

  const gc = fleet.command('gc').description('garbage-collect the image cache of the device(s)')
  addSendOptions(gc).action(async (options: SendCliOptions) => {
    await sendAndPrint({ type: 'gc' }, options)
  })

  const status = fleet
    .command('status')
    .description('ask the device(s) to publish their status now, and print it')
  addSendOptions(status).action(async (options: SendCliOptions) => {
    await sendAndPrint({ type: 'status' }, options)
  })

  const watch = fleet
    .command('watch')
    .description('print status and events (and telemetry with --telemetry) as they arrive')
    .option('--device <id>', 'only this device')
    .option('--telemetry', 'also print telemetry')
  addConnectionOptions(watch).action(
    async (options: ConnectionOptions & { device?: string; telemetry?: boolean }) => {
      const client = await FleetClient.connect(connectionFrom(options))
      await client.watch({ device: options.device, telemetry: options.telemetry }, (message) =>
        printResult(options, message, () => describeMessage(message)),
      )
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve)
        process.once('SIGTERM', resolve)
      })
      await client.close()
    },
  )

  fleet
    .command('keygen')
    .description(
      'make an Ed25519 key pair for signing commands: FILE (private, for operators) and FILE.pub',
    )
    .requiredOption(
      '--out <file>',
      'where to write the private key; the public key goes to FILE.pub',
    )
    .option('--force', 'overwrite existing files')
    .option('--json', 'print the result as JSON')
    .action(async (options: { out: string; force?: boolean; json?: boolean }) => {
      const pair = generateFleetKeyPair()
      const flag = options.force ? 'w' : 'wx'
      try {
        await writeFile(options.out, pair.privateKeyPem, { mode: 0o600, flag })
        await chmod(options.out, 0o600)
        await writeFile(`${options.out}.pub`, pair.publicKeyPem, { mode: 0o644, flag })
      } catch (err) {
        throw new EdgestarError('EDGESTAR_MQTT_KEY_WRITE_FAILED', `cannot write ${options.out}`, {
          cause: err,
          hint:
            (err as NodeJS.ErrnoException).code === 'EEXIST'
              ? 'pass --force to replace it'
              : undefined,
        })
      }
      const value = { privateKey: options.out, publicKey: `${options.out}.pub` }
      printResult(
        options,
        value,
        () => `private key ${value.privateKey}\npublic key  ${value.publicKey}`,
      )
    })
}

function addConnectionOptions(command: Command): Command {
  return command
    .option(
      '--broker <url>',
      'broker URL: mqtt://, mqtts://, ws://, wss:// (env EDGESTAR_FLEET_BROKER)',
    )
    .option('--prefix <prefix>', 'topic prefix', 'edgestar')
    .option('--mqtt-version <4|5>', 'MQTT protocol version: 4 (3.1.1) or 5', '5')
    .option('--username <name>', 'broker user name')
    .option(
      '--password-file <file>',
      'file holding the broker password (env EDGESTAR_FLEET_PASSWORD)',
    )
    .option('--ca <file>', 'CA certificate(s) to trust for mqtts:// and wss://')
    .option('--cert <file>', 'client certificate for brokers that ask for one')
    .option('--cert-key <file>', 'key of the client certificate')
    .option('--json', 'print JSON lines for scripts')
}

function addSendOptions(command: Command): Command {
  return addConnectionOptions(command)
    .option('--device <id>', 'send to this device')
    .option('--group <group>', 'send to every device in this group')
    .option('--key <file>', 'sign with this Ed25519 private key (env EDGESTAR_FLEET_KEY)')
    .option('--timeout <seconds>', 'how long to wait for results', '30')
    .option('--expires-in <seconds>', 'devices refuse the command after this', '600')
    .option('--expect <n>', 'with --group: stop waiting after this many results')
    .option('--id <id>', 'command id (resend an id to get its stored result again)')
}

async function sendAndPrint(body: FleetCommandBody, options: SendCliOptions): Promise<void> {
  const target = targetFrom(options)
  const connection = connectionFrom(options)
  const keyFile = options.key ?? process.env.EDGESTAR_FLEET_KEY
  if (keyFile !== undefined)
    connection.signingKey = loadFleetPrivateKey(await readOption(keyFile, '--key'), keyFile)

  const client = await FleetClient.connect(connection)
  let results: CommandResult[]
  try {
    results = await client.send(target, body, {
      timeoutMs: seconds(options.timeout, '--timeout') * 1000,
      expiresInSec: seconds(options.expiresIn, '--expires-in'),
      ...(options.expect === undefined
        ? {}
        : { expectResults: seconds(options.expect, '--expect') }),
      ...(options.id === undefined ? {} : { id: options.id }),
    })
  } finally {
    await client.close()
  }

  const isOk = results.length > 0 && results.every((result) => result.ok)
  const value = 'device' in target ? results[0] : { ok: isOk, results }
  printResult(options, value, () => results.map(describeResult).join('\n') || 'no device answered')
  if (!isOk) process.exitCode = 1
}

function targetFrom(options: SendCliOptions): FleetTarget {
  if ((options.device === undefined) === (options.group === undefined))
    throw new EdgestarError(
      'EDGESTAR_CLI_USAGE',
      'give exactly one of --device ID or --group GROUP',
      {
        hint: 'edgestar fleet status --device ID --broker mqtt://HOST:1883',
      },
    )
  return options.device !== undefined ? { device: options.device } : { group: options.group! }
}

function connectionFrom(options: ConnectionOptions): FleetClientOptions {
  const url = options.broker ?? process.env.EDGESTAR_FLEET_BROKER
  if (url === undefined)
    throw new EdgestarError('EDGESTAR_CLI_USAGE', 'no broker given', {
      hint: 'pass --broker mqtt://HOST:1883 or set EDGESTAR_FLEET_BROKER',
    })
  const version = options.mqttVersion ?? '5'
  if (version !== '4' && version !== '5')
    throw new EdgestarError('EDGESTAR_CLI_USAGE', `--mqtt-version must be 4 or 5, not ${version}`)
  const connection: FleetClientOptions = {
    url,
    prefix: options.prefix ?? 'edgestar',
    protocolVersion: version === '4' ? 4 : 5,
  }
  if (options.username !== undefined) connection.username = options.username
  const password = passwordFrom(options)
  if (password !== undefined) connection.password = password
  if (options.ca !== undefined || options.cert !== undefined) {
    connection.tls = {}
    if (options.ca !== undefined) connection.tls.caFile = options.ca
    if (options.cert !== undefined) connection.tls.certFile = options.cert
    if (options.certKey !== undefined) connection.tls.keyFile = options.certKey
  }
  return connection
}

function passwordFrom(options: ConnectionOptions): string | undefined {
  if (options.passwordFile === undefined) return process.env.EDGESTAR_FLEET_PASSWORD
  // NOTE: read synchronously at start-up; a password file is a few bytes.
  try {
    return readFileSync(options.passwordFile, 'utf8').trim()
  } catch (err) {
    throw new EdgestarError(
      'EDGESTAR_CLI_USAGE',
      `cannot read --password-file ${options.passwordFile}`,
      {
        cause: err,
      },
    )
  }
}

async function readOption(path: string, option: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    throw new EdgestarError('EDGESTAR_CLI_USAGE', `cannot read ${option} ${path}`, {
      cause: err,
      hint: 'make a key pair with `edgestar fleet keygen --out FILE`',
    })
  }
}

function seconds(text: string, option: string): number {
  const value = Number(text)
  if (Number.isFinite(value) && value > 0) return value
  throw new EdgestarError('EDGESTAR_CLI_USAGE', `${option} must be a positive number, not ${text}`)
}

function parseEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {}
  for (const pair of pairs) {
    const at = pair.indexOf('=')
    if (at <= 0) throw new EdgestarError('EDGESTAR_CLI_USAGE', `--env ${pair} is not KEY=VALUE`)
    env[pair.slice(0, at)] = pair.slice(at + 1)
  }
  return env
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value]
}

function describeResult(result: CommandResult): string {
  if (!result.ok) return `${result.device}: failed ${result.error?.code}: ${result.error?.message}`
  if (typeof result.status === 'object' && result.status !== null)
    return describeMessage({
      device: result.device,
      kind: 'status',
      topic: '',
      body: result.status,
    })
  const { id: _id, ok: _ok, device, type, time: _time, duplicate, ...rest } = result
  const extra = Object.keys(rest).length === 0 ? '' : ` ${JSON.stringify(rest)}`
  return `${device}: ${type} ok${duplicate ? ' (answered before)' : ''}${extra}`
}

function describeMessage(message: FleetMessage): string {
  const body = message.body as Record<string, unknown>
  const time = typeof body.time === 'string' ? body.time : new Date().toISOString()
  if (message.kind === 'status') {
    if (body.online !== true)
      return `${time} ${message.device} offline (${body.reason ?? 'unknown'})`
    const deployments = (body.deployments as { name: string; state: string }[] | undefined) ?? []
    const list = deployments.map((d) => `${d.name}=${d.state}`).join(' ') || 'no deployments'
    const link = (body.link as { state?: string } | undefined)?.state ?? '?'
    return `${time} ${message.device} online link=${link} ${list}`
  }
  if (message.kind === 'events') {
    const { device: _d, time: _t, msgId: _m, type, ...rest } = body
    return `${time} ${message.device} ${type} ${JSON.stringify(rest)}`
  }
  return `${time} ${message.device} ${message.kind} ${JSON.stringify(body)}`
}
