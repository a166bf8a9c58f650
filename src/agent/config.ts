import { readFile } from 'node:fs/promises'
import { EdgestarError } from '../errors.js'
import { RUNTIME_CHOICES, type RuntimeChoice } from '../runtime/index.js'
import { DEFAULT_SOCKET_PATH } from './protocol.js'

/** The agent's settings after flags, environment and config file are merged. */
export interface AgentConfig {
  configFile?: string
  stateDir: string
  socket: string
  /** Group name or gid allowed to use the socket (mode 0660); root only when unset. */
  socketGroup?: string
  runtime: RuntimeChoice
  /** Background fetch cap in bytes per second; null = uncapped. */
  bandwidthBytesPerSec: number | null
  offlineWaitMs: number
  /** Chunk cache size limit in bytes; null = no limit. */
  cacheLimitBytes: number | null
  /** Image platform to resolve, e.g. linux/arm64; default: this machine's. */
  platform?: string
  /** Registries reached over plain HTTP (host:port), e.g. a loopback test registry. */
  insecureRegistries: string[]
  logMaxFileBytes: number
  logMaxFiles: number
  stopTimeoutMs: number
  updateGraceMs: number
  mqttUrl?: string
  mqttDeviceId?: string
  mqttPrefix?: string
  mqttGroups: string[]
  mqttUsername?: string
  /** A file holding the broker password (never the password itself on the command line). */
  mqttPasswordFile?: string
  mqttCaFile?: string
  mqttCertFile?: string
  mqttKeyFile?: string
  /** PEM file of the fleet's Ed25519 public key; when set, only signed commands run. */
  mqttFleetKeyFile?: string
  mqttTelemetryIntervalMs: number
}

type Kind = 'string' | 'int' | 'bytes' | 'rate' | 'list' | 'runtime'

/** One option: its config-file key, flag, environment variable, kind and doc line. */
export interface AgentOption {
  key: keyof AgentConfig
  flag: string
  env: string
  kind: Kind
  doc: string
}

