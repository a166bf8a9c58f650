import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { userInfo } from 'node:os'
import path from 'node:path'
import { EdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import {
  type ContainerRuntime,
  currentLogSize,
  detectRuntime,
  readCurrentLogFrom,
  readLogsForFollow,
} from '../runtime/index.js'
import { Store } from '../store/index.js'
import { ApiServer } from './api-server.js'
import type { AgentConfig } from './config.js'
import { DeploymentManager } from './deployment-manager.js'
import type { ApiMessage, ApiMethod } from './protocol.js'
import { lockStateDir } from './state-lock.js'
import type { AgentStatus, DeploymentStateEvent, ImageBackend } from './types.js'
import { checkName } from './validate.js'

/** Builds the image backend over an opened store (tests pass their own). */
export type BackendFactory = (store: Store, config: AgentConfig) => Promise<ImageBackend>

/** How to start an agent. */
export interface AgentOptions {
  config: AgentConfig
  backendFactory: BackendFactory
  version?: string
  /** Restart backoff of containers (tests shorten it). */
  backoff?: { initialMs: number; maxMs: number; resetAfterMs: number }
  /** Called once the API listens, with the agent, so extra front ends (MQTT) can attach. */
  onReady?: (agent: Agent) => Promise<void>
}

const LOG_POLL_MS = 200
const SETTINGS_FILE = 'agent-settings.json'

/**
 * The daemon: opens the store, finds a container runtime, serves the local API on the
 * Unix socket, and restores every deployment in the background (so the API answers at
 * once, also with the registry unreachable). `close` is the graceful shutdown: it stops
 * containers and unmounts, keeps desired states, and never deletes cached data.
 */
export class Agent {
  readonly config: AgentConfig
  readonly store: Store
  readonly backend: ImageBackend
  readonly runtime: ContainerRuntime
  readonly deployments: DeploymentManager
  readonly version: string
  private readonly server: ApiServer
  private readonly log = moduleLogger('agent')
  private readonly closers: Array<() => Promise<void>> = []
  private releaseStateDir: () => void = () => {}
  private closing: Promise<void> | undefined

  private constructor(parts: {
    config: AgentConfig
    store: Store
    backend: ImageBackend
    runtime: ContainerRuntime
    deployments: DeploymentManager
    version: string
    socketGid: number | undefined
  }) {
    this.config = parts.config
    this.store = parts.store
    this.backend = parts.backend
    this.runtime = parts.runtime
    this.deployments = parts.deployments
    this.version = parts.version
    this.server = new ApiServer(
      {
        socketPath: parts.config.socket,
        ...(parts.socketGid === undefined ? {} : { socketGid: parts.socketGid }),
      },
      (method, params, send, signal) => this.handle(method, params, send, signal),
    )
  }

  /**
   * Starts the agent. Throws EDGESTAR_AGENT_NOT_ROOT when not run as root,
   * EDGESTAR_AGENT_SOCKET_FAILED, EDGESTAR_STORE_* or EDGESTAR_RUNTIME_NOT_FOUND.
   */
  static async start(options: AgentOptions): Promise<Agent> {
    const config = options.config
    if (process.getuid?.() !== 0) {
      throw new EdgestarError(
        'EDGESTAR_AGENT_NOT_ROOT',
        `the agent must run as root (running as ${userInfo().username})`,
        {
          hint: 'it mounts FUSE and overlay filesystems and runs containers; start it with sudo or systemd',
        },
      )
    }
    await mkdir(config.stateDir, { recursive: true, mode: 0o700 })
    const releaseStateDir = lockStateDir(config.stateDir)
    const socketGid = await groupId(config.socketGroup)
    const store = Store.open(
      config.stateDir,
      config.cacheLimitBytes === null ? {} : { cacheLimitBytes: config.cacheLimitBytes },
    )
    let agent: Agent
    try {
      const runtime = await detectRuntime(config.runtime, path.join(config.stateDir, 'runc'))
      const backend = await options.backendFactory(store, config)
      await applySettings(backend, config)
      const deployments = new DeploymentManager({
        stateDir: config.stateDir,
        records: store.deployments,
        backend,
        runtime,
        logLimits: { maxFileBytes: config.logMaxFileBytes, maxFiles: config.logMaxFiles },
        stopTimeoutMs: config.stopTimeoutMs,
        updateGraceMs: config.updateGraceMs,
        ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
      })
      agent = new Agent({
        config,
        store,
        backend,
        runtime,
        deployments,
        version: options.version ?? '0.1.0',
        socketGid,
      })
      agent.releaseStateDir = releaseStateDir
    } catch (err) {
      store.close()
      releaseStateDir()
      throw err
    }

    // From here the agent owns the socket, restored containers and mounts: a failure
    // (a bad MQTT setting in onReady, say) shuts all of it down, so the process can exit
    // instead of serving a socket with a closed store.
    try {
      await agent.server.listen()
      agent.log.info(
        { socket: config.socket, runtime: agent.runtime.kind, stateDir: config.stateDir },
        'agent started',
      )
      void agent.deployments.restore()
      await options.onReady?.(agent)
      return agent
    } catch (err) {
      await agent
        .close()
        .catch((closeErr: unknown) =>
          agent.log.warn({ err: closeErr }, 'shutdown after a failed start failed'),
        )
      throw err
    }
  }

  /** Registers a shutdown step run first by `close` (an MQTT bridge's stop). */
  onClose(fn: () => Promise<void>): void {
    this.closers.push(fn)
  }

  /** Graceful shutdown; safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  /** Sets the background fetch cap (null = uncapped) and remembers it across restarts. */
  async setBandwidth(capBytesPerSec: number | null): Promise<void> {
    this.backend.setBandwidth(capBytesPerSec)
    await this.saveSettings()
    this.log.info({ capBytesPerSec }, 'bandwidth cap set')
  }

  /** Sets how long reads of missing chunks wait for the link; remembered across restarts. */
  async setOfflineWaitMs(waitMs: number): Promise<void> {
    this.backend.setOfflineWaitMs(waitMs)
    await this.saveSettings()
    this.log.info({ waitMs }, 'offline wait set')
  }

  /** Agent-wide status with every deployment (sums run in the store's reader thread). */
  async status(): Promise<AgentStatus> {
    const [cache, deployments] = await Promise.all([
      this.backend.cacheUsage(),
      this.deployments.list(),
    ])
    return {
      version: this.version,
      pid: process.pid,
      runtime: this.runtime.kind,
      stateDir: this.config.stateDir,
      link: this.backend.link(),
      bandwidth: { capBytesPerSec: this.backend.bandwidth() },
      offlineWaitMs: this.backend.offlineWaitMs(),
      cache,
      deployments,
    }
  }

  private async shutdown(): Promise<void> {
    this.log.info('agent stopping')
    for (const fn of this.closers)
      await fn().catch((err: unknown) => this.log.warn({ err }, 'shutdown step failed'))
    await this.server.close()
    // Containers stop while the scheduler still serves reads: a SIGTERM handler may read
    // files of the image that were never fetched, and would get EIO from a closed one.
    await this.deployments.stopContainers()
    // Closing the scheduler before the rest fails pending fetches (an update's prefetch,
    // say), so no deployment operation holds the shutdown up; unmounting needs no scheduler.
    await this.backend.close()
    await this.deployments.shutdown()
    this.store.close()
    this.releaseStateDir()
    this.log.info('agent stopped')
  }

  private async handle(
    method: ApiMethod,
    params: Record<string, unknown>,
    send: (message: ApiMessage) => void,
    signal: AbortSignal,
  ): Promise<unknown> {
    switch (method) {
      case 'ping':
        return { version: this.version, pid: process.pid }
      case 'deploy':
        return this.deploy(params, send)
      case 'stop':
        return this.deployments.stop(nameOf(params))
      case 'start':
        return this.deployments.start(nameOf(params))
      case 'remove':
        return this.deployments.remove(nameOf(params))
      case 'status':
        return params.name === undefined ? this.status() : this.deployments.info(nameOf(params))
      case 'list':
        return this.deployments.list()
      case 'logs':
        return this.streamLogs(nameOf(params), params.follow === true, send, signal)
      case 'bandwidth':
        if (params.capBytesPerSec !== undefined)
          await this.setBandwidth(rateParam(params.capBytesPerSec))
        return { capBytesPerSec: this.backend.bandwidth() }
      case 'offline-wait':
        if (params.waitMs !== undefined)
          await this.setOfflineWaitMs(intParam(params.waitMs, 'waitMs'))
        return { offlineWaitMs: this.backend.offlineWaitMs() }
      case 'prefetch': {
        const imageId = this.deployments.imageIdOf(nameOf(params))
        void this.backend
          .prefetch(imageId)
          .catch((err: unknown) => this.log.warn({ err }, 'prefetch failed'))
        return { queued: nameOf(params) }
      }
      case 'gc':
        return this.backend.gc()
      case 'events':
        return this.streamEvents(send, signal)
    }
  }

  /**
   * Deploys, streaming the deployment's state changes. A create answers once the
   * container has started, or with the error that kept it from starting, `detach` or
   * not; an update with `detach` answers once its background prefetch has begun.
   */
  private deploy(
    params: Record<string, unknown>,
    send: (message: ApiMessage) => void,
  ): Promise<unknown> {
    const name = params.name
    const onState = (event: DeploymentStateEvent): void => {
      if (event.name === name) send({ type: 'event', event })
    }
    this.deployments.on('state', onState)
    return new Promise((resolve, reject) => {
      const stopStreaming = (): void => void this.deployments.off('state', onState)
      try {
        const done = this.deployments.deploy(params, () => {
          if (params.detach === true) resolve(this.deployments.info(name as string))
        })
        done.then(resolve, reject).finally(stopStreaming)
      } catch (err) {
        stopStreaming()
        reject(err)
      }
    })
  }

  private async streamLogs(
    name: string,
    follow: boolean,
    send: (message: ApiMessage) => void,
    signal: AbortSignal,
  ): Promise<unknown> {
    const dir = this.deployments.logDir(name)
    let hasEnded = this.deployments.hasEnded(name)
    const past = await readLogsForFollow(dir, this.config.logMaxFiles)
    if (past.data.length > 0) send({ type: 'log', data: past.data.toString('base64') })
    let offset = past.currentBytes
    if (!follow) return { name }

    // Follow by polling the current file; a smaller size means it was rotated. The end
    // is checked before each read, so the read after it returns the last output.
    for (;;) {
      const size = await currentLogSize(dir)
      if (size < offset) offset = 0
      const data = size > offset ? await readCurrentLogFrom(dir, offset) : Buffer.alloc(0)
      offset += data.length
      if (data.length > 0) send({ type: 'log', data: data.toString('base64') })
      if (hasEnded || signal.aborted) return { name, hasEnded }
      await new Promise((resolve) => setTimeout(resolve, LOG_POLL_MS))
      hasEnded = this.deployments.hasEnded(name)
    }
  }

  private streamEvents(send: (message: ApiMessage) => void, signal: AbortSignal): Promise<unknown> {
    return new Promise((resolve) => {
      const onState = (event: DeploymentStateEvent): void => send({ type: 'event', event })
      this.deployments.on('state', onState)
      signal.addEventListener('abort', () => {
        this.deployments.off('state', onState)
        resolve(null)
      })
    })
  }

  private async saveSettings(): Promise<void> {
    const settings = {
      bandwidthBytesPerSec: this.backend.bandwidth(),
      offlineWaitMs: this.backend.offlineWaitMs(),
    }
    const file = path.join(this.config.stateDir, SETTINGS_FILE)
    await writeFile(`${file}.tmp`, JSON.stringify(settings))
    await rename(`${file}.tmp`, file)
  }
}

/**
 * Values changed through the API are kept in `<stateDir>/agent-settings.json` and win
 * over the config file, so a cap set over MQTT survives a reboot; a flag or environment
 * variable given at start wins over them (the operator asked for it just now).
 */
async function applySettings(backend: ImageBackend, config: AgentConfig): Promise<void> {
  backend.setBandwidth(config.bandwidthBytesPerSec)
  backend.setOfflineWaitMs(config.offlineWaitMs)
  const text = await readFile(path.join(config.stateDir, SETTINGS_FILE), 'utf8').catch(
    () => undefined,
  )
  if (text === undefined) return
  try {
    const saved = JSON.parse(text) as {
      bandwidthBytesPerSec?: number | null
      offlineWaitMs?: number
    }
    if (saved.bandwidthBytesPerSec !== undefined && !config.explicit?.bandwidth)
      backend.setBandwidth(saved.bandwidthBytesPerSec)
    if (typeof saved.offlineWaitMs === 'number' && !config.explicit?.offlineWait)
      backend.setOfflineWaitMs(saved.offlineWaitMs)
  } catch {
    // A torn settings file falls back to the config file's values.
  }
}

async function groupId(group: string | undefined): Promise<number | undefined> {
  if (group === undefined) return undefined
  if (/^\d+$/.test(group)) return Number(group)
  const text = await readFile('/etc/group', 'utf8').catch(() => '')
  const row = text.split('\n').find((line) => line.split(':')[0] === group)
  if (row === undefined) {
    throw new EdgestarError('EDGESTAR_CONFIG_INVALID', `socket group "${group}" does not exist`, {
      hint: 'create it (groupadd) or give a gid',
    })
  }
  return Number(row.split(':')[2])
}

function nameOf(params: Record<string, unknown>): string {
  return checkName(params.name)
}

function rateParam(value: unknown): number | null {
  if (value === null || value === 0) return null
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new EdgestarError(
      'EDGESTAR_AGENT_BAD_REQUEST',
      `bandwidth cap ${JSON.stringify(value)} is not a number of bytes per second`,
    )
  }
  return Math.floor(value)
}

function intParam(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
    throw new EdgestarError('EDGESTAR_AGENT_BAD_REQUEST', `${field} must be a whole number >= 0`)
  return value
}
