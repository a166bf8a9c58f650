import type {
  BindMount,
  ExitStatus,
  ImageRunConfig,
  NetworkMode,
  RestartPolicy,
} from '../runtime/index.js'

/** Where a deployment is in its life (stored with a reason for every change). */
export type DeploymentState =
  | 'pending'
  | 'resolving'
  | 'mounting'
  | 'starting'
  | 'running'
  | 'exited'
  | 'failed'
  | 'stopped'

/** Every state, for validation and docs. */
export const DEPLOYMENT_STATES: readonly DeploymentState[] = [
  'pending',
  'resolving',
  'mounting',
  'starting',
  'running',
  'exited',
  'failed',
  'stopped',
]

/** What a client asks to deploy (CLI, MQTT). Only `name` and `image` are required. */
export interface DeployRequest {
  /** Unique on the device: `^[a-z0-9][a-z0-9_.-]{0,62}$`. */
  name: string
  /** Image reference, e.g. `127.0.0.1:5000/app:1`. */
  image: string
  /** Replaces the image Entrypoint (and drops its Cmd). */
  command?: string[]
  /** Replaces the image Cmd. */
  args?: string[]
  env?: Record<string, string>
  workingDir?: string
  user?: string
  restart?: RestartPolicy
  /** `host` (default) or `none`. */
  network?: NetworkMode
  /** Host paths to bind into the container (absolute paths on both sides). */
  binds?: BindMount[]
  /**
   * Runs a small init (tini) as the container's pid 1: it passes signals on and reaps
   * orphans, so a process that sets no SIGTERM handler still stops at once.
   */
  init?: boolean
  /**
   * Deploying to a name that exists is refused unless `update` is true; then the new
   * image is prefetched while the old one runs, and a failed start rolls back.
   */
  update?: boolean
}

/** The stored spec of a deployment: the request plus what resolving it decided. */
export interface DeploymentSpec extends Omit<DeployRequest, 'update'> {
  /** The image's key in the store (reopened offline after a restart). */
  imageId: string
  manifestDigest: string
  /** What the user asked for: `running` deployments are restored after a restart. */
  desired: 'running' | 'stopped'
  /** Increases at each update; names the container directory. */
  generation: number
  /**
   * Set when the container ended on its own and its restart policy let it stay down;
   * such a deployment is not started again by a restore (only by `start` or a deploy).
   */
  hasEnded?: boolean
  /** How that last run ended, kept so `status` shows it after an agent restart too. */
  endedWith?: ExitStatus
  /** The spec this one replaced, kept for rollback until the new one has started. */
  previous?: Omit<DeploymentSpec, 'previous'>
}

/** A deployment as `status` reports it. */
export interface DeploymentInfo {
  name: string
  image: string
  manifestDigest: string
  state: DeploymentState
  reason: string | null
  desired: 'running' | 'stopped'
  restart: RestartPolicy
  restartCount: number
  pid?: number
  lastExit?: ExitStatus
  updatedAt: number
  /** Bytes of the image in the local cache, the image's total, and whether it is complete. */
  fetchedBytes: number
  totalBytes: number
  isComplete: boolean
  /** An update in progress: the reference being prefetched. */
  updatingTo?: string
}

/** A state change, as emitted by the agent's event stream. */
export interface DeploymentStateEvent {
  name: string
  state: DeploymentState
  previousState?: DeploymentState
  reason: string | null
  at: number
}

/** Link state as the fetch scheduler tracks it. */
export type LinkState = 'online' | 'offline' | 'degraded'

/** The registry link as `status` shows it. */
export interface LinkStatus {
  state: LinkState
  /** Bytes per second fetched from registries (all priorities), averaged over the window. */
  rateBytesPerSec: number
  /** The averaging window of `rateBytesPerSec`, in seconds. */
  rateWindowSec: number
}

/** Agent-wide figures for `status`. */
export interface AgentStatus {
  version: string
  pid: number
  runtime: string
  stateDir: string
  link: LinkStatus
  bandwidth: { capBytesPerSec: number | null }
  offlineWaitMs: number
  cache: { usedBytes: number; limitBytes?: number }
  deployments: DeploymentInfo[]
}

/** An image as the agent needs it, whether fresh from the registry or from the store. */
export interface ResolvedImage {
  /** The store's key for the image. */
  imageId: string
  reference: string
  manifestDigest: string
  /** The OCI config's `config` object. */
  config: ImageRunConfig
  /** Sum of the compressed layer sizes. */
  totalBytes: number
}

/** A mounted read-only view of an image. */
export interface MountedImage {
  readonly mountpoint: string
  unmount(): Promise<void>
}

/** How much of an image is local. */
export interface ImageProgress {
  fetchedBytes: number
  totalBytes: number
  isComplete: boolean
}

/**
 * What the agent needs from images, cache and fetching (implemented over store/,
 * fetch/, images/ and fs/ by `LazyImageBackend`; tests may use a plain-directory one).
 */
export interface ImageBackend {
  /** Resolves a reference at the registry and records the image. Throws the registry's error. */
  resolve(reference: string): Promise<ResolvedImage>
  /** Reopens a recorded image from the store alone (works offline). */
  open(imageId: string): Promise<ResolvedImage>
  /** Mounts the image's read-only view at `mountpoint` (created by the caller). */
  mount(imageId: string, mountpoint: string): Promise<MountedImage>
  /** Queues the whole image for background fetch; resolves when all of it is local. */
  prefetch(imageId: string): Promise<void>
  /** How much of the image is local (summed off the event loop that serves mounts). */
  progress(imageId: string): Promise<ImageProgress>
  /** Keeps the image's chunks from garbage collection until `release`. */
  retain(imageId: string, holder: string): void
  release(imageId: string, holder: string): void
  /** Deletes unreferenced cache entries. */
  gc(): Promise<{ freedBytes: number }>
  setBandwidth(capBytesPerSec: number | null): void
  bandwidth(): number | null
  setOfflineWaitMs(waitMs: number): void
  offlineWaitMs(): number
  link(): LinkStatus
  /** Calls `listener` with the new state at each link state change; returns the unsubscribe. */
  onLinkChange(listener: (state: LinkState) => void): () => void
  /** Bytes in the chunk cache, and its limit when one is set. */
  cacheUsage(): Promise<{ usedBytes: number; limitBytes?: number }>
  /** Stops background fetching and closes the store; never deletes cached data. */
  close(): Promise<void>
}
