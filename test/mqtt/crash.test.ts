import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { deviceTopics, messageSchemas } from '../../src/mqtt/index.js'
import { TestBroker } from '../helpers/broker.js'
import { Observer } from './observer.js'

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'bridge-child.js')

/** A bridge process whose stdout lines can be awaited. */
class Device {
  readonly child: ChildProcess
  readonly #lines: string[] = []
  readonly #waiters = new Set<() => void>()

  constructor(url: string, deviceId: string, stateDir: string) {
    this.child = spawn(process.execPath, [CHILD, url, deviceId, stateDir], {
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.#lines.push(line)
      for (const wake of this.#waiters) wake()
    })
  }

  /** Waits until the child has printed `line` (bounded by the test timeout). */
  async waitForLine(line: string): Promise<void> {
    while (!this.#lines.includes(line)) {
      if (this.child.exitCode !== null) throw new Error(`bridge child exited before '${line}'`)
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.#waiters.delete(wake)
          clearTimeout(timer)
          resolve()
        }
        const timer = setTimeout(wake, 200)
        this.#waiters.add(wake)
      })
    }
  }

  async fault(n: number): Promise<void> {
    this.child.stdin!.write(`fault ${n}\n`)
    await this.waitForLine(`queued ${n}`)
  }

  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = new Promise((resolve) => this.child.once('exit', resolve))
    this.child.kill('SIGKILL')
    await exited
  }
}

describe('MqttBridge across a crash of the device', () => {
  let broker: TestBroker
  let observer: Observer
  let stateDir: string
  const devices: Device[] = []

  before(async () => {
    broker = await TestBroker.start()
    observer = await Observer.connect(broker.url, 'edgestar/#')
    stateDir = await mkdtemp(join(tmpdir(), 'edgestar-mqtt-crash-'))
  })

  after(async () => {
    for (const device of devices) await device.kill()
    await observer?.close()
    await broker?.close()
    await rm(stateDir, { recursive: true, force: true })
  })

  test('the last will marks a killed device offline', async () => {
    const deviceId = `will-${randomUUID().slice(0, 8)}`
    const topics = deviceTopics('edgestar', deviceId, [])
    const device = new Device(broker.url, deviceId, join(stateDir, deviceId))
    devices.push(device)
    await device.waitForLine('online')
    await observer.waitFor('status online', () =>
      observer.bodies(topics.status).find((s) => s.online === true),
    )

    await device.kill()
    const will = await observer.waitFor('status offline', () =>
      observer.bodies(topics.status).find((s) => s.online === false),
    )
    assert.equal(will.reason, 'last-will')
    assert.ok(messageSchemas().validate('status', will).ok)
    const latest = observer.bodies(topics.status).at(-1)
    assert.equal(latest?.online, false)
  })

  test('events queued while offline survive a kill and are delivered after restart', async () => {
    const deviceId = `crash-${randomUUID().slice(0, 8)}`
    const topics = deviceTopics('edgestar', deviceId, [])
    const dir = join(stateDir, deviceId)
    const first = new Device(broker.url, deviceId, dir)
    devices.push(first)
    await first.waitForLine('online')

    await broker.stop()
    for (let n = 0; n < 20; n++) await first.fault(n)
    await first.kill()
    await broker.start()

    const second = new Device(broker.url, deviceId, dir)
    devices.push(second)
    const events = await observer.waitFor('20 faults', () => {
      const faults = [...new Map(observer.bodies(topics.events).map((e) => [e.msgId, e])).values()]
      return faults.length >= 20 ? faults : undefined
    })
    assert.deepEqual(
      events.map((e) => e.message),
      Array.from({ length: 20 }, (_, n) => `fault ${n}`),
    )
    const sent = await broker.publishesReceived(`edgestar-${deviceId}`, topics.events)
    assert.equal(sent, 20, 'the device published an event twice')
    await second.kill()
  })
})
