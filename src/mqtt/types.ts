import type { EventEmitter } from 'node:events'

/** Restart policies a deploy command may ask for (the agent applies them). */
export type RestartPolicy = 'no' | 'on-failure' | 'always'

/** What a `deploy` command asks the device to run. */
export interface DeploySpec {
  /** Deployment name, unique on the device (`^[a-z0-9][a-z0-9_.-]{0,62}$`). */
  name: string
  /** Image reference, e.g. `registry.example:5000/app:1.2`. */
  image: string
  /** Overrides the image's entrypoint + cmd when given. */
  command?: string[]
  /** Extra environment variables, added to the image config's. */
  env?: Record<string, string>
  restart?: RestartPolicy
  /** `host` (the device's network, the default) or `none` (loopback only). */
  network?: NetworkMode
  /** Host paths bound into the container; absolute paths on both sides. */
  binds?: BindSpec[]
  /** Absolute working directory inside the container, instead of the image's. */
  workingDir?: string
  /** `user[:group]`, by name or id, instead of the image's. */
  user?: string
  /** Run a small init as pid 1 that passes signals on and reaps orphans. */
  init?: boolean
  /**
   * true: create, or replace an existing deployment of this name (rolled back when the
   * new image fails to start). false: refuse a name that exists. Absent: as true.
   */
  update?: boolean
}

/** Network modes a deploy command may ask for. */
export type NetworkMode = 'host' | 'none'

/** One host path bound into a container. */
export interface BindSpec {
  source: string
  target: string
  readOnly?: boolean
}

/** One deployment as the status message reports it. */
export interface DeploymentStatus {
  name: string
  image: string
  /** Agent-defined state word: `pending`, `pulling`, `running`, `stopped`, `failed`, ... */
  state: string
  /** Bytes of the image already in the local cache, and its total size when known. */
  progress?: { fetchedBytes: number; totalBytes?: number }
  /** Set when `state` is a failure: what went wrong. */
  error?: { code: string; message: string }
}

/** Link state as the fetch scheduler tracks it. */
export type LinkState = 'online' | 'offline' | 'degraded'

/** Everything the retained status message carries besides the bridge's own fields. */
export interface DeviceSnapshot {
  deployments: DeploymentStatus[]
  link: { state: LinkState }
  /** Background fetch cap in bytes per second; null when uncapped. */
  bandwidth: { capBytesPerSec: number | null }
  cache: { usedBytes: number; limitBytes?: number }
}

/** Per-deployment fetch figures for one telemetry message. */
export interface DeploymentTelemetry {
  name: string
  /** Average registry fetch rate since the previous telemetry sample. */
  fetchRateBytesPerSec: number
  /** Bytes fetched for this deployment's image since the agent started. */
  fetchedBytes: number
  /** Bytes of the image in the local cache, and the image's total. */
  cachedBytes?: number
  totalBytes?: number
}

/** The controller's share of one telemetry message (the bridge adds device metrics). */
export interface ControllerTelemetry {
  deployments: DeploymentTelemetry[]
  link: { state: LinkState }
  cache: { usedBytes: number; limitBytes?: number }
}

/**
 * Something the device wants the fleet to know about, published on `PREFIX/DEVICE/events`.
 * `deployment-state`: a deployment moved from one state to another.
 * `fault`: a notable failure (a crash loop, a chunk that failed verification twice, ...).
 */
export type DeviceEvent =
  | {
      type: 'deployment-state'
      deployment: string
      state: string
      previousState?: string
      detail?: string
    }
  | { type: 'fault'; code: string; message: string; deployment?: string }

/** Events a DeviceController emits. */
export interface DeviceControllerEvents {
  /** A deployment state change or a fault; the bridge publishes it (through the outbox). */
  event: [DeviceEvent]
  /**
   * Something else the retained status shows changed (the registry link state); the
   * bridge republishes the status, as it does after a deployment state change.
   */
  'status-changed': []
}

/** The answer of a command that returns data (merged into the result message). */
export type CommandData = Record<string, unknown>

