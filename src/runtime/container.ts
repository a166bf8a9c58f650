import { EventEmitter } from 'node:events'
import { mkdir, rm } from 'node:fs/promises'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { moduleLogger } from '../log.js'
import { findInitBinary } from './init-process.js'
import { RotatingLog } from './log-file.js'
import {
  mountOverlay,
  mountsUnder,
  type OverlayPaths,
  overlayPaths,
  removeOverlay,
  unmountOverlay,
} from './overlay.js'
import { resolveProcessSpec } from './process-spec.js'
import {
  type BackoffOptions,
  DEFAULT_BACKOFF,
  restartDelayMs,
  shouldRestart,
} from './restart-backoff.js'
import type { ContainerRuntime, RunningProcess } from './runtime.js'
import {
  type BindMount,
  DEFAULT_LOG_LIMITS,
  type ExitStatus,
  type ImageRunConfig,
  type LogLimits,
  type NetworkMode,
  type ProcessSpec,
  type RestartPolicy,
  type RunOverrides,
} from './types.js'

/** Everything needed to run one container. */
export interface ContainerOptions {
  /** Runtime container id: letters, digits, `-`, `_`, `.`. */
  id: string
  /** Directory owned by this container: overlay upper/work, merged root, bundle, logs. */
  containerDir: string
  /** Read-only lower directories, top first (the image's FUSE view). */
  lowerDirs: string[]
  runtime: ContainerRuntime
  image: ImageRunConfig
  overrides?: RunOverrides
  network?: NetworkMode
  binds?: BindMount[]
  restart?: RestartPolicy
  log?: LogLimits
  backoff?: BackoffOptions
  /** How long `stop` waits after SIGTERM before SIGKILL. */
  stopTimeoutMs?: number
  /** Where the log files go; default `<containerDir>/logs`. Kept by `remove` when outside. */
  logDir?: string
  /**
   * Runs a small init (tini) as pid 1 in front of the process: it passes signals on and
   * reaps orphans. Without it, a pid 1 that sets no SIGTERM handler ignores SIGTERM
   * (the kernel's rule for a namespace's init) and is killed only after the stop timeout.
   */
  init?: boolean
}

/** What a container reports while it runs. */
export type ContainerEvent =
  | { type: 'started'; pid: number; restartCount: number; startedAt: string }
  | { type: 'exited'; exit: ExitStatus; restartInMs?: number; restartCount: number }
  | { type: 'start-failed'; error: unknown; restartInMs?: number; restartCount: number }

/** The container's own view of where it is. */
export type ContainerPhase = 'created' | 'running' | 'waiting' | 'exited' | 'stopped'

/**
 * One container over an overlay: mounts the overlay, checks and starts the process
 * with the runtime, writes its output to rotating log files, and restarts it by its
 * policy with doubling backoff. Emits 'event' with a ContainerEvent for every change.
 */
export class Container extends EventEmitter {
  readonly id: string
  readonly paths: OverlayPaths
  readonly logDir: string
  private readonly options: ContainerOptions
  private readonly log
  private process: RunningProcess | undefined
  private processSpec: ProcessSpec | undefined
  private initBinary: string | undefined
  private restartTimer: NodeJS.Timeout | undefined
  private launching: Promise<void> | undefined
  private quickExits = 0
  private restarts = 0
  private isStopping = false
  private current: ContainerPhase = 'created'
  private lastExitStatus: ExitStatus | undefined
  private killedAfterMs: number | undefined
  private exitWaiters: Array<() => void> = []

  constructor(options: ContainerOptions) {
    super()
    this.options = options
    this.id = options.id
    this.paths = overlayPaths(options.containerDir)
    this.logDir = options.logDir ?? path.join(options.containerDir, 'logs')
    this.log = moduleLogger('runtime', { container: options.id, runtime: options.runtime.kind })
  }

  /** Where the container is now. */
  get phase(): ContainerPhase {
    return this.current
  }

  /** How the last run ended, if one did. */
  get lastExit(): ExitStatus | undefined {
    return this.lastExitStatus
  }

  /** How many times the restart policy restarted it since `start`. */
  get restartCount(): number {
    return this.restarts
  }

  /** Host pid of the runtime process while running. */
  get pid(): number | undefined {
    return this.process?.pid
  }

  /**
   * Mounts the overlay (unless mounted), resolves the process against the image and
   * starts it. Throws the EdgestarError of the first failure (command missing, init
   * missing, overlay or runtime failure) without retrying; later exits follow the
   * restart policy.
   */
  async start(): Promise<void> {
    if (this.current === 'running' || this.current === 'waiting') return
    if (this.options.init === true) this.initBinary = await findInitBinary()
    this.isStopping = false
    this.quickExits = 0
    this.restarts = 0
    await mkdir(this.logDir, { recursive: true })
    await this.options.runtime.cleanup(this.id, this.options.containerDir)
    const mounted = await mountsUnder(this.paths.mergedDir)
    if (!mounted.includes(this.paths.mergedDir))
      await mountOverlay(this.options.lowerDirs, this.paths)

    this.processSpec = await resolveProcessSpec(
      this.paths.mergedDir,
      this.options.image,
      this.options.overrides,
    )
    await this.launch()
  }