/** Every agent option; the CLI, the env reader, the file reader and the docs use this table. */
export const AGENT_OPTIONS: readonly AgentOption[] = [
  {
    key: 'stateDir',
    flag: '--state-dir <dir>',
    env: 'EDGESTAR_STATE_DIR',
    kind: 'string',
    doc: 'state directory (SQLite index, chunk cache, deployments)',
  },
  {
    key: 'socket',
    flag: '--socket <path>',
    env: 'EDGESTAR_SOCKET',
    kind: 'string',
    doc: `local API socket (default ${DEFAULT_SOCKET_PATH})`,
  },
  {
    key: 'socketGroup',
    flag: '--socket-group <group>',
    env: 'EDGESTAR_SOCKET_GROUP',
    kind: 'string',
    doc: 'group (name or gid) that may use the socket; root only when unset',
  },
  {
    key: 'runtime',
    flag: '--runtime <name>',
    env: 'EDGESTAR_RUNTIME',
    kind: 'runtime',
    doc: 'container runtime: auto, runc, crun or chroot (default auto)',
  },
  {
    key: 'bandwidthBytesPerSec',
    flag: '--bandwidth <rate>',
    env: 'EDGESTAR_BANDWIDTH',
    kind: 'rate',
    doc: 'background fetch cap, e.g. 256k, 2M (bytes/s); 0 = uncapped',
  },
  {
    key: 'offlineWaitMs',
    flag: '--offline-wait-ms <ms>',
    env: 'EDGESTAR_OFFLINE_WAIT_MS',
    kind: 'int',
    doc: 'how long a read of a missing chunk waits for the link (default 30000)',
  },
  {
    key: 'cacheLimitBytes',
    flag: '--cache-limit <size>',
    env: 'EDGESTAR_CACHE_LIMIT',
    kind: 'bytes',
    doc: 'chunk cache size limit, e.g. 2G; 0 = no limit',
  },
  {
    key: 'platform',
    flag: '--platform <os/arch[/variant]>',
    env: 'EDGESTAR_PLATFORM',
    kind: 'string',
    doc: "image platform to run (default: this machine's)",
  },
  {
    key: 'insecureRegistries',
    flag: '--insecure-registry <host:port...>',
    env: 'EDGESTAR_INSECURE_REGISTRIES',
    kind: 'list',
    doc: 'registries reached over plain HTTP (comma-separated in env)',
  },
  {
    key: 'logMaxFileBytes',
    flag: '--log-max-size <size>',
    env: 'EDGESTAR_LOG_MAX_SIZE',
    kind: 'bytes',
    doc: 'size of one container log file before rotation (default 1M)',
  },
  {
    key: 'logMaxFiles',
    flag: '--log-max-files <n>',
    env: 'EDGESTAR_LOG_MAX_FILES',
    kind: 'int',
    doc: 'log files kept per container (default 3)',
  },
  {
    key: 'stopTimeoutMs',
    flag: '--stop-timeout-ms <ms>',
    env: 'EDGESTAR_STOP_TIMEOUT_MS',
    kind: 'int',
    doc: 'wait after SIGTERM before SIGKILL (default 10000)',
  },
  {
    key: 'updateGraceMs',
    flag: '--update-grace-ms <ms>',
    env: 'EDGESTAR_UPDATE_GRACE_MS',
    kind: 'int',
    doc: 'an updated container failing within this window rolls back (default 3000)',
  },
  {
    key: 'mqttUrl',
    flag: '--mqtt-url <url>',
    env: 'EDGESTAR_MQTT_URL',
    kind: 'string',
    doc: 'broker URL (mqtt://, mqtts://, ws://, wss://); no MQTT when unset',
  },
  {
    key: 'mqttDeviceId',
    flag: '--mqtt-device-id <id>',
    env: 'EDGESTAR_MQTT_DEVICE_ID',
    kind: 'string',
    doc: 'device id in topics (default: /etc/machine-id)',
  },
  {
    key: 'mqttPrefix',
    flag: '--mqtt-prefix <prefix>',
    env: 'EDGESTAR_MQTT_PREFIX',
    kind: 'string',
    doc: 'first topic level(s) (default edgestar)',
  },
  {
    key: 'mqttGroups',
    flag: '--mqtt-group <group...>',
    env: 'EDGESTAR_MQTT_GROUPS',
    kind: 'list',
    doc: 'fleet groups whose commands this device takes',
  },
  {
    key: 'mqttUsername',
    flag: '--mqtt-username <name>',
    env: 'EDGESTAR_MQTT_USERNAME',
    kind: 'string',
    doc: 'broker user name',
  },
  {
    key: 'mqttPasswordFile',
    flag: '--mqtt-password-file <file>',
    env: 'EDGESTAR_MQTT_PASSWORD_FILE',
    kind: 'string',
    doc: 'file holding the broker password',
  },
  {
    key: 'mqttCaFile',
    flag: '--mqtt-ca-file <file>',
    env: 'EDGESTAR_MQTT_CA_FILE',
    kind: 'string',
    doc: 'CA bundle for the broker (PEM)',
  },
  {
    key: 'mqttCertFile',
    flag: '--mqtt-cert-file <file>',
    env: 'EDGESTAR_MQTT_CERT_FILE',
    kind: 'string',
    doc: 'client certificate (PEM)',
  },
  {
    key: 'mqttKeyFile',
    flag: '--mqtt-key-file <file>',
    env: 'EDGESTAR_MQTT_KEY_FILE',
    kind: 'string',
    doc: 'client key (PEM)',
  },
  {
    key: 'mqttFleetKeyFile',
    flag: '--mqtt-fleet-key-file <file>',
    env: 'EDGESTAR_MQTT_FLEET_KEY_FILE',
    kind: 'string',
    doc: 'fleet public key (PEM); only signed commands run when set',
  },
  {
    key: 'mqttTelemetryIntervalMs',
    flag: '--mqtt-telemetry-interval-ms <ms>',
    env: 'EDGESTAR_MQTT_TELEMETRY_INTERVAL_MS',
    kind: 'int',
    doc: 'telemetry period (default 60000; 0 = off)',
  },
]

/** Where the agent looks for its config file when none is named. */
export const DEFAULT_CONFIG_FILE = '/etc/edgestar/agent.json'

const DEFAULTS: AgentConfig = {
  stateDir: '/var/lib/edgestar',
  socket: DEFAULT_SOCKET_PATH,
  runtime: 'auto',
  bandwidthBytesPerSec: null,
  offlineWaitMs: 30_000,
  cacheLimitBytes: null,
  insecureRegistries: [],
  logMaxFileBytes: 1024 * 1024,
  logMaxFiles: 3,
  stopTimeoutMs: 10_000,
  updateGraceMs: 3000,
  mqttGroups: [],
  mqttTelemetryIntervalMs: 60_000,
}

