import { EventEmitter } from 'node:events'
import { mkdir, rm } from 'node:fs/promises'
import path from 'node:path'
import { EdgestarError, isEdgestarError } from '../errors.js'
import { abortMount } from '../fs/index.js'
import { forEachLimited } from '../limit.js'
import { moduleLogger } from '../log.js'
import {
  type BackoffOptions,
  Container,
  type ContainerEvent,
  type ContainerRuntime,
  type ExitStatus,
  type LogLimits,
  mountsUnder,
  unmountOverlay,
} from '../runtime/index.js'
import type { DeploymentRecords, DeploymentRow } from '../store/index.js'
import { formatDuration, sigkillNote } from './duration-text.js'
import type {
  DeploymentInfo,
  DeploymentSpec,
  DeploymentState,
  DeploymentStateEvent,
  DeployRequest,
  ImageBackend,
  MountedImage,
  ResolvedImage,
} from './types.js'
import { checkDeployRequest, checkName } from './validate.js'

/** What the deployment manager works with. */
export interface DeploymentManagerOptions {
  /** Deployment directories live in `<stateDir>/deployments/NAME`. */
  stateDir: string
  records: DeploymentRecords
  backend: ImageBackend
  runtime: ContainerRuntime
  logLimits?: LogLimits
  backoff?: BackoffOptions
  stopTimeoutMs?: number
  /** A new image that exits with an error within this window after an update rolls back. */
  updateGraceMs?: number
  /** First delay before retrying a restore that failed (doubles up to 5 minutes). */
  restoreRetryMs?: number
}

/** Events of the manager: every state change of every deployment. */
export interface DeploymentManagerEvents {
  state: [DeploymentStateEvent]
  /** A deployment no longer exists (removed, or a create that failed was undone). */
  removed: [name: string]
}

interface Live {
  spec: DeploymentSpec
  state: DeploymentState
  mounted?: MountedImage
  container?: Container
  isStopping: boolean
  /** The reason of the last state change, and when it was made (as stored). */
  reason: string | null
  updatedAt: number
  updatingTo?: string
  retryTimer?: NodeJS.Timeout
  retryDelayMs?: number
  /** How the container's run ended when a shutdown stopped it. */
  shutdownExit?: ExitStatus
}

/** What `remove` did: `killedAfterMs` is set when the container needed SIGKILL. */
export interface RemoveResult {
  removed: string
  killedAfterMs?: number
  note?: string
}

/**
 * The deployment state machine (pending, resolving, mounting, starting, running,
 * exited, failed, stopped). Every transition is stored with its reason (durably, by the
 * store's writer thread, off the event loop) before it is announced, every operation's
 * answer waits for the rows written before it, operations on one name run one at a time,
 * and a failed create leaves nothing behind. Errors are EdgestarErrors with EDGESTAR_AGENT_* codes, or the
 * registry's, runtime's or fs's own codes when they explain better.
 */
export class DeploymentManager extends EventEmitter<DeploymentManagerEvents> {
  private readonly options: DeploymentManagerOptions
  private readonly live = new Map<string, Live>()
  private readonly queues = new Map<string, Promise<unknown>>()
  private readonly log = moduleLogger('agent')
  private isClosing = false
  /** The last row write sent to the store's writer; it answers in order (never rejects). */
  private written: Promise<void> = Promise.resolve()

  constructor(options: DeploymentManagerOptions) {
    super()
    this.options = options
  }

