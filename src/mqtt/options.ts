import type { KeyObject } from 'node:crypto'

/** TLS material for mqtts:// and wss:// brokers, as file paths (read at start). */
export interface TlsFiles {
  /** CA bundle to trust instead of the system store (PEM). */
  caFile?: string
  /** Client certificate and key for brokers that authenticate devices by certificate. */
  certFile?: string
  keyFile?: string
  /** Defaults to true; false only for a test broker with a self-signed certificate. */
  rejectUnauthorized?: boolean
}

/** Bounds and publishing rate of the store-and-forward outbox. */
export interface OutboxLimits {
  /** Rows kept at most (default 10 000). */
  maxCount?: number
  /** Payload bytes kept at most (default 16 MiB). */
  maxBytes?: number
  /** Messages published per second at most while draining (default 20). */
  publishPerSec?: number
  /** Payload bytes published per second at most while draining (default 64 KiB). */
  publishBytesPerSec?: number
}

/** Reconnect backoff: full jitter between 0 and min(maxMs, minMs * 2^attempt). */
export interface ReconnectBackoff {
  /** Default 1000. */
  minMs?: number
  /** Default 60 000. */
  maxMs?: number
}

/** Everything MqttBridge needs to know about the broker and the device. */
export interface MqttBridgeOptions {
  /** Broker URL: mqtt://, mqtts://, ws:// or wss:// (user info is accepted but redacted). */
  url: string
  /** Defaults to the machine id (/etc/machine-id). */
  deviceId?: string
  /** First topic level(s); default `edgestar`. */
  prefix?: string
  /** Groups whose `PREFIX/group/GROUP/cmd` the device also takes commands from. */
  groups?: string[]
  /** 5 (default) or 4 (MQTT 3.1.1). */
  protocolVersion?: 4 | 5
  username?: string
  password?: string
  tls?: TlsFiles
  /** When set, only commands signed by this Ed25519 key run (PEM text or a KeyObject). */
  fleetPublicKey?: string | KeyObject
  /** MQTT keepalive in seconds (default 30); a dead link is noticed within about this. */
  keepaliveSec?: number
  /** Telemetry period in milliseconds (default 60 000; 0 turns periodic telemetry off). */
  telemetryIntervalMs?: number
  /** MQTT 5 session expiry in seconds, so commands sent while away still arrive (1 day). */
  sessionExpirySec?: number
  reconnect?: ReconnectBackoff
  outbox?: OutboxLimits
  /** Path whose filesystem's free space telemetry reports (the agent's state directory). */
  diskPath?: string
  /** edgestar version reported in status (default: package.json's). */
  version?: string
}