  /**
   * Stops the container and its restarts: SIGTERM, then SIGKILL after the stop
   * timeout (default 10 s). Resolves once it has exited, with how that run ended
   * (`killedAfterMs` set when the SIGKILL was needed), or undefined when nothing ran.
   * The overlay stays mounted.
   */
  async stop(timeoutMs = this.options.stopTimeoutMs ?? 10_000): Promise<ExitStatus | undefined> {
    this.isStopping = true
    clearTimeout(this.restartTimer)
    this.restartTimer = undefined
    // A restart may be half-way through launching: let it finish, then stop what it started.
    await this.launching?.catch(() => undefined)
    const running = this.process
    if (running === undefined) {
      if (this.current !== 'created') this.current = 'stopped'
      return undefined
    }

    await running.kill('SIGTERM')
    const killTimer = setTimeout(() => {
      // Recorded before the kill, so the exit it causes carries it.
      this.killedAfterMs = timeoutMs
      this.log.warn({ timeoutMs }, 'container ignored SIGTERM; killing')
      void running.kill('SIGKILL')
    }, timeoutMs)
    await running.exited
    clearTimeout(killTimer)
    await this.waitForExitHandled()
    this.current = 'stopped'
    return this.lastExitStatus
  }

  /** Stops and detaches the overlay, keeping the upper dir (what the container wrote). */
  async unmount(): Promise<void> {
    await this.stop()
    await unmountOverlay(this.paths.mergedDir)
  }

  /**
   * Stops, unmounts and deletes everything of this container: upper dir, bundle, and
   * the logs when they live in the container directory. Anything still mounted below
   * the container directory is detached first, so the delete never reaches into a mount.
   */
  async remove(): Promise<void> {
    await this.stop()
    await this.options.runtime.cleanup(this.id, this.options.containerDir)
    await removeOverlay(this.paths)
    await unmountOverlay(this.options.containerDir)
    await rm(this.options.containerDir, { recursive: true, force: true })
  }

  private async launch(): Promise<void> {
    const spec = this.processSpec as ProcessSpec
    const logFile = new RotatingLog(this.logDir, this.options.log ?? DEFAULT_LOG_LIMITS)
    const running = await this.options.runtime.launch({
      id: this.id,
      containerDir: this.options.containerDir,
      rootDir: this.paths.mergedDir,
      process: spec,
      network: this.options.network ?? 'host',
      binds: this.options.binds ?? [],
      ...(this.initBinary === undefined ? {} : { init: this.initBinary }),
    })
    const startedAt = new Date().toISOString()
    this.process = running
    this.killedAfterMs = undefined
    this.current = 'running'
    running.stdout.on('data', (chunk: Buffer) => void logFile.write(chunk))
    running.stderr.on('data', (chunk: Buffer) => void logFile.write(chunk))
    this.log.info({ pid: running.pid, restartCount: this.restarts }, 'container started')
    this.emit('event', {
      type: 'started',
      pid: running.pid,
      restartCount: this.restarts,
      startedAt,
    })

    const drained = outputDrained([running.stdout, running.stderr])
    void running.exited.then(async (exit) => {
      // The exit can come before the last output: let the pipes drain into the log first,
      // but not forever (a child that outlived the process may hold them open).
      await Promise.race([drained, delay(OUTPUT_DRAIN_MS, undefined, { ref: false })])
      await logFile.close()
      const killed = this.killedAfterMs === undefined ? {} : { killedAfterMs: this.killedAfterMs }
      this.onExit({ ...exit, startedAt, finishedAt: new Date().toISOString(), ...killed })
    })
  }

  private onExit(exit: ExitStatus): void {
    this.process = undefined
    this.lastExitStatus = exit
    this.current = 'exited'
    const policy = this.options.restart ?? 'no'
    const willRestart = !this.isStopping && shouldRestart(policy, exit.exitCode)
    const restartInMs = willRestart ? this.nextDelay(exit) : undefined
    this.log.info({ exitCode: exit.exitCode, signal: exit.signal, restartInMs }, 'container exited')
    this.emit('event', {
      type: 'exited',
      exit,
      restartCount: this.restarts,
      ...(restartInMs === undefined ? {} : { restartInMs }),
    })
    if (restartInMs !== undefined) this.scheduleRestart(restartInMs)
    for (const waiter of this.exitWaiters.splice(0)) waiter()
  }

  private nextDelay(exit: ExitStatus): number {
    const ranMs = Date.parse(exit.finishedAt) - Date.parse(exit.startedAt)
    const backoff = this.options.backoff ?? DEFAULT_BACKOFF
    this.quickExits = ranMs >= backoff.resetAfterMs ? 1 : this.quickExits + 1
    return restartDelayMs(this.quickExits, backoff)
  }

  private scheduleRestart(delayMs: number): void {
    this.current = 'waiting'
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined
      if (this.isStopping) return
      this.restarts += 1
      this.launching = this.launch().finally(() => {
        this.launching = undefined
      })
      this.launching.catch((error: unknown) => {
        if (this.isStopping) return
        const restartInMs = this.nextDelay({
          exitCode: -1,
          startedAt: new Date().toISOString(),
          finishedAt: new Date().toISOString(),
        })
        this.log.warn({ err: error, restartInMs }, 'container restart failed')
        this.emit('event', {
          type: 'start-failed',
          error,
          restartInMs,
          restartCount: this.restarts,
        })
        this.scheduleRestart(restartInMs)
      })
    }, delayMs)
  }

  private waitForExitHandled(): Promise<void> {
    if (this.process === undefined) return Promise.resolve()
    return new Promise((resolve) => this.exitWaiters.push(resolve))
  }
}

/** How long output may keep arriving after the exit (a child that kept the pipe open). */
const OUTPUT_DRAIN_MS = 1000

// Resolves once every stream has ended, closed or failed.
function outputDrained(streams: NodeJS.ReadableStream[]): Promise<void> {
  const ended = streams.map(
    (stream) =>
      new Promise<void>((resolve) => {
        stream.once('end', resolve)
        stream.once('close', resolve)
        stream.once('error', resolve)
      }),
  )
  return Promise.all(ended).then(() => undefined)
}