  /**
   * Creates a deployment and brings it up, or updates an existing one when
   * `request.update` is set (the request replaces every run option of the old spec).
   * Resolves once the container has started; a create that fails has removed
   * everything it made (the name is free again) before it rejects. `onAccepted` runs
   * only for an update, once the new image resolved and its background prefetch began
   * (clients that detach return then). Throws EDGESTAR_AGENT_NAME_TAKEN,
   * EDGESTAR_AGENT_BAD_REQUEST, the registry's resolve errors,
   * EDGESTAR_RUNTIME_COMMAND_NOT_FOUND, EDGESTAR_AGENT_UPDATE_ROLLED_BACK.
   */
  deploy(input: unknown, onAccepted?: () => void): Promise<DeploymentInfo> {
    const request = checkDeployRequest(input)
    const exists =
      this.live.has(request.name) || this.options.records.get(request.name) !== undefined
    if (exists && request.update !== true) {
      throw new EdgestarError(
        'EDGESTAR_AGENT_NAME_TAKEN',
        `a deployment named "${request.name}" already exists`,
        {
          hint:
            `deploy with --update to move it to a new image, or remove it first ` +
            `(edgestar rm ${request.name}, or edgestar fleet remove ${request.name} from the fleet)`,
        },
      )
    }
    if (exists) return this.serial(request.name, () => this.update(request, onAccepted))

    // The name is taken from here on, so a second deploy of it is refused at once.
    const spec: DeploymentSpec = {
      ...withoutUpdate(request),
      imageId: '',
      manifestDigest: '',
      desired: 'running',
      generation: 1,
    }
    this.live.set(request.name, {
      spec,
      state: 'pending',
      isStopping: false,
      reason: 'deploy requested',
      updatedAt: Date.now(),
    })
    return this.serial(request.name, () => this.create(spec))
  }

  /**
   * Stops a deployment's container; it stays stopped across agent restarts. The reason
   * (and `lastExit.killedAfterMs`) say when the program ignored SIGTERM and was killed.
   */
  stop(name: string): Promise<DeploymentInfo> {
    const live = this.require(name)
    return this.serial(name, async () => {
      live.spec = { ...live.spec, desired: 'stopped' }
      this.persistSpec(name, live)
      clearTimeout(live.retryTimer)
      live.isStopping = true
      const exit = await live.container?.stop(this.options.stopTimeoutMs)
      live.isStopping = false
      this.transition(name, 'stopped', `stopped on request${killedText(exit)}`)
      return this.info(name)
    })
  }

  /** Starts a stopped (or exited, or failed) deployment again. */
  start(name: string): Promise<DeploymentInfo> {
    const live = this.require(name)
    return this.serial(name, async () => {
      live.spec = { ...live.spec, desired: 'running' }
      this.persistSpec(name, live)
      if (live.container?.phase === 'running' || live.container?.phase === 'waiting')
        return this.info(name)
      await this.bringUp(name, live, 'started on request')
      return this.info(name)
    })
  }

  /**
   * Stops and removes a deployment: its container, the upper dir (what it wrote), its
   * mount and logs, and its pin on the image, so the image's chunks become collectable.
   */
  remove(name: string): Promise<RemoveResult> {
    this.require(name)
    return this.serial(name, async () => {
      const live = this.live.get(name) as Live
      clearTimeout(live.retryTimer)
      live.isStopping = true
      const exit = await live.container?.stop(this.options.stopTimeoutMs)
      await this.teardown(name, live)
      await this.forget(name)
      this.log.info({ deployment: name, killedAfterMs: exit?.killedAfterMs }, 'deployment removed')
      const killedAfterMs = exit?.killedAfterMs
      if (killedAfterMs === undefined) return { removed: name }
      return { removed: name, killedAfterMs, note: sigkillNote(killedAfterMs) }
    })
  }

  /**
   * One deployment's status, its progress summed off the event loop. Rejects with
   * EDGESTAR_AGENT_NO_SUCH_DEPLOYMENT.
   */
  async info(name: string): Promise<DeploymentInfo> {
    const live = this.require(name)
    // An operation answers with this: what it changed is durable by then.
    await this.written
    const progress =
      live.spec.imageId === ''
        ? { fetchedBytes: 0, totalBytes: 0, isComplete: false }
        : await this.options.backend.progress(live.spec.imageId)
    const container = live.container
    const lastExit = container?.lastExit ?? live.spec.endedWith
    return {
      name,
      image: live.spec.image,
      manifestDigest: live.spec.manifestDigest,
      state: live.state,
      reason: live.reason,
      desired: live.spec.desired,
      restart: live.spec.restart ?? 'no',
      restartCount: container?.restartCount ?? 0,
      ...(container?.pid === undefined ? {} : { pid: container.pid }),
      ...(lastExit === undefined ? {} : { lastExit }),
      updatedAt: live.updatedAt,
      ...progress,
      ...(live.updatingTo === undefined ? {} : { updatingTo: live.updatingTo }),
    }
  }

