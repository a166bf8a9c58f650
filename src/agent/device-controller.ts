import { EventEmitter } from 'node:events'
import type {
  CommandData,
  ControllerTelemetry,
  DeploySpec,
  DeviceController,
  DeviceControllerEvents,
  DeviceSnapshot,
} from '../mqtt/index.js'
import type { Agent } from './agent.js'
import type { DeploymentInfo, DeploymentStateEvent } from './types.js'

/**
 * The agent as the MQTT bridge sees it (H7's DeviceController): fleet commands become
 * deployment-manager calls, state changes become `deployment-state` events, and a
 * deployment that ends in `failed` also raises a `fault`.
 */
export class AgentDeviceController implements DeviceController {
  readonly events = new EventEmitter<DeviceControllerEvents>()
  private readonly agent: Agent
  private readonly lastFetched = new Map<string, { bytes: number; at: number }>()
  private readonly onState = (event: DeploymentStateEvent): void => {
    this.events.emit('event', {
      type: 'deployment-state',
      deployment: event.name,
      state: event.state,
      ...(event.previousState === undefined ? {} : { previousState: event.previousState }),
      ...(event.reason === null ? {} : { detail: event.reason }),
    })
    if (event.state === 'failed') {
      this.events.emit('event', {
        type: 'fault',
        code: 'EDGESTAR_AGENT_DEPLOYMENT_FAILED',
        message: event.reason ?? 'deployment failed',
        deployment: event.name,
      })
    }
  }

  private readonly stopLinkWatch: () => void
  // The retained status lists deployments: one that is gone must leave it at once.
  private readonly onRemoved = (): void => {
    this.events.emit('status-changed')
  }

  constructor(agent: Agent) {
    this.agent = agent
    agent.deployments.on('state', this.onState)
    agent.deployments.on('removed', this.onRemoved)
    // The retained status carries the link state: a slow or lost registry link must show
    // there without waiting for a deployment to change state.
    this.stopLinkWatch = agent.backend.onLinkChange(() => this.events.emit('status-changed'))
  }

  /** Stops forwarding state and link changes. */
  detach(): void {
    this.agent.deployments.off('state', this.onState)
    this.agent.deployments.off('removed', this.onRemoved)
    this.stopLinkWatch()
  }

  /**
   * Creates the deployment, or updates it when the name exists; a command with
   * `update: false` (what `edgestar fleet deploy` sends without --update) refuses a name
   * that exists, as the local `edgestar deploy` does.
   */
  async deploy(spec: DeploySpec): Promise<CommandData> {
    const info = await this.agent.deployments.deploy({ ...spec, update: spec.update !== false })
    return { deployment: summary(info) }
  }

  async stop(name: string): Promise<CommandData> {
    return { deployment: summary(await this.agent.deployments.stop(name)) }
  }

  async start(name: string): Promise<CommandData> {
    return { deployment: summary(await this.agent.deployments.start(name)) }
  }

  async remove(name: string): Promise<CommandData> {
    await this.agent.deployments.remove(name)
    return { removed: name }
  }

  async bandwidth(capBytesPerSec: number | null): Promise<CommandData> {
    await this.agent.setBandwidth(capBytesPerSec === 0 ? null : capBytesPerSec)
    return { capBytesPerSec: this.agent.backend.bandwidth() }
  }

  async prefetch(name: string): Promise<CommandData> {
    const imageId = this.agent.deployments.imageIdOf(name)
    void this.agent.backend.prefetch(imageId).catch(() => undefined)
    return { queued: name }
  }

  async gc(): Promise<CommandData> {
    return { ...(await this.agent.backend.gc()) }
  }

  async status(): Promise<DeviceSnapshot> {
    const status = await this.agent.status()
    return {
      deployments: status.deployments.map((d) => ({
        name: d.name,
        image: d.image,
        state: d.state,
        progress: { fetchedBytes: d.fetchedBytes, totalBytes: d.totalBytes },
        ...(d.state === 'failed'
          ? { error: { code: 'EDGESTAR_AGENT_DEPLOYMENT_FAILED', message: d.reason ?? 'failed' } }
          : {}),
      })),
      link: { state: status.link.state },
      bandwidth: { capBytesPerSec: status.bandwidth.capBytesPerSec },
      cache: status.cache,
    }
  }

  async telemetry(): Promise<ControllerTelemetry> {
    const status = await this.agent.status()
    const now = Date.now()
    const deployments = status.deployments.map((d) => {
      const last = this.lastFetched.get(d.name)
      const seconds = last === undefined ? 0 : (now - last.at) / 1000
      const rate =
        last === undefined || seconds <= 0
          ? 0
          : Math.max(0, (d.fetchedBytes - last.bytes) / seconds)
      this.lastFetched.set(d.name, { bytes: d.fetchedBytes, at: now })
      return {
        name: d.name,
        fetchRateBytesPerSec: Math.round(rate),
        fetchedBytes: d.fetchedBytes,
        cachedBytes: d.fetchedBytes,
        totalBytes: d.totalBytes,
      }
    })
    return { deployments, link: { state: status.link.state }, cache: status.cache }
  }
}

function summary(info: DeploymentInfo): Record<string, unknown> {
  return { name: info.name, image: info.image, state: info.state, reason: info.reason }
}
