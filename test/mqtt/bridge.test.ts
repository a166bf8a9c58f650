import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import {
  type BridgeStore,
  generateFleetKeyPair,
  loadFleetPrivateKey,
  MqttBridge,
  type MqttBridgeOptions,
  messageSchemas,
  signCommand,
} from '../../src/mqtt/index.js'
import { Store } from '../../src/store/index.js'
import { TestBroker } from '../helpers/broker.js'
import { recordMainThreadSql } from '../helpers/main-thread-sql.js'
import { FakeController } from './fake-controller.js'
import { Observer } from './observer.js'

const schemas = messageSchemas()

/** A bridge with a fake controller and a real store in a temp dir, against `broker`. */
async function startDevice(
  broker: TestBroker,
  options: Partial<MqttBridgeOptions> = {},
): Promise<{
  bridge: MqttBridge
  controller: FakeController
  store: Store
  close(): Promise<void>
}> {
  const dir = await mkdtemp(join(tmpdir(), 'edgestar-mqtt-'))
  const store = Store.open(dir)
  const bridgeStore: BridgeStore = store
  const controller = new FakeController()
  const bridge = new MqttBridge(
    {
      url: broker.url,
      deviceId: `dev-${randomUUID().slice(0, 8)}`,
      telemetryIntervalMs: 0,
      keepaliveSec: 3,
      reconnect: { minMs: 100, maxMs: 400 },
      outbox: { publishPerSec: 500, publishBytesPerSec: 1 << 20 },
      diskPath: dir,
      ...options,
    },
    controller,
    bridgeStore,
  )
  await bridge.start()
  await waitForState(bridge, 'online')
  return {
    bridge,
    controller,
    store,
    async close() {
      await bridge.stop()
      store.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

function waitForState(bridge: MqttBridge, state: string): Promise<void> {
  if (bridge.state === state) return Promise.resolve()
  return new Promise((resolve) => {
    const listener = (now: string): void => {
      if (now !== state) return
      bridge.off('state', listener)
      resolve()
    }
    bridge.on('state', listener)
  })
}

function assertValid(kind: 'command' | 'result' | 'status' | 'telemetry' | 'event', body: unknown) {
  const outcome = schemas.validate(kind, body)
  assert.ok(
    outcome.ok,
    `${kind} invalid: ${outcome.ok ? '' : outcome.message} in ${JSON.stringify(body)}`,
  )
}

/** A broker and an observer on `edgestar/#` for one describe block, stopped after it. */
function sharedBroker(): { broker: TestBroker; observer: Observer } {
  const env = {} as { broker: TestBroker; observer: Observer }
  before(async () => {
    env.broker = await TestBroker.start()
    env.observer = await Observer.connect(env.broker.url, 'edgestar/#')
  })
  after(async () => {
    await env.observer?.close()
    await env.broker?.close()
  })
  return env
}

describe('MqttBridge against Mosquitto', () => {
  const env = sharedBroker()

  test('a deploy command runs and its result, status, events and telemetry validate', async () => {
    const device = await startDevice(env.broker)
    try {
      const { topics } = device.bridge
      const command = {
        id: 'deploy-1',
        type: 'deploy',
        name: 'web',
        image: 'reg/app:1',
        env: { A: '1' },
      }
      assertValid('command', command)
      await env.observer.publish(topics.command, command)

      const result = await env.observer.result(topics.result, 'deploy-1')
      assert.equal(result.ok, true)
      assert.deepEqual(result.deployment, { name: 'web', state: 'running' })
      assertValid('result', result)

      const status = await env.observer.waitFor('status with web running', () =>
        env.observer.seen.find(
          (m) =>
            m.topic === topics.status &&
            JSON.stringify((m.body as { deployments?: unknown }).deployments)?.includes('running'),
        ),
      )
      assertValid('status', status.body)
      assert.equal((status.body as { online: boolean }).online, true)

      const events = await env.observer.waitFor('two state events', () => {
        const found = env.observer.bodies(topics.events)
        return found.length >= 2 ? found : undefined
      })
      for (const event of events) assertValid('event', event)
      assert.deepEqual(
        events.map((e) => e.state),
        ['pending', 'running'],
      )

      await device.bridge.publishTelemetry()
      const telemetry = await env.observer.waitFor(
        'telemetry',
        () => env.observer.bodies(topics.telemetry)[0],
      )
      assertValid('telemetry', telemetry)
      assert.equal((telemetry.deployments as unknown[]).length, 1)
      assert.equal(device.controller.count('deploy'), 1)
    } finally {
      await device.close()
    }
  })

  test('runs no SQLite statement on the event loop for commands, results, events and telemetry', async () => {
    const device = await startDevice(env.broker)
    const statements = recordMainThreadSql()
    try {
      const { topics } = device.bridge
      const deploy = { id: 'quiet-1', type: 'deploy', name: 'web', image: 'reg/app:1' }
      await env.observer.publish(topics.command, deploy)
      assert.equal((await env.observer.result(topics.result, 'quiet-1')).ok, true)
      await env.observer.publish(topics.command, deploy)
      await env.observer.waitFor('the repeat answered from the log', () =>
        env.observer.bodies(topics.result).find((r) => r.id === 'quiet-1' && r.duplicate),
      )
      await env.observer.publish(topics.command, { id: 'quiet-2', type: 'status' })
      await env.observer.result(topics.result, 'quiet-2')
      await device.bridge.publishTelemetry()
      await env.observer.waitFor('two events and telemetry', () =>
        env.observer.bodies(topics.events).length >= 2 &&
        env.observer.bodies(topics.telemetry).length >= 1
          ? true
          : undefined,
      )
      for (;;) {
        const stats = await device.store.outbox.statsAsync()
        if (stats.messages === 0) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }

      assert.deepEqual(statements.seen, [], 'no SQLite on the event loop')
      assert.equal(device.controller.count('deploy'), 1)
    } finally {
      statements.restore()
      await device.close()
    }
  })

  test('publishes telemetry periodically', async () => {
    const device = await startDevice(env.broker, { telemetryIntervalMs: 200 })
    try {
      const samples = await env.observer.waitFor('two telemetry samples', () => {
        const found = env.observer.bodies(device.bridge.topics.telemetry)
        return found.length >= 2 ? found : undefined
      })
      for (const sample of samples) assertValid('telemetry', sample)
      assert.notEqual(samples[0]?.msgId, samples[1]?.msgId)
    } finally {
      await device.close()
    }
  })

  test('a repeated command id runs once and is answered from the stored result', async () => {
    const device = await startDevice(env.broker)
    try {
      const { topics } = device.bridge
      const command = { id: 'repeat-1', type: 'deploy', name: 'web', image: 'reg/app:1' }
      await env.observer.publish(topics.command, command)
      await env.observer.result(topics.result, 'repeat-1')
      // The same PUBLISH again, as a QoS 1 redelivery or a retained command would be.
      await env.observer.publish(topics.command, command, { dup: true })
      const second = await env.observer.result(topics.result, 'repeat-1', 2)
      assert.equal(second.ok, true)
      assert.equal(second.duplicate, true)
      assertValid('result', second)
      assert.equal(device.controller.count('deploy'), 1)
    } finally {
      await device.close()
    }
  })

  test('a command repeated while it runs gets one result', async () => {
    const device = await startDevice(env.broker)
    let open = (): void => {}
    device.controller.gate = new Promise((resolve) => {
      open = resolve
    })
    try {
      const { topics } = device.bridge
      const command = { id: 'slow-1', type: 'deploy', name: 'web', image: 'reg/app:1' }
      await env.observer.publish(topics.command, command)
      await env.observer.waitFor(
        'deploy started',
        () => device.controller.count('deploy') === 1 || undefined,
      )
      await env.observer.publish(topics.command, command, { dup: true })
      // The device reads its command topic in order and answers `status` at once, so
      // this answer means the repeat was handled while the deploy still ran.
      await env.observer.publish(topics.command, { id: 'probe-1', type: 'status' })
      await env.observer.result(topics.result, 'probe-1')
      assert.equal(env.observer.bodies(topics.result).filter((r) => r.id === 'slow-1').length, 0)

      open()
      const result = await env.observer.result(topics.result, 'slow-1')
      assert.equal(result.ok, true)
      assert.equal(result.duplicate, undefined)
      assert.equal(device.controller.count('deploy'), 1)
    } finally {
      open()
      await device.close()
    }
  })

  test('a slow deploy does not hold up bandwidth or commands on other deployments', async () => {
    const device = await startDevice(env.broker)
    let open = (): void => {}
    device.controller.gate = new Promise((resolve) => {
      open = resolve
    })
    try {
      const { topics } = device.bridge
      await env.observer.publish(topics.command, {
        id: 'slow-2',
        type: 'deploy',
        name: 'big',
        image: 'reg/big:1',
      })
      await env.observer.publish(topics.command, {
        id: 'cap-2',
        type: 'bandwidth',
        capBytesPerSec: 512,
      })
      const cap = await env.observer.result(topics.result, 'cap-2')
      assert.equal(cap.ok, true)
      assert.equal(env.observer.bodies(topics.result).filter((r) => r.id === 'slow-2').length, 0)
      open()
      assert.equal((await env.observer.result(topics.result, 'slow-2')).ok, true)
    } finally {
      open()
      await device.close()
    }
  })

  test('a command cut short by a restart is answered as interrupted, not run again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgestar-mqtt-'))
    const store = Store.open(dir)
    const deviceId = `dev-${randomUUID().slice(0, 8)}`
    const options = { url: env.broker.url, deviceId, telemetryIntervalMs: 0, diskPath: dir }
    const first = new FakeController()
    first.gate = new Promise(() => {})
    const crashed = new MqttBridge(options, first, store)
    await crashed.start()
    await waitForState(crashed, 'online')
    const second = new FakeController()
    const restarted = new MqttBridge(options, second, store)
    try {
      const command = { id: 'cut-1', type: 'deploy', name: 'web', image: 'reg/app:1' }
      await env.observer.publish(crashed.topics.command, command)
      await env.observer.waitFor('deploy started', () => first.count('deploy') === 1 || undefined)
      await crashed.stop()

      await restarted.start()
      await waitForState(restarted, 'online')
      await env.observer.publish(restarted.topics.command, command)
      const result = await env.observer.result(restarted.topics.result, 'cut-1')
      assert.equal((result.error as { code: string }).code, 'EDGESTAR_MQTT_COMMAND_INTERRUPTED')
      assert.equal(result.duplicate, true)
      assertValid('result', result)
      assert.equal(second.count('deploy'), 0)
    } finally {
      await restarted.stop()
      store.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  test('refuses an expired command without running it', async () => {
    const device = await startDevice(env.broker)
    try {
      const { topics } = device.bridge
      const expiresAt = new Date(Date.now() - 1000).toISOString()
      await env.observer.publish(topics.command, { id: 'old-1', type: 'gc', expiresAt })
      const result = await env.observer.result(topics.result, 'old-1')
      assert.equal(result.ok, false)
      assert.equal((result.error as { code: string }).code, 'EDGESTAR_MQTT_COMMAND_EXPIRED')
      assertValid('result', result)
      assert.equal(device.controller.count('gc'), 0)
    } finally {
      await device.close()
    }
  })

  test('answers malformed payloads with an error result, with a hint, and keeps working', async () => {
    const device = await startDevice(env.broker)
    try {
      const { topics } = device.bridge
      await env.observer.publish(topics.command, '{not json')
      const garbage = await env.observer.result(topics.result, null)
      assert.equal((garbage.error as { code: string }).code, 'EDGESTAR_MQTT_COMMAND_MALFORMED')
      assertValid('result', garbage)

      await env.observer.publish(topics.command, { id: 'bad-1', type: 'deploy', name: 'Bad Name!' })
      const invalid = await env.observer.result(topics.result, 'bad-1')
      assert.equal((invalid.error as { code: string }).code, 'EDGESTAR_MQTT_COMMAND_INVALID')
      assert.match((invalid.error as { hint: string }).hint, /command\.schema\.json/)
      assertValid('result', invalid)

      await env.observer.publish(topics.command, { id: 'bad-2', type: 'stop', name: 'nothing' })
      const failed = await env.observer.result(topics.result, 'bad-2')
      assert.deepEqual(failed.error, {
        code: 'EDGESTAR_AGENT_NO_SUCH_DEPLOYMENT',
        message: 'no deployment named nothing',
        hint: 'edgestar ps lists the deployments',
      })
      assertValid('result', failed)

      await env.observer.publish(topics.command, {
        id: 'good-1',
        type: 'bandwidth',
        capBytesPerSec: 1000,
      })
      const good = await env.observer.result(topics.result, 'good-1')
      assert.equal(good.ok, true)
      assert.equal(device.controller.capBytesPerSec, 1000)
    } finally {
      await device.close()
    }
  })

  test('runs only commands signed by the fleet key for this device', async () => {
    const keys = generateFleetKeyPair()
    const privateKey = loadFleetPrivateKey(keys.privateKeyPem, 'test key')
    const other = loadFleetPrivateKey(generateFleetKeyPair().privateKeyPem, 'other key')
    const device = await startDevice(env.broker, { fleetPublicKey: keys.publicKeyPem })
    try {
      const { topics } = device.bridge
      const target = `device/${device.bridge.deviceId}`

      await env.observer.publish(topics.command, { id: 'unsigned-1', type: 'gc', target })
      const unsigned = await env.observer.result(topics.result, 'unsigned-1')
      assert.equal((unsigned.error as { code: string }).code, 'EDGESTAR_MQTT_COMMAND_UNSIGNED')

      await env.observer.publish(
        topics.command,
        signCommand({ id: 'forged-1', type: 'gc', target }, other),
      )
      const forged = await env.observer.result(topics.result, 'forged-1')
      assert.equal((forged.error as { code: string }).code, 'EDGESTAR_MQTT_SIGNATURE_INVALID')

      const tampered = {
        ...signCommand({ id: 'tamper-1', type: 'gc', target }, privateKey),
        id: 'tamper-2',
      }
      await env.observer.publish(topics.command, tampered)
      const tamperedResult = await env.observer.result(topics.result, 'tamper-2')
      assert.equal(
        (tamperedResult.error as { code: string }).code,
        'EDGESTAR_MQTT_SIGNATURE_INVALID',
      )

      const elsewhere = signCommand(
        { id: 'replay-1', type: 'gc', target: 'device/other' },
        privateKey,
      )
      await env.observer.publish(topics.command, elsewhere)
      const replay = await env.observer.result(topics.result, 'replay-1')
      assert.equal((replay.error as { code: string }).code, 'EDGESTAR_MQTT_COMMAND_WRONG_TARGET')

      await env.observer.publish(
        topics.command,
        signCommand({ id: 'signed-1', type: 'gc', target }, privateKey),
      )
      const signed = await env.observer.result(topics.result, 'signed-1')
      assert.equal(signed.ok, true)
      assert.equal(device.controller.count('gc'), 1)

      const refusals = await env.observer.waitFor('four refusal events', () => {
        const found = env.observer.bodies(topics.events).filter((e) => e.type === 'command-refused')
        return found.length >= 4 ? found : undefined
      })
      for (const event of refusals) assertValid('event', event)
      assert.deepEqual(
        refusals.map((e) => e.commandId),
        ['unsigned-1', 'forged-1', 'tamper-2', 'replay-1'],
      )
    } finally {
      await device.close()
    }
  })

  test('honours the MQTT 5 response topic and correlation data', async () => {
    const device = await startDevice(env.broker)
    try {
      const replyTopic = `edgestar/replies/${randomUUID()}`
      const correlationData = Buffer.from('corr-42')
      await env.observer.publish(
        device.bridge.topics.command,
        { id: 'rt-1', type: 'status' },
        { properties: { responseTopic: replyTopic, correlationData } },
      )
      const reply = await env.observer.waitFor('reply', () =>
        env.observer.seen.find((m) => m.topic === replyTopic),
      )
      assert.equal((reply.body as { ok: boolean }).ok, true)
      assertValid('status', (reply.body as { status: unknown }).status)
      assert.deepEqual(reply.correlationData, correlationData)
      assert.equal(env.observer.bodies(device.bridge.topics.result).length, 0)
    } finally {
      await device.close()
    }
  })

  test('takes group commands only for its own groups', async () => {
    const device = await startDevice(env.broker, { groups: ['north'] })
    try {
      const { topics } = device.bridge
      await env.observer.publish('edgestar/group/south/cmd', { id: 'south-1', type: 'gc' })
      await env.observer.publish('edgestar/group/north/cmd', {
        id: 'north-1',
        type: 'gc',
        target: 'group/north',
      })
      const result = await env.observer.result(topics.result, 'north-1')
      assert.equal(result.ok, true)
      assert.equal(device.controller.count('gc'), 1)
      assert.equal(env.observer.bodies(topics.result).filter((r) => r.id === 'south-1').length, 0)
    } finally {
      await device.close()
    }
  })
})

describe('MqttBridge when the broker goes away', () => {
  const env = sharedBroker()

  test('events produced while the broker is down all arrive, in order, once; status is current', async () => {
    const device = await startDevice(env.broker)
    try {
      const { topics } = device.bridge
      await env.observer.publish(topics.command, {
        id: 'down-1',
        type: 'deploy',
        name: 'web',
        image: 'a:1',
      })
      await env.observer.result(topics.result, 'down-1')

      await env.broker.stop()
      await waitForState(device.bridge, 'offline')
      for (let n = 0; n < 30; n++) device.controller.fault(n)
      await device.controller.stop('web')
      await device.bridge.whenQueued()
      assert.ok(device.store.outbox.stats().messages >= 31)

      await env.broker.start()
      await waitForState(device.bridge, 'online')
      const faults = await env.observer.waitFor('30 faults and the stop', () => {
        const events = env.observer.bodies(topics.events)
        return events.some((e) => e.state === 'stopped') ? events : undefined
      })
      const messages = [...new Map(faults.map((e) => [e.msgId, e])).values()]
        .filter((e) => e.type === 'fault')
        .map((e) => e.message)
      assert.deepEqual(
        messages,
        Array.from({ length: 30 }, (_, n) => `fault ${n}`),
      )
      // A subscriber may see a repeat when the broker dies before it records the
      // subscriber's PUBACK; the device itself must have sent each event once.
      const distinct = new Set(faults.map((e) => e.msgId)).size
      const sent = await env.broker.publishesReceived(
        `edgestar-${device.bridge.deviceId}`,
        topics.events,
      )
      assert.equal(sent, distinct, 'the device published an event twice')

      const status = await env.observer.waitFor('status with web stopped', () =>
        env.observer
          .bodies(topics.status)
          .findLast((s) => JSON.stringify(s.deployments)?.includes('stopped')),
      )
      assertValid('status', status)
      await env.observer.waitFor(
        'outbox drained',
        () => device.store.outbox.stats().messages === 0 || undefined,
      )
    } finally {
      await device.close()
    }
  })

  test('a change of the registry link state republishes the retained status', async () => {
    const device = await startDevice(env.broker)
    try {
      const { topics } = device.bridge
      const linkStates = (): unknown[] =>
        env.observer.bodies(topics.status).map((s) => (s.link as { state?: string })?.state)
      await env.observer.waitFor('status on connect', () =>
        linkStates().includes('online') ? true : undefined,
      )

      // No deployment changes: only the link does.
      device.controller.setLink('degraded')
      const status = await env.observer.waitFor('status with the link degraded', () =>
        env.observer
          .bodies(topics.status)
          .findLast((s) => (s.link as { state?: string })?.state === 'degraded'),
      )
      assertValid('status', status)
      device.controller.setLink('offline')
      await env.observer.waitFor('status with the link offline', () =>
        linkStates().includes('offline') ? true : undefined,
      )
    } finally {
      await device.close()
    }
  })

  test('a full outbox drops the oldest telemetry first and reports the loss', async () => {
    const device = await startDevice(env.broker, { outbox: { maxCount: 6, publishPerSec: 500 } })
    try {
      const { topics } = device.bridge
      await env.broker.stop()
      await waitForState(device.bridge, 'offline')
      device.controller.fault(0)
      for (let n = 0; n < 8; n++) await device.bridge.publishTelemetry()
      device.controller.fault(1)
      const stats = device.store.outbox.stats()
      assert.ok(stats.messages <= 6)
      assert.ok(stats.droppedTelemetry > 0)
      assert.equal(stats.droppedOther, 0)

      await env.broker.start()
      const events = await env.observer.waitFor('faults and the loss report', () => {
        const found = env.observer.bodies(topics.events)
        return found.some((e) => e.message === 'fault 1') ? found : undefined
      })
      assert.deepEqual(
        events.filter((e) => e.type === 'fault').map((e) => e.message),
        ['fault 0', 'fault 1'],
      )
      // Reported once when it starts and once on reconnect, not once per dropped message.
      const losses = await env.observer.waitFor('two loss reports', () => {
        const found = env.observer.bodies(topics.events).filter((e) => e.type === 'outbox-loss')
        return found.length >= 2 ? found : undefined
      })
      for (const loss of losses) assertValid('event', loss)
      const reported = losses.reduce((sum, e) => sum + (e.droppedTelemetry as number), 0)
      assert.ok(reported > 1 && reported <= device.store.outbox.stats().droppedTelemetry)
    } finally {
      await device.close()
    }
  })

  test('resubscribes when the broker restarts without the session', async () => {
    const device = await startDevice(env.broker)
    try {
      await env.broker.stop()
      await waitForState(device.bridge, 'offline')
      await env.broker.forgetSessions()
      await env.broker.start()
      await waitForState(device.bridge, 'online')
      const { topics } = device.bridge
      await env.observer.waitFor('observer back', () => env.observer.client.connected || undefined)
      await env.observer.client.subscribeAsync('edgestar/#', { qos: 1 })
      await env.observer.publish(topics.command, { id: 'after-restart-1', type: 'gc' })
      const result = await env.observer.result(topics.result, 'after-restart-1')
      assert.equal(result.ok, true)
    } finally {
      await device.close()
    }
  })

  test('notices a silent broker within the keepalive and reconnects when it answers', async () => {
    const device = await startDevice(env.broker, { keepaliveSec: 2 })
    try {
      env.broker.pause()
      await waitForState(device.bridge, 'offline')
      env.broker.resume()
      await waitForState(device.bridge, 'online')
    } finally {
      env.broker.resume()
      await device.close()
    }
  })
})

describe('MqttBridge over MQTT 3.1.1', () => {
  test('takes commands and publishes status without MQTT 5 features', async () => {
    const broker = await TestBroker.start()
    const observer = await Observer.connect(broker.url, 'edgestar/#', { protocolVersion: 4 })
    try {
      const device = await startDevice(broker, { protocolVersion: 4 })
      try {
        const { topics } = device.bridge
        await observer.publish(topics.command, {
          id: 'v4-1',
          type: 'deploy',
          name: 'web',
          image: 'a:1',
        })
        const result = await observer.result(topics.result, 'v4-1')
        assert.equal(result.ok, true)
        const status = await observer.waitFor('status', () => observer.bodies(topics.status).at(-1))
        assertValid('status', status)
      } finally {
        await device.close()
      }
    } finally {
      await observer.close()
      await broker.close()
    }
  })
})

describe('MqttBridge security', () => {
  test('stays offline, retrying, when the broker refuses its password', async () => {
    const broker = await TestBroker.start({ user: { username: 'gateway', password: 'right' } })
    const dir = await mkdtemp(join(tmpdir(), 'edgestar-mqtt-'))
    const store = Store.open(dir)
    const bridge = new MqttBridge(
      {
        url: broker.url,
        deviceId: 'refused',
        username: 'gateway',
        password: 'wrong',
        telemetryIntervalMs: 0,
        reconnect: { minMs: 100, maxMs: 200 },
      },
      new FakeController(),
      store,
    )
    const states: string[] = []
    bridge.on('state', (state) => states.push(state))
    try {
      await bridge.start()
      await waitForState(bridge, 'offline')
      await waitForState(bridge, 'connecting')
      await waitForState(bridge, 'offline')
      assert.ok(!states.includes('online'))
    } finally {
      await bridge.stop()
      store.close()
      await broker.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  test('connects over TLS with a client certificate and a password', async () => {
    const user = { username: 'gateway', password: randomUUID() }
    const broker = await TestBroker.start({ tls: { requireClientCert: true }, user })
    const tls = {
      caFile: broker.tls!.caFile,
      certFile: broker.tls!.clientCertFile,
      keyFile: broker.tls!.clientKeyFile,
    }
    const observer = await Observer.connect(broker.url, 'edgestar/#', {
      ca: await import('node:fs').then((fs) => fs.readFileSync(tls.caFile)),
      cert: await import('node:fs').then((fs) => fs.readFileSync(tls.certFile)),
      key: await import('node:fs').then((fs) => fs.readFileSync(tls.keyFile)),
      ...user,
    })
    try {
      const device = await startDevice(broker, { tls, ...user })
      try {
        await observer.publish(device.bridge.topics.command, { id: 'tls-1', type: 'gc' })
        const result = await observer.result(device.bridge.topics.result, 'tls-1')
        assert.equal(result.ok, true)
      } finally {
        await device.close()
      }
    } finally {
      await observer.close()
      await broker.close()
    }
  })
})
