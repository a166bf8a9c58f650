import { type Command, Option } from 'commander'
import {
  AGENT_OPTIONS,
  Agent,
  createLazyBackend,
  loadAgentConfig,
  SHARED_OPTIONS,
  startMqtt,
} from '../../agent/index.js'
import { moduleLogger } from '../../log.js'
import { printResult } from '../output.js'

/**
 * Flags shown under the name `edgestar fleet` gives the same thing: the device is
 * `--device-id` and a group `--group` on both sides (broker settings are `--mqtt-*` on
 * both). The config-file key and environment variable keep their `mqtt` names, and the
 * flags of AGENT_OPTIONS stay accepted, hidden.
 */
const SHOWN_AS: Partial<Record<string, string>> = {
  mqttDeviceId: '--device-id <id>',
  mqttGroups: '--group <group...>',
}

/** `edgestar agent`: the long-running daemon (see docs/agent.md). */
export function register(program: Command): void {
  const command = program
    .command('agent')
    .description(
      'run the edgestar agent: deployments, the local API on a Unix socket, and (with ' +
        '--mqtt-url) the fleet link. Every option can also be set in the config file ' +
        '(shared keys at the top level, agent keys in its "agent" section) or by env.',
    )
    .option(
      '--config <file>',
      'config file (default /etc/edgestar/config.json; env EDGESTAR_CONFIG)',
    )
    .option('--json', 'print the ready line as JSON')

  for (const option of [...SHARED_OPTIONS, ...AGENT_OPTIONS]) {
    const env = 'env' in option ? ` (env ${option.env})` : ''
    const shown = SHOWN_AS[option.key]
    command.addOption(new Option(shown ?? option.flag, `${option.doc}${env}`))
    if (shown !== undefined) command.addOption(new Option(option.flag).hideHelp())
  }

  command.action(async (raw: Record<string, unknown>) => {
    const flags: Record<string, unknown> = { config: raw.config }
    for (const option of [...SHARED_OPTIONS, ...AGENT_OPTIONS]) {
      const shown = SHOWN_AS[option.key]
      const values = [shown, option.flag].map((flag) => flag && raw[flagAttribute(flag)])
      flags[option.key] = values.find((value) => value !== undefined)
    }
    const config = loadAgentConfig(flags)

    const agent = await Agent.start({
      config,
      backendFactory: createLazyBackend,
      onReady: async (started) => void (await startMqtt(started)),
    })
    // A second Ctrl-C or SIGTERM while containers are stopping must not kill the agent
    // half way (containers left running, mounts left behind): it is logged and ignored.
    let isStopping = false
    const stop = (signal: string): void => {
      if (isStopping) {
        moduleLogger('agent').warn({ signal }, 'shutdown already under way; SIGKILL forces it')
        return
      }
      isStopping = true
      void agent.close().finally(() => process.exit(0))
    }
    process.on('SIGTERM', () => stop('SIGTERM'))
    process.on('SIGINT', () => stop('SIGINT'))
    printResult(
      { json: raw.json === true },
      { ok: true, socket: config.socket, pid: process.pid, runtime: agent.runtime.kind },
      () =>
        `edgestar agent ready on ${config.socket} (runtime ${agent.runtime.kind}, pid ${process.pid})`,
    )
    await new Promise<never>(() => undefined)
  })
}

/** Commander's attribute name of a flag: `--log-max-size <size>` → `logMaxSize`. */
function flagAttribute(flag: string): string {
  const long = (flag.split(' ')[0] as string).replace(/^--/, '')
  return long.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
}