  /** Every deployment's status, by name; one that is removed meanwhile is left out. */
  async list(): Promise<DeploymentInfo[]> {
    const names = [...this.live.keys()].sort()
    const infos = await Promise.all(names.map((name) => this.info(name).catch(() => undefined)))
    return infos.filter((info) => info !== undefined)
  }

  /**
   * True when the deployment's container is down and nothing starts it again without a
   * request: stopped, or exited or failed with its restart policy letting it stay down,
   * or the deployment is gone. Its log is complete then (an exit is announced only after
   * the output has been written). A restore that failed and will be retried is not ended.
   */
  hasEnded(name: string): boolean {
    const live = this.live.get(name)
    if (live === undefined) return true
    if (live.state === 'stopped') return true
    const isDown = live.state === 'exited' || live.state === 'failed'
    return isDown && live.spec.hasEnded === true
  }

  /** Log directory of a deployment (for `logs`). */
  logDir(name: string): string {
    this.require(name)
    return path.join(this.deploymentDir(name), 'logs')
  }

  /** The image id of a deployment, for prefetch. */
  imageIdOf(name: string): string {
    const live = this.require(name)
    if (live.spec.imageId === '') throw notReady(name)
    return live.spec.imageId
  }

  /**
   * Brings back every stored deployment after an agent start: clears what a killed
   * agent left (overlay mounts, runtime state), remounts images from the store (no
   * registry needed when cached), and starts those meant to run. Failures are stored
   * as the reason and retried with backoff; this never throws.
   */
  async restore(): Promise<void> {
    // Every name is known before anything slow runs, so the API sees them all at once.
    const rows = this.options.records.list()
    for (const row of rows) {
      const spec = row.spec as DeploymentSpec
      this.live.set(row.name, {
        spec,
        state: row.state as DeploymentState,
        isStopping: false,
        reason: row.reason,
        updatedAt: row.updatedAt,
      })
    }
    for (const row of rows) {
      const spec = row.spec as DeploymentSpec
      await this.clearLeftovers(row.name, spec)
      if (spec.desired === 'stopped') {
        if (row.state !== 'stopped') this.transition(row.name, 'stopped', 'restored as stopped')
        continue
      }
      if (spec.hasEnded === true) continue
      void this.serial(row.name, () => this.restoreOne(row)).catch(() => undefined)
    }
  }

  /**
   * The first step of a shutdown: stops every container, up to SHUTDOWN_PARALLEL at once
   * (so it takes about one stop timeout, not one per deployment), without waiting for
   * operations in flight. Run it while images can still be read: a container's SIGTERM
   * handler may need files of its image that were never fetched. Never throws.
   */
  async stopContainers(): Promise<void> {
    this.beginShutdown()
    await forEachLimited([...this.live], SHUTDOWN_PARALLEL, async ([name, live]) => {
      clearTimeout(live.retryTimer)
      live.isStopping = true
      live.shutdownExit = await live.container
        ?.stop(this.options.stopTimeoutMs)
        .catch((err: unknown) => {
          this.log.warn({ deployment: name, err: errorFields(err) }, 'shutdown stop failed')
          return undefined
        })
    })
  }

  /**
   * Stops every container and unmounts everything, keeping desired states (so the next
   * start restores them) and never touching the cache. Each deployment waits for its
   * operations in flight; up to SHUTDOWN_PARALLEL deployments are handled at once.
   */
  async shutdown(): Promise<void> {
    this.beginShutdown()
    await forEachLimited([...this.live], SHUTDOWN_PARALLEL, ([name, live]) => {
      clearTimeout(live.retryTimer)
      return this.serial(name, async () => {
        live.isStopping = true
        await live.container?.unmount()
        await live.mounted?.unmount()
        live.mounted = undefined
        // A container already down for good keeps its own state and reason (a one-shot
        // that exited 0 stays `exited`); only a stop the shutdown made is recorded.
        if (this.hasEnded(name)) return
        this.transition(name, 'stopped', `agent shut down${killedText(live.shutdownExit)}`)
      }).catch((err: unknown) =>
        this.log.warn({ deployment: name, err: errorFields(err) }, 'shutdown stop failed'),
      )
    })
  }

