/**
 * The fleet link over MQTT: topics, message schemas, the device-side bridge
 * (commands, results, status, telemetry, events, outbox) and the operator-side client.
 * See docs/telemetry.md for the wire format.
 */
export { type BridgeState, MqttBridge, type MqttBridgeEvents } from './bridge.js'
export {
  FleetClient,
  type FleetClientOptions,
  type FleetCommandBody,
  type FleetMessage,
  type FleetTarget,
  type SendOptions,
} from './fleet-client.js'
export { defaultDeviceId } from './machine-id.js'
export type { MqttBridgeOptions, OutboxLimits, ReconnectBackoff, TlsFiles } from './options.js'
export { type MessageKind, MessageSchemas, messageSchemas } from './schemas.js'
export {
  canonicalCommandBytes,
  canonicalJson,
  checkCommandSignature,
  generateFleetKeyPair,
  loadFleetPrivateKey,
  loadFleetPublicKey,
  signCommand,
} from './signing.js'
export {
  DEFAULT_TOPIC_PREFIX,
  type DeviceTopics,
  deviceTopics,
  groupCommandTopic,
} from './topics.js'
export type {
  BindSpec,
  BridgeStore,
  CommandData,
  CommandLog,
  CommandResult,
  ControllerTelemetry,
  DeploymentStatus,
  DeploymentTelemetry,
  DeploySpec,
  DeviceController,
  DeviceControllerEvents,
  DeviceEvent,
  DeviceSnapshot,
  LinkState,
  NetworkMode,
  OutboxItem,
  OutboxKind,
  OutboxStats,
  OutboxStore,
  RestartPolicy,
} from './types.js'
