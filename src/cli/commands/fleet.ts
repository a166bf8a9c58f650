import { randomUUID } from 'node:crypto'
import { chmod, readFile, writeFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { EdgestarError } from '../../errors.js'
import { parseByteSize } from '../../fetch/index.js'
import {
  type CommandResult,
  FleetClient,
  type FleetCommandBody,
  type FleetTarget,
  generateFleetKeyPair,
  loadFleetPrivateKey,
} from '../../mqtt/index.js'
import { addDeploySpecOptions, type DeploySpecOptions, deploySpecFrom } from '../deploy-spec.js'
import {
  addConnectionOptions,
  addSendOptions,
  type ConnectionOptions,
  connectionFrom,
  type SendCliOptions,
  targetFrom,
} from '../fleet-options.js'
import { describeMessage, describeResult, groupOutcome } from '../fleet-output.js'
import { addHiddenAlias } from '../options.js'
import { printErrorText, printResult } from '../output.js'

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
    .description(
      'deploy an image on the device(s), with the options of `edgestar deploy`; answers ' +
        "once the container started. A command after -- replaces the image's entrypoint and command.",
    )
    .argument('<name>', 'deployment name (a-z 0-9 . _ -)')
    .argument('<image>', 'image reference')
    .argument('[command...]', 'command and arguments to run instead of the image default')
  addSendOptions(addDeploySpecOptions(deploy)).action(
    async (
      name: string,
      image: string,
      command: string[],
      options: SendCliOptions & DeploySpecOptions,
    ) => {
      // `update` always goes out, so a name that exists is refused without --update,
      // as `edgestar deploy` refuses it (a command without the field upserts).
      const body: FleetCommandBody = {
        type: 'deploy',
        name,
        image,
        ...deploySpecFrom(options, command),
        update: options.update === true,
      }
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
    .option('--device-id <id>', 'only this device')
    .option('--telemetry', 'also print telemetry')
  addHiddenAlias(watch, '--device <id>', 'deviceId')
  addConnectionOptions(watch).action(
    async (options: ConnectionOptions & { deviceId?: string; telemetry?: boolean }) => {
      const client = await FleetClient.connect(connectionFrom(options))
      await client.watch({ device: options.deviceId, telemetry: options.telemetry }, (message) =>
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

async function sendAndPrint(body: FleetCommandBody, options: SendCliOptions): Promise<void> {
  const target = targetFrom(options)
  const connection = connectionFrom(options)
  const keyFile = options.mqttFleetKeyFile ?? (process.env.EDGESTAR_FLEET_KEY || undefined)
  if (keyFile !== undefined)
    connection.signingKey = loadFleetPrivateKey(
      await readOption(keyFile, '--mqtt-fleet-key-file'),
      keyFile,
    )
  // The id is chosen here, so a group that does not answer can be asked again with it.
  const id = options.id ?? randomUUID()
  const timeoutSec = seconds(options.timeout, '--timeout')

  const client = await FleetClient.connect(connection)
  let results: CommandResult[]
  try {
    results = await client.send(target, body, {
      id,
      timeoutMs: timeoutSec * 1000,
      expiresInSec: seconds(options.expiresIn, '--expires-in'),
      ...(options.expect === undefined
        ? {}
        : { expectResults: seconds(options.expect, '--expect') }),
    })
  } finally {
    await client.close()
  }
  printResults(options, target, results, { id, timeoutSec })
}

/**
 * One device: its result (`ok`, or `error` with code, message, hint). A group: `{ok,
 * results}` plus an `error` summing up the failures. Text: one line per device on stdout,
 * failures as `error CODE: ...` and `hint: ...` on stderr. Exit code 1 unless all ok.
 */
function printResults(
  options: SendCliOptions,
  target: FleetTarget,
  results: CommandResult[],
  command: { id: string; timeoutSec: number },
): void {
  const value = 'device' in target ? results[0] : groupOutcome(target.group, results, command)
  if (value === undefined) throw new Error('a device target resolved without a result')
  if (options.json) printResult(options, value, () => '')
  else {
    const lines = results.filter((r) => r.ok || !('device' in target)).map(describeResult)
    if (lines.length > 0) process.stdout.write(`${lines.join('\n')}\n`)
    if (value.error !== undefined) printErrorText(value.error)
  }
  if (!value.ok) process.exitCode = 1
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