  /**
   * Marks the manager as closing before the fetch scheduler is closed under it: a deploy
   * that fails from here on keeps its row, so the next agent start finishes it.
   */
  beginShutdown(): void {
    this.isClosing = true
  }

  private async create(spec: DeploymentSpec): Promise<DeploymentInfo> {
    const name = spec.name
    const live = this.live.get(name) as Live
    try {
      // Awaited: a deploy the store cannot record fails here, before anything is made.
      await this.record(name, () =>
        this.options.records.putAsync({
          name,
          image: spec.image,
          spec,
          state: 'pending',
          reason: 'deploy requested',
        }),
      )
      this.transition(name, 'resolving', `resolving ${spec.image}`)
      const image = await this.options.backend.resolve(spec.image)
      live.spec = { ...spec, imageId: image.imageId, manifestDigest: image.manifestDigest }
      this.persistSpec(name, live)
      await this.bringUp(name, live, `deployed ${image.manifestDigest}`, image)
      return this.info(name)
    } catch (err) {
      if (this.isClosing) throw err
      // A create that fails leaves nothing: no row, no mount, no directory.
      live.isStopping = true
      await this.teardown(name, live).catch(() => undefined)
      await this.forget(name).catch(() => undefined)
      this.log.warn({ deployment: name, err: errorFields(err) }, 'deploy failed')
      throw err
    }
  }

  private async update(request: DeployRequest, onAccepted?: () => void): Promise<DeploymentInfo> {
    const name = request.name
    const live = this.require(name)
    const old = live.spec

    // Resolve and prefetch while the old container keeps running.
    const image = await this.options.backend.resolve(request.image)
    live.updatingTo = request.image
    onAccepted?.()
    this.log.info({ deployment: name, image: request.image }, 'update prefetching')
    this.options.backend.retain(image.imageId, holderOf(name, old.generation + 1))
    try {
      await this.options.backend.prefetch(image.imageId)
    } catch (err) {
      live.updatingTo = undefined
      this.options.backend.release(image.imageId, holderOf(name, old.generation + 1))
      throw err
    }

    const { previous: _dropped, ...oldWithoutPrevious } = old
    const next: DeploymentSpec = {
      ...withoutUpdate(request),
      imageId: image.imageId,
      manifestDigest: image.manifestDigest,
      desired: 'running',
      generation: old.generation + 1,
      previous: oldWithoutPrevious,
    }
    const oldContainer = live.container
    const oldMount = live.mounted
    live.isStopping = true
    await oldContainer?.stop(this.options.stopTimeoutMs)
    live.isStopping = false

    try {
      live.spec = next
      live.container = undefined
      live.mounted = undefined
      await this.bringUp(name, live, `switching to ${image.manifestDigest}`, image)
      await this.watchGrace(name, live)
    } catch (err) {
      await this.rollback(name, live, old, oldContainer, oldMount, err)
      // The cause goes into the message: only code, message and hint cross the socket.
      throw new EdgestarError(
        'EDGESTAR_AGENT_UPDATE_ROLLED_BACK',
        `update of "${name}" to ${request.image} failed (${causeText(err)}); ` +
          `rolled back to ${old.image}`,
        {
          cause: err,
          hint:
            `edgestar logs ${name} shows the new container's output, if it ran; ` +
            'fix the image or the run options and deploy --update again',
        },
      )
    } finally {
      live.updatingTo = undefined
    }

    // The new image runs: drop the old generation.
    await oldContainer?.remove().catch(() => undefined)
    await oldMount?.unmount().catch(() => undefined)
    this.options.backend.release(old.imageId, holderOf(name, old.generation))
    this.persistSpec(name, live)
    return this.info(name)
  }

  private async rollback(
    name: string,
    live: Live,
    old: DeploymentSpec,
    oldContainer: Container | undefined,
    oldMount: MountedImage | undefined,
    cause: unknown,
  ): Promise<void> {
    live.isStopping = true
    await live.container?.remove().catch(() => undefined)
    await live.mounted?.unmount().catch(() => undefined)
    this.options.backend.release(live.spec.imageId, holderOf(name, live.spec.generation))
    live.isStopping = false
    live.spec = old
    live.container = oldContainer
    live.mounted = oldMount
    this.persistSpec(name, live)
    const why = cause instanceof Error ? cause.message : String(cause)
    this.log.warn({ deployment: name, err: errorFields(cause) }, 'update rolled back')
    if (oldContainer === undefined || old.desired !== 'running') {
      this.transition(name, 'stopped', `update failed (${why}); kept ${old.image}`)
      return
    }
    this.transition(name, 'starting', `update failed (${why}); rolling back to ${old.image}`)
    await oldContainer.start()
  }

