import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { MqttBridge, messageSchemas } from '../../src/mqtt/index.js'
import { Store } from '../../src/store/index.js'
import { TestBroker } from '../helpers/broker.js'
import { FakeController } from './fake-controller.js'

const execFileAsync = promisify(execFile)
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const CLI = join(ROOT, 'bin', 'edgestar')

interface Outcome {
  code: number
  stdout: string
  stderr: string
}

/** Runs `edgestar ARGS`; never throws on a non-zero exit. */
async function run(args: string[]): Promise<Outcome> {
  try {
    const { stdout, stderr } = await execFileAsync(CLI, args)
    return { code: 0, stdout, stderr }
  } catch (err) {
    const failed = err as { code: number; stdout: string; stderr: string }
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr }
  }
}

/** Runs `edgestar ARGS --json` (--json before a `--`); returns exit code and parsed output. */
async function edgestar(args: string[]): Promise<{ code: number; out: Record<string, unknown> }> {
  const end = args.includes('--') ? args.indexOf('--') : args.length
  const outcome = await run([...args.slice(0, end), '--json', ...args.slice(end)])
  assert.ok(outcome.stdout, `edgestar ${args.join(' ')} printed nothing: ${outcome.stderr}`)
  return { code: outcome.code, out: JSON.parse(outcome.stdout) as Record<string, unknown> }
}

/** The long option names `edgestar ARGS --help` lists. */
async function helpFlags(args: string[]): Promise<string[]> {
  const { stdout } = await run([...args, '--help'])
  return [...stdout.matchAll(/^\s+(?:-\w, )?(--[a-z0-9-]+)/gm)].map((m) => m[1] as string)
}

