import { EdgestarError } from '../errors.js'
import type { MqttBridgeOptions } from './options.js'
import type { BridgeStore, DeviceController } from './types.js'

/** Connection state of the bridge as `state` reports it. */
export type BridgeState = 'idle' | 'connecting' | 'online' | 'offline' | 'stopped'

/**
 * The device side of the fleet link: subscribes to the device's and its groups' command
 * topics, runs commands on the controller (once per id), publishes results, the retained
 * status (with a last will), periodic telemetry and events. Events and telemetry always
 * pass through the durable outbox, so they survive a dead broker and a restart, and are
 * drained in order at a bounded rate. Nothing the agent does waits on the broker.
 */
export class MqttBridge {
  constructor(
    readonly options: MqttBridgeOptions,
    readonly controller: DeviceController,
    readonly store: BridgeStore,
  ) {}

  /** Starts connecting in the background; resolves once the options are checked. */
  async start(): Promise<void> {
    throw new EdgestarError('EDGESTAR_NOT_IMPLEMENTED', 'MqttBridge.start is not implemented')
  }

  /** Publishes status offline (reason shutdown) when connected, then disconnects. */
  async stop(): Promise<void> {
    throw new EdgestarError('EDGESTAR_NOT_IMPLEMENTED', 'MqttBridge.stop is not implemented')
  }
}
