import { EventEmitter } from 'node:events'
import { EdgestarError } from '../../src/errors.js'
import type {
  CommandData,
  ControllerTelemetry,
  DeploymentStatus,
  DeploySpec,
  DeviceController,
  DeviceControllerEvents,
  DeviceSnapshot,
  LinkState,
} from '../../src/mqtt/index.js'

/**
 * A DeviceController that keeps deployments in memory and moves them through
 * pending → running at once, emitting each state change. It counts every call so tests
 * can check a command ran exactly once.
 */
export class FakeController implements DeviceController {
  readonly events = new EventEmitter<DeviceControllerEvents>()
  readonly calls: { method: string; arg: unknown }[] = []
  readonly deployments = new Map<string, DeploymentStatus>()
  capBytesPerSec: number | null = null
  link: LinkState = 'online'

  /** When set, deploy waits for it after recording the call (a deploy in progress). */
  gate: Promise<void> | undefined

  async deploy(spec: DeploySpec): Promise<CommandData> {
    this.calls.push({ method: 'deploy', arg: spec })
    await this.gate
    // As the agent: a name that exists is replaced unless the command says update: false.
    if (spec.update === false && this.deployments.has(spec.name))
      throw new EdgestarError(
        'EDGESTAR_AGENT_NAME_TAKEN',
        `a deployment named "${spec.name}" already exists`,
        { hint: 'deploy with --update to move it to a new image' },
      )
    this.#setState(spec.name, spec.image, 'pending')
    this.#setState(spec.name, spec.image, 'running')
    return { deployment: { name: spec.name, state: 'running' } }
  }

  async stop(name: string): Promise<CommandData> {
    this.calls.push({ method: 'stop', arg: name })
    const deployment = this.#get(name)
    this.#setState(name, deployment.image, 'stopped')
    return { deployment: { name, state: 'stopped' } }
  }

  async start(name: string): Promise<CommandData> {
    this.calls.push({ method: 'start', arg: name })
    const deployment = this.#get(name)
    this.#setState(name, deployment.image, 'running')
    return { deployment: { name, state: 'running' } }
  }

  async remove(name: string): Promise<undefined> {
    this.calls.push({ method: 'remove', arg: name })
    const deployment = this.#get(name)
    this.#setState(name, deployment.image, 'removed')
    this.deployments.delete(name)
    return undefined
  }

  async bandwidth(capBytesPerSec: number | null): Promise<CommandData> {
    this.calls.push({ method: 'bandwidth', arg: capBytesPerSec })
    this.capBytesPerSec = capBytesPerSec
    return { capBytesPerSec }
  }

  async prefetch(name: string): Promise<undefined> {
    this.calls.push({ method: 'prefetch', arg: name })
    this.#get(name)
    return undefined
  }

  async gc(): Promise<CommandData> {
    this.calls.push({ method: 'gc', arg: undefined })
    return { freedBytes: 0 }
  }

  async status(): Promise<DeviceSnapshot> {
    return {
      deployments: [...this.deployments.values()],
      link: { state: this.link },
      bandwidth: { capBytesPerSec: this.capBytesPerSec },
      cache: { usedBytes: 4096, limitBytes: 1 << 30 },
    }
  }

  async telemetry(): Promise<ControllerTelemetry> {
    return {
      deployments: [...this.deployments.values()].map((d) => ({
        name: d.name,
        fetchRateBytesPerSec: 1024,
        fetchedBytes: 65536,
        cachedBytes: 65536,
        totalBytes: 1 << 20,
      })),
      link: { state: 'online' },
      cache: { usedBytes: 4096 },
    }
  }

  /** Changes the registry link state, as the agent's fetch scheduler does. */
  setLink(state: LinkState): void {
    this.link = state
    this.events.emit('status-changed')
  }

  /** Emits a fault event, numbered, as the agent would report a problem. */
  fault(n: number): void {
    this.events.emit('event', { type: 'fault', code: 'EDGESTAR_TEST_FAULT', message: `fault ${n}` })
  }

  /** How many times `method` was called. */
  count(method: string): number {
    return this.calls.filter((call) => call.method === method).length
  }

  #get(name: string): DeploymentStatus {
    const deployment = this.deployments.get(name)
    if (deployment !== undefined) return deployment
    throw new EdgestarError('EDGESTAR_AGENT_NO_SUCH_DEPLOYMENT', `no deployment named ${name}`, {
      hint: 'edgestar ps lists the deployments',
    })
  }

  #setState(name: string, image: string, state: string): void {
    const previousState = this.deployments.get(name)?.state
    this.deployments.set(name, { name, image, state, progress: { fetchedBytes: 65536 } })
    this.events.emit('event', {
      type: 'deployment-state',
      deployment: name,
      state,
      ...(previousState === undefined ? {} : { previousState }),
    })
  }
}