describe('edgestar fleet', () => {
  let broker: TestBroker
  let dir: string
  let store: Store
  let bridge: MqttBridge
  const controller = new FakeController()
  const deviceId = `cli-${randomUUID().slice(0, 8)}`

  before(async () => {
    broker = await TestBroker.start()
    dir = await mkdtemp(join(tmpdir(), 'edgestar-fleet-cli-'))
    const keygen = await edgestar(['fleet', 'keygen', '--out', join(dir, 'fleet.key')])
    assert.equal(keygen.out.publicKey, join(dir, 'fleet.key.pub'))

    store = Store.open(join(dir, 'state'))
    bridge = new MqttBridge(
      {
        url: broker.url,
        deviceId,
        groups: ['lab'],
        telemetryIntervalMs: 0,
        fleetPublicKey: await readFile(join(dir, 'fleet.key.pub'), 'utf8'),
        diskPath: dir,
      },
      controller,
      store,
    )
    await bridge.start()
  })

  after(async () => {
    await bridge?.stop()
    store?.close()
    await broker?.close()
    await rm(dir, { recursive: true, force: true })
  })

  /** `args` sent to the test broker and signed with the fleet key. */
  const signed = (args: string[]): string[] => [
    ...args,
    ...['--mqtt-url', broker.url, '--mqtt-fleet-key-file', join(dir, 'fleet.key')],
  ]

  test('deploy with a signing key runs on the device and prints its result', async () => {
    const args = ['fleet', 'deploy', 'web', 'reg/app:1', '--env', 'A=1', '--device-id', deviceId]
    const { code, out } = await edgestar(signed(args))
    assert.equal(code, 0)
    assert.equal(out.ok, true)
    assert.ok(messageSchemas().validate('result', out).ok)
    assert.deepEqual(controller.calls.at(-1), {
      method: 'deploy',
      arg: { name: 'web', image: 'reg/app:1', env: { A: '1' }, update: false },
    })
  })

  test('deploy carries every option of the local deploy to the device', async () => {
    const args = [
      ...['fleet', 'deploy', 'full', 'reg/app:2', '--device-id', deviceId],
      ...['--env', 'A=1', '--restart', 'on-failure', '--network', 'none'],
      ...['--bind', '/srv/conf:/etc/app:ro', '--bind', '/var/data:/data'],
      ...['--workdir', '/app', '--user', '1000:1000', '--init', '--update'],
    ]
    const command = ['--', 'python3', '/app/run.py', '--fast']
    const { code, out } = await edgestar([...signed(args), ...command])
    assert.equal(code, 0, JSON.stringify(out))
    assert.deepEqual(controller.calls.at(-1), {
      method: 'deploy',
      arg: {
        name: 'full',
        image: 'reg/app:2',
        command: ['python3', '/app/run.py', '--fast'],
        env: { A: '1' },
        restart: 'on-failure',
        network: 'none',
        binds: [
          { source: '/srv/conf', target: '/etc/app', readOnly: true },
          { source: '/var/data', target: '/data', readOnly: false },
        ],
        workingDir: '/app',
        user: '1000:1000',
        init: true,
        update: true,
      },
    })
  })

  test('deploy without --update refuses a name that exists and prints the hint', async () => {
    const args = signed(['fleet', 'deploy', 'web', 'reg/app:3', '--device-id', deviceId])
    const json = await edgestar(args)
    assert.equal(json.code, 1)
    assert.equal(json.out.ok, false)
    assert.deepEqual(json.out.error, {
      code: 'EDGESTAR_AGENT_NAME_TAKEN',
      message: 'a deployment named "web" already exists',
      hint: 'deploy with --update to move it to a new image',
    })
    assert.ok(messageSchemas().validate('result', json.out).ok)

    const text = await run(args)
    assert.equal(text.code, 1)
    assert.match(text.stderr, /^error EDGESTAR_AGENT_NAME_TAKEN: .*"web"/m)
    assert.match(text.stderr, /^hint: deploy with --update/m)

    const updated = await edgestar(
      signed([...args.slice(0, 4), '--device-id', deviceId, '--update']),
    )
    assert.equal(updated.code, 0, JSON.stringify(updated.out))
  })

  test('deploy refuses a bad --network or --bind before sending anything', async () => {
    const calls = controller.calls.length
    for (const bad of [
      ['--network', 'bridge'],
      ['--restart', 'sometimes'],
      ['--bind', 'data:/data'],
    ]) {
      const args = ['fleet', 'deploy', 'x', 'reg/app:1', '--device-id', deviceId, ...bad]
      const { code, out } = await edgestar(signed(args))
      assert.equal(code, 1)
      assert.equal((out.error as { code: string }).code, 'EDGESTAR_CLI_BAD_OPTION', bad.join(' '))
    }
    assert.equal(controller.calls.length, calls)
  })

  test('the old option names (--broker, --key, --device, --prefix) still work', async () => {
    const args = ['fleet', 'gc', '--device', deviceId, '--broker', broker.url]
    const { code, out } = await edgestar([
      ...args,
      ...['--key', join(dir, 'fleet.key'), '--prefix', 'edgestar'],
    ])
    assert.equal(code, 0, JSON.stringify(out))
    assert.equal(out.device, deviceId)
  })

  test('--help shows the names the agent uses, and not the old ones', async () => {
    const agent = await helpFlags(['agent'])
    for (const command of [
      ['fleet', 'deploy'],
      ['fleet', 'gc'],
      ['fleet', 'watch'],
    ]) {
      const flags = await helpFlags(command)
      for (const old of ['--broker', '--key', '--device', '--prefix', '--ca', '--cert'])
        assert.ok(!flags.includes(old), `${command.join(' ')} --help lists ${old}`)
      const mqtt = flags.filter((flag) => flag.startsWith('--mqtt-') && flag !== '--mqtt-version')
      assert.ok(mqtt.includes('--mqtt-url'))
      for (const flag of [...mqtt, '--device-id'])
        assert.ok(agent.includes(flag), `${flag} of ${command.join(' ')} is not the agent's`)
    }
    for (const old of ['--mqtt-device-id', '--mqtt-group'])
      assert.ok(!agent.includes(old), `agent --help lists ${old}`)
    assert.ok(agent.includes('--group'))

    const local = await helpFlags(['deploy'])
    const fleet = await helpFlags(['fleet', 'deploy'])
    const spec = ['--env', '--restart', '--network', '--bind', '--workdir', '--user', '--init']
    for (const flag of [...spec, '--update'])
      assert.ok(local.includes(flag) && fleet.includes(flag), flag)
  })

  test('asking again with the same --id returns the stored result without running it', async () => {
    const args = signed(['fleet', 'gc', '--device-id', deviceId, '--id', 'cli-gc-1'])
    const gcCalls = controller.count('gc')
    const first = await edgestar(args)
    const again = await edgestar(args)
    assert.equal(first.out.ok, true)
    assert.equal(again.out.duplicate, true)
    assert.equal(controller.count('gc'), gcCalls + 1)
  })

  test('an unsigned command is refused by a device that has a fleet key', async () => {
    const gcCalls = controller.count('gc')
    const args = ['fleet', 'gc', '--device-id', deviceId, '--mqtt-url', broker.url]
    const { code, out } = await edgestar(args)
    assert.equal(code, 1)
    assert.equal((out.error as { code: string }).code, 'EDGESTAR_MQTT_COMMAND_UNSIGNED')
    assert.match((out.error as { hint: string }).hint, /--mqtt-fleet-key-file/)
    assert.equal(controller.count('gc'), gcCalls)
  })

  test('a group command collects the results of the group', async () => {
    const args = ['fleet', 'bandwidth', '1MiB', '--group', 'lab', '--expect', '1']
    const { code, out } = await edgestar(signed(args))
    assert.equal(code, 0)
    const results = out.results as { device: string; ok: boolean }[]
    assert.deepEqual(
      results.map((r) => [r.device, r.ok]),
      [[deviceId, true]],
    )
    assert.equal(controller.capBytesPerSec, 1024 * 1024)
  })

  test('a group command that fails on a device sums up the failure with its hint', async () => {
    const args = ['fleet', 'stop', 'nothing', '--group', 'lab', '--expect', '1']
    const { code, out } = await edgestar(signed(args))
    assert.equal(code, 1)
    assert.equal(out.ok, false)
    const error = out.error as { code: string; message: string; hint: string }
    assert.equal(error.code, 'EDGESTAR_AGENT_NO_SUCH_DEPLOYMENT')
    assert.match(error.message, new RegExp(`1 of 1 devices of group lab failed: ${deviceId}`))
    assert.equal(error.hint, 'edgestar ps lists the deployments')

    const text = await run(signed(args))
    assert.equal(text.code, 1)
    assert.match(text.stdout, /stop failed EDGESTAR_AGENT_NO_SUCH_DEPLOYMENT/)
    assert.match(text.stdout, /^ {2}hint: edgestar ps lists/m)
    assert.match(text.stderr, /^hint: edgestar ps lists/m)
  })

  test('watch prints status and events as JSON lines', async () => {
    const watcher = spawn(CLI, ['fleet', 'watch', '--mqtt-url', broker.url, '--json'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    try {
      const lines = createInterface({ input: watcher.stdout })
      const seen: { kind: string; device: string }[] = []
      for await (const line of lines) {
        const message = JSON.parse(line) as { ok: boolean; kind: string; device: string }
        assert.equal(message.ok, true)
        seen.push(message)
        // The retained status arrives at once; then an event we cause.
        if (message.kind === 'status') controller.fault(1)
        if (message.kind === 'events') break
      }
      assert.equal(seen[0]?.kind, 'status')
      assert.equal(seen[0]?.device, deviceId)
    } finally {
      watcher.kill('SIGTERM')
    }
  })
})