/**
 * Merges the agent's settings: flags (already parsed by commander, keyed like
 * AgentConfig) over environment over config file (JSON, keys as in AgentConfig) over
 * defaults. `defaultStateDir` replaces the built-in default. Throws
 * EDGESTAR_CONFIG_INVALID naming the option and its source, EDGESTAR_CONFIG_UNREADABLE
 * for a named config file that cannot be read.
 */
export async function loadAgentConfig(
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
  defaultStateDir?: string,
): Promise<AgentConfig> {
  const explicitFile = (flags.config as string | undefined) ?? env.EDGESTAR_AGENT_CONFIG
  const file = await readConfigFile(explicitFile ?? DEFAULT_CONFIG_FILE, explicitFile !== undefined)
  const config: AgentConfig = {
    ...DEFAULTS,
    ...(defaultStateDir === undefined ? {} : { stateDir: defaultStateDir }),
  }
  if (explicitFile !== undefined) config.configFile = explicitFile

  for (const option of AGENT_OPTIONS) {
    const sources: Array<[unknown, string]> = [
      [flags[option.key], `option ${option.flag.split(' ')[0]}`],
      [env[option.env], `environment variable ${option.env}`],
      [file[option.key], `config key "${option.key}"`],
    ]
    const found = sources.find(([value]) => value !== undefined && value !== '')
    if (found === undefined) continue
    ;(config as unknown as Record<string, unknown>)[option.key] = parseValue(
      option,
      found[0],
      found[1],
    )
  }
  return config
}

async function readConfigFile(file: string, isExplicit: boolean): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if (!isExplicit && (err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw new EdgestarError(
      'EDGESTAR_CONFIG_UNREADABLE',
      `cannot read the agent config file ${file}`,
      {
        cause: err,
        hint: 'check the path given by --config or EDGESTAR_AGENT_CONFIG',
      },
    )
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new EdgestarError(
      'EDGESTAR_CONFIG_INVALID',
      `agent config file ${file} is not valid JSON`,
      { cause: err },
    )
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new EdgestarError(
      'EDGESTAR_CONFIG_INVALID',
      `agent config file ${file} must hold a JSON object`,
    )
  const known = new Set(AGENT_OPTIONS.map((o) => o.key as string))
  for (const key of Object.keys(value)) {
    if (!known.has(key)) {
      throw new EdgestarError(
        'EDGESTAR_CONFIG_INVALID',
        `unknown key "${key}" in agent config file ${file}`,
        {
          hint: `known keys: ${[...known].join(', ')}`,
        },
      )
    }
  }
  return value as Record<string, unknown>
}

function parseValue(option: AgentOption, value: unknown, source: string): unknown {
  const invalid = (expected: string): EdgestarError =>
    new EdgestarError(
      'EDGESTAR_CONFIG_INVALID',
      `${source} is ${JSON.stringify(value)}; expected ${expected}`,
    )

  switch (option.kind) {
    case 'string':
      if (typeof value !== 'string') throw invalid('a string')
      return value
    case 'runtime':
      if (!RUNTIME_CHOICES.includes(value as RuntimeChoice))
        throw invalid(RUNTIME_CHOICES.join(', '))
      return value
    case 'list':
      if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value
      if (typeof value === 'string')
        return value
          .split(',')
          .map((v) => v.trim())
          .filter((v) => v !== '')
      throw invalid('a list of strings')
    case 'int': {
      const n = typeof value === 'number' ? value : Number(value)
      if (!Number.isInteger(n) || n < 0) throw invalid('a whole number >= 0')
      return n
    }
    case 'bytes':
    case 'rate': {
      const n = parseByteSize(value)
      if (n === undefined) throw invalid('a size such as 512k, 2M, 1G or a number of bytes')
      return n === 0 && option.kind === 'rate'
        ? null
        : n === 0 && option.key === 'cacheLimitBytes'
          ? null
          : n
    }
  }
}

/**
 * Parses `1024`, `512k`, `2M`, `1.5G` (also with a trailing `B` or `/s`, binary
 * multiples) into bytes; undefined when it does not parse.
 */
export function parseByteSize(value: unknown): number | undefined {
  if (typeof value === 'number')
    return Number.isFinite(value) && value >= 0 ? Math.floor(value) : undefined
  if (typeof value !== 'string') return undefined
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?(?:\/s)?\s*$/i.exec(value)
  if (match === null) return undefined
  const unit = (
    { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 } as Record<string, number>
  )[(match[2] as string).toLowerCase()] as number
  return Math.floor(Number(match[1]) * unit)
}
