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

/** Runs `edgestar ARGS --json`; returns the exit code and the parsed JSON output. */
async function edgestar(args: string[]): Promise<{ code: number; out: Record<string, unknown> }> {
  try {
    const { stdout } = await execFileAsync(CLI, [...args, '--json'])
    return { code: 0, out: JSON.parse(stdout) as Record<string, unknown> }
  } catch (err) {
    const failed = err as { code: number; stdout: string; stderr: string }
    assert.ok(failed.stdout, `edgestar ${args.join(' ')} printed nothing: ${failed.stderr}`)
    return { code: failed.code, out: JSON.parse(failed.stdout) as Record<string, unknown> }
  }
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
    ...['--broker', broker.url, '--key', join(dir, 'fleet.key')],
  ]

  test('deploy with a signing key runs on the device and prints its result', async () => {
    const args = ['fleet', 'deploy', 'web', 'reg/app:1', '--env', 'A=1', '--device', deviceId]
    const { code, out } = await edgestar(signed(args))
    assert.equal(code, 0)
    assert.equal(out.ok, true)
    assert.ok(messageSchemas().validate('result', out).ok)
    assert.deepEqual(controller.calls.at(-1), {
      method: 'deploy',
      arg: { name: 'web', image: 'reg/app:1', env: { A: '1' } },
    })
  })

  test('asking again with the same --id returns the stored result without running it', async () => {
    const args = signed(['fleet', 'gc', '--device', deviceId, '--id', 'cli-gc-1'])
    const first = await edgestar(args)
    const again = await edgestar(args)
    assert.equal(first.out.ok, true)
    assert.equal(again.out.duplicate, true)
    assert.equal(controller.count('gc'), 1)
  })

  test('an unsigned command is refused by a device that has a fleet key', async () => {
    const gcCalls = controller.count('gc')
    const args = ['fleet', 'gc', '--device', deviceId, '--broker', broker.url]
    const { code, out } = await edgestar(args)
    assert.equal(code, 1)
    assert.equal((out.error as { code: string }).code, 'EDGESTAR_MQTT_COMMAND_UNSIGNED')
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

  test('watch prints status and events as JSON lines', async () => {
    const watcher = spawn(CLI, ['fleet', 'watch', '--broker', broker.url, '--json'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    try {
      const lines = createInterface({ input: watcher.stdout })
      const seen: { kind: string; device: string }[] = []
      for await (const line of lines) {
        const message = JSON.parse(line) as { kind: string; device: string }
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
