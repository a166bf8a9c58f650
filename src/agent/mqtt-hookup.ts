import { readFile } from 'node:fs/promises'
import { EdgestarError } from '../errors.js'
import { loadFleetPublicKey, MqttBridge, type MqttBridgeOptions } from '../mqtt/index.js'
import type { Agent } from './agent.js'
import { AgentDeviceController } from './device-controller.js'

/**
 * Connects the agent to the fleet broker when `mqttUrl` is configured: builds the
 * bridge options from the agent config (password and keys read from their files),
 * starts the bridge (which never blocks the agent on the broker) and stops it first
 * on shutdown. Does nothing without `mqttUrl`.
 */
export async function startMqtt(agent: Agent): Promise<MqttBridge | undefined> {
  const config = agent.config
  if (config.mqttUrl === undefined) return undefined

  const password = await readSecretFile(config.mqttPasswordFile, '--mqtt-password-file')
  const fleetKey = await readSecretFile(config.mqttFleetKeyFile, '--mqtt-fleet-key-file')
  // Checked here, where the file's name is known, so an error can name it.
  if (fleetKey !== undefined)
    loadFleetPublicKey(fleetKey, `--mqtt-fleet-key-file ${config.mqttFleetKeyFile}`)
  const tls = {
    ...(config.mqttCaFile === undefined ? {} : { caFile: config.mqttCaFile }),
    ...(config.mqttCertFile === undefined ? {} : { certFile: config.mqttCertFile }),
    ...(config.mqttKeyFile === undefined ? {} : { keyFile: config.mqttKeyFile }),
  }
  const options: MqttBridgeOptions = {
    url: config.mqttUrl,
    groups: config.mqttGroups,
    telemetryIntervalMs: config.mqttTelemetryIntervalMs,
    diskPath: config.stateDir,
    version: agent.version,
    ...(config.mqttDeviceId === undefined ? {} : { deviceId: config.mqttDeviceId }),
    ...(config.mqttPrefix === undefined ? {} : { prefix: config.mqttPrefix }),
    ...(config.mqttUsername === undefined ? {} : { username: config.mqttUsername }),
    ...(password === undefined ? {} : { password }),
    ...(fleetKey === undefined ? {} : { fleetPublicKey: fleetKey }),
    ...(Object.keys(tls).length === 0 ? {} : { tls }),
  }

  const controller = new AgentDeviceController(agent)
  const bridge = new MqttBridge(options, controller, agent.store)
  agent.onClose(async () => {
    await bridge.stop()
    controller.detach()
  })
  await bridge.start()
  return bridge
}

async function readSecretFile(
  file: string | undefined,
  option: string,
): Promise<string | undefined> {
  if (file === undefined) return undefined
  try {
    return (await readFile(file, 'utf8')).trim()
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    throw new EdgestarError(
      'EDGESTAR_AGENT_CONFIG_FILE_UNREADABLE',
      `cannot read ${option} ${file} (${code})`,
      {
        hint: `check the path and that the agent (root) can read it, or leave ${option} out`,
        cause: err,
      },
    )
  }
}