  /** Fails when the new container exits with an error within the update grace window. */
  private watchGrace(name: string, live: Live): Promise<void> {
    const container = live.container as Container
    const graceMs = this.options.updateGraceMs ?? 3000
    return new Promise((resolve, reject) => {
      const onEvent = (event: ContainerEvent): void => {
        if (event.type !== 'exited' || event.exit.exitCode === 0) return
        finish()
        reject(
          new EdgestarError(
            'EDGESTAR_AGENT_START_FAILED',
            `"${name}" exited with code ${event.exit.exitCode} right after the update`,
          ),
        )
      }
      const timer = setTimeout(() => {
        finish()
        resolve()
      }, graceMs)
      const finish = (): void => {
        clearTimeout(timer)
        container.off('event', onEvent)
      }
      if (container.lastExit !== undefined && container.lastExit.exitCode !== 0)
        return onEvent({ type: 'exited', exit: container.lastExit, restartCount: 0 })
      container.on('event', onEvent)
    })
  }

  private async restoreOne(row: DeploymentRow): Promise<void> {
    const live = this.live.get(row.name)
    if (live === undefined || this.isClosing) return
    try {
      let image: ResolvedImage | undefined
      if (live.spec.imageId === '') {
        this.transition(
          row.name,
          'resolving',
          `resolving ${live.spec.image} (deploy interrupted by an agent restart)`,
        )
        image = await this.options.backend.resolve(live.spec.image)
        live.spec = { ...live.spec, imageId: image.imageId, manifestDigest: image.manifestDigest }
        this.persistSpec(row.name, live)
      }
      await this.bringUp(row.name, live, 'restored after agent start', image)
      live.retryDelayMs = undefined
    } catch (err) {
      const delayMs = Math.min(
        300_000,
        (live.retryDelayMs ?? (this.options.restoreRetryMs ?? 5000) / 2) * 2,
      )
      live.retryDelayMs = delayMs
      const why = err instanceof Error ? err.message : String(err)
      this.transition(
        row.name,
        'failed',
        `restore failed: ${why}; retrying in ${Math.round(delayMs / 1000)} s`,
      )
      live.retryTimer = setTimeout(() => {
        if (live.spec.desired === 'running' && !this.isClosing)
          void this.serial(row.name, () => this.restoreOne(row)).catch(() => undefined)
      }, delayMs)
    }
  }

  /** Mounts the image (unless mounted), then creates and starts the container. */
  private async bringUp(
    name: string,
    live: Live,
    reason: string,
    resolved?: ResolvedImage,
  ): Promise<void> {
    if (live.spec.hasEnded === true || live.spec.endedWith !== undefined) {
      const { hasEnded: _ended, endedWith: _exit, ...rest } = live.spec
      live.spec = rest
      this.persistSpec(name, live)
    }
    const spec = live.spec
    const generationDir = path.join(this.deploymentDir(name), `c${spec.generation}`)
    live.isStopping = false
    clearTimeout(live.retryTimer)

    if (live.mounted === undefined) {
      this.transition(name, 'mounting', `mounting ${spec.manifestDigest}`)
      const image = resolved ?? (await this.options.backend.open(spec.imageId))
      const lowerDir = this.imageMountDir(name, spec.generation)
      await mkdir(lowerDir, { recursive: true })
      live.mounted = await this.options.backend.mount(image.imageId, lowerDir)
      this.options.backend.retain(image.imageId, holderOf(name, spec.generation))
      live.container = this.makeContainer(name, live, generationDir, image)
    }

    this.transition(name, 'starting', reason)
    const container = live.container as Container
    await container.start()
  }