/**
 * What the MQTT bridge needs from the device: the agent implements it (H6 wires it in
 * `src/agent/`), tests use a fake. Methods throw EdgestarError on failure; the error's
 * code and message go into the command result unchanged. The bridge never runs two
 * commands on the same deployment name at once (they run in arrival order), but commands
 * on different deployments, `bandwidth` and `gc` may overlap, and `status` and
 * `telemetry` may be called at any moment.
 */
export interface DeviceController {
  /** Creates (or replaces) a deployment and starts it. Resolves when it is started. */
  deploy(spec: DeploySpec): Promise<CommandData | undefined>
  stop(name: string): Promise<CommandData | undefined>
  start(name: string): Promise<CommandData | undefined>
  /** Stops and removes a deployment (its cached image chunks stay for gc). */
  remove(name: string): Promise<CommandData | undefined>
  /** Sets the background fetch cap; null removes it. */
  bandwidth(capBytesPerSec: number | null): Promise<CommandData | undefined>
  /** Fetches a deployment's whole image now (resolves when queued, not when done). */
  prefetch(name: string): Promise<CommandData | undefined>
  /** Garbage-collects unreferenced cache entries; returns e.g. `{ freedBytes }`. */
  gc(): Promise<CommandData | undefined>
  /** The device's current state for the retained status message. */
  status(): Promise<DeviceSnapshot>
  /** Fetch figures for the periodic telemetry message. */
  telemetry(): Promise<ControllerTelemetry>
  /** Emits `event` for each deployment state change and notable fault. */
  readonly events: EventEmitter<DeviceControllerEvents>
}

/** A command result as stored in the command log and published on `cmd/result`. */
export interface CommandResult {
  /** The command's id; null when the payload had no readable id. */
  id: string | null
  ok: boolean
  device: string
  type?: string
  /** Set when `ok` is false; `hint` says what the operator can do, when the device knows. */
  error?: { code: string; message: string; hint?: string }
  [key: string]: unknown
}

/**
 * The durable executed-command log (H4's `store.commandLog`, run in the store's threads):
 * `findAsync` returns the entry recorded for an id (its `result` is what was recorded)
 * and sees every record that resolved; `recordAsync` resolves once the record is durable,
 * and the first record of an id wins.
 */
export interface CommandLog {
  findAsync(id: string): Promise<{ result: unknown } | undefined>
  recordAsync(id: string, result: unknown): Promise<void>
}

/** What kind of message an outbox row holds; the store drops telemetry before events. */
export type OutboxKind = 'event' | 'telemetry'

/** One message waiting in the outbox, oldest first by `id`. */
export interface OutboxItem {
  id: number
  kind: string
  topic: string
  payload: string
}

/** Size of the outbox and what its bounds have cost since the state directory was made. */
export interface OutboxStats {
  messages: number
  bytes: number
  droppedTelemetry: number
  /** Events (and any non-telemetry row) dropped because nothing older was left. */
  droppedOther: number
}

/**
 * The durable store-and-forward queue (H4's `store.outbox`, run in the store's threads
 * off the event loop): `enqueueAsync` appends durably and keeps the queue within its
 * bounds (oldest telemetry dropped first, losses counted in `statsAsync`); `peekAsync`
 * returns the oldest rows in order; `removeAsync` deletes delivered rows.
 */
export interface OutboxStore {
  /** Resolves once the row is durable, with what the bounds dropped to make room. */
  enqueueAsync(
    kind: OutboxKind,
    topic: string,
    payload: string,
  ): Promise<{ droppedTelemetry: number; droppedOther: number }>
  /**
   * Sees every row whose enqueue resolved and none whose removal resolved before it
   * answers (the pump relies on it: a removed row read back would be sent again).
   */
  peekAsync(limit: number): Promise<OutboxItem[]>
  removeAsync(ids: readonly number[]): Promise<void>
  statsAsync(): Promise<OutboxStats>
  /** The bounds, when the store lets them be changed at run time. */
  limits?: { maxMessages: number; maxBytes: number }
}

/** The two store parts the bridge uses (H4's Store satisfies it). */
export interface BridgeStore {
  commandLog: CommandLog
  outbox: OutboxStore
}
