// A bridge in its own process, so tests can kill it (SIGKILL) as a power cut would.
// Usage: node bridge-child.js URL DEVICE_ID STATE_DIR
// stdin: `fault N` emits fault N and answers `queued N` once it is durably in the outbox;
// stdout: `online` when connected.
import { createInterface } from 'node:readline'
import { MqttBridge } from '../../src/mqtt/index.js'
import { Store } from '../../src/store/index.js'
import { FakeController } from './fake-controller.js'

const [url, deviceId, stateDir] = process.argv.slice(2)
if (url === undefined || deviceId === undefined || stateDir === undefined)
  throw new Error('usage: bridge-child URL DEVICE_ID STATE_DIR')

const store = Store.open(stateDir)
const controller = new FakeController()
const bridge = new MqttBridge(
  {
    url,
    deviceId,
    telemetryIntervalMs: 0,
    keepaliveSec: 3,
    reconnect: { minMs: 100, maxMs: 400 },
    outbox: { publishPerSec: 500, publishBytesPerSec: 1 << 20 },
    diskPath: stateDir,
  },
  controller,
  store,
)
bridge.on('state', (state) => {
  if (state === 'online') process.stdout.write('online\n')
})
await bridge.start()

for await (const line of createInterface({ input: process.stdin })) {
  const [verb, arg] = line.split(' ')
  if (verb === 'fault') {
    controller.fault(Number(arg))
    await bridge.whenQueued()
    process.stdout.write(`queued ${arg}\n`)
  }
}