  private makeContainer(name: string, live: Live, dir: string, image: ResolvedImage): Container {
    const spec = live.spec
    const container = new Container({
      id: containerId(name, spec.generation),
      containerDir: dir,
      logDir: path.join(this.deploymentDir(name), 'logs'),
      lowerDirs: [(live.mounted as MountedImage).mountpoint],
      runtime: this.options.runtime,
      image: image.config,
      overrides: {
        ...(spec.command === undefined ? {} : { command: spec.command }),
        ...(spec.args === undefined ? {} : { args: spec.args }),
        ...(spec.env === undefined ? {} : { env: spec.env }),
        ...(spec.workingDir === undefined ? {} : { workingDir: spec.workingDir }),
        ...(spec.user === undefined ? {} : { user: spec.user }),
      },
      network: spec.network ?? 'host',
      binds: spec.binds ?? [],
      init: spec.init === true,
      restart: spec.restart ?? 'no',
      ...(this.options.logLimits === undefined ? {} : { log: this.options.logLimits }),
      ...(this.options.backoff === undefined ? {} : { backoff: this.options.backoff }),
      ...(this.options.stopTimeoutMs === undefined
        ? {}
        : { stopTimeoutMs: this.options.stopTimeoutMs }),
    })
    container.on('event', (event: ContainerEvent) => this.onContainerEvent(name, container, event))
    return container
  }

  private onContainerEvent(name: string, container: Container, event: ContainerEvent): void {
    const live = this.live.get(name)
    if (live === undefined || live.container !== container) return
    if (event.type === 'started') {
      const reason =
        event.restartCount === 0
          ? `container started (pid ${event.pid})`
          : `restarted (restart ${event.restartCount}, pid ${event.pid})`
      this.transition(name, 'running', reason)
      return
    }
    if (live.isStopping) return

    if (event.type === 'start-failed') {
      const why = event.error instanceof Error ? event.error.message : String(event.error)
      const delay = formatDuration(event.restartInMs ?? 0)
      this.transition(name, 'starting', `restart failed (${why}); retrying in ${delay}`)
      return
    }
    const code = event.exit.exitCode
    if (event.restartInMs !== undefined) {
      const delay = formatDuration(event.restartInMs)
      this.transition(name, 'starting', `exited with code ${code}; restarting in ${delay}`)
      return
    }
    live.spec = { ...live.spec, hasEnded: true, endedWith: event.exit }
    this.persistSpec(name, live)
    this.transition(name, code === 0 ? 'exited' : 'failed', `exited with code ${code}`)
  }

  /**
   * Stops the container, removes its directories and mount, and releases the image.
   * Order matters: the overlay goes before the FUSE view below it, and nothing is
   * deleted while anything is still mounted under the deployment directory.
   */
  private async teardown(name: string, live: Live): Promise<void> {
    await live.container?.unmount()
    await live.mounted?.unmount()
    await live.container?.remove()
    live.container = undefined
    live.mounted = undefined
    if (live.spec.imageId !== '')
      this.options.backend.release(live.spec.imageId, holderOf(name, live.spec.generation))
    await this.clearLeftovers(name, live.spec)
    await unmountOverlay(this.deploymentDir(name))
    await rm(this.deploymentDir(name), { recursive: true, force: true })
  }

  /**
   * What a killed agent left for this deployment: its container (a runc container keeps
   * the dead FUSE connection open, so it goes first), the overlay, and the FUSE view,
   * which no live server in this process can be serving, so it is aborted outright.
   */
  private async clearLeftovers(name: string, spec: DeploymentSpec): Promise<void> {
    const dir = this.deploymentDir(name)
    // An update interrupted by a kill may have left the generation before or after.
    for (const generation of [spec.generation - 1, spec.generation, spec.generation + 1]) {
      if (generation < 1) continue
      await this.options.runtime.cleanup(
        containerId(name, generation),
        path.join(dir, `c${generation}`),
      )
    }
    const mounts = await mountsUnder(dir)
    for (const mount of mounts.sort((a, b) => b.length - a.length)) {
      await abortMount(mount)
      await unmountOverlay(mount)
    }
  }

  private imageMountDir(name: string, generation: number): string {
    return path.join(this.deploymentDir(name), `image${generation}`)
  }

  // Resolves once the row is gone.
  private async forget(name: string): Promise<void> {
    const removed = this.record(name, () => this.options.records.removeAsync(name))
    this.live.delete(name)
    this.emit('removed', name)
    await removed
  }

  // The state is live at once; the event goes out once its row is durable (events keep
  // their order: the writer answers in order).
  private transition(name: string, state: DeploymentState, reason: string): void {
    const live = this.live.get(name)
    const previousState = live?.state
    const at = Date.now()
    if (live !== undefined) Object.assign(live, { state, reason, updatedAt: at })
    const stored = this.record(name, () => this.options.records.setStateAsync(name, state, reason))
    this.log.info({ deployment: name, state, previousState, reason }, 'deployment state')
    const event: DeploymentStateEvent = { name, state, reason, at }
    if (previousState !== undefined) event.previousState = previousState
    // A row that could not be stored was logged; the change is still real, so it is told.
    void stored.catch(() => undefined).then(() => this.emit('state', event))
  }

  private persistSpec(name: string, live: Live): void {
    void this.record(name, () =>
      this.options.records.putAsync({
        name,
        image: live.spec.image,
        spec: live.spec,
        state: live.state,
        reason: live.reason,
      }),
    ).catch(() => undefined)
  }

  /**
   * Sends one row write to the store's writer thread and makes it the one `info` waits
   * for. A write that fails is logged (an operator must look: the row on disk is stale)
   * and rethrown to the caller; `written` itself never rejects.
   */
  private record(name: string, write: () => Promise<unknown>): Promise<void> {
    const done = write().then(
      () => undefined,
      (err: unknown) => {
        this.log.error({ deployment: name, err: errorFields(err) }, 'deployment row not stored')
        throw err
      },
    )
    this.written = done.catch(() => undefined)
    return done
  }

  private require(name: string): Live {
    checkName(name)
    const live = this.live.get(name)
    if (live === undefined) {
      throw new EdgestarError(
        'EDGESTAR_AGENT_NO_SUCH_DEPLOYMENT',
        `no deployment named "${name}"`,
        {
          hint: 'edgestar ps lists the deployments',
        },
      )
    }
    return live
  }

  private deploymentDir(name: string): string {
    return path.join(this.options.stateDir, 'deployments', name)
  }

  /** Runs `fn` after every earlier operation on `name` has settled. */
  private serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const before = this.queues.get(name) ?? Promise.resolve()
    const result = before.catch(() => undefined).then(fn)
    const settled = result.catch(() => undefined)
    this.queues.set(name, settled)
    void settled.then(() => {
      if (this.queues.get(name) === settled) this.queues.delete(name)
    })
    return result
  }
}

/**
 * How many deployments a shutdown stops at once. Waiting containers cost only timers;
 * the bound keeps a device with many deployments from forking every runc at once.
 */
const SHUTDOWN_PARALLEL = 8

function withoutUpdate(request: DeployRequest): Omit<DeployRequest, 'update'> {
  const { update: _update, ...rest } = request
  return rest
}

/** Each generation has its own runtime id, so removing the old one never touches the new. */
function containerId(name: string, generation: number): string {
  return `edgestar-${name}.${generation}`
}

function holderOf(name: string, generation: number): string {
  return `deployment:${name}:${generation}`
}

function notReady(name: string): EdgestarError {
  return new EdgestarError(
    'EDGESTAR_AGENT_NOT_READY',
    `deployment "${name}" has no resolved image yet`,
    {
      hint: 'wait until its image reference resolves (edgestar status NAME)',
    },
  )
}

/** `; did not exit on SIGTERM within 10 s, ...` when the stop needed SIGKILL, else ''. */
function killedText(exit: ExitStatus | undefined): string {
  return exit?.killedAfterMs === undefined ? '' : `; ${sigkillNote(exit.killedAfterMs)}`
}

/** `CODE: message` of what failed, for a message that wraps it. */
function causeText(err: unknown): string {
  if (isEdgestarError(err)) return `${err.code}: ${err.message}`
  return err instanceof Error ? err.message : String(err)
}

function errorFields(err: unknown): Record<string, unknown> {
  if (isEdgestarError(err)) return err.toJSON()
  return { message: err instanceof Error ? err.message : String(err) }
}
