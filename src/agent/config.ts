import { loadConfig, nearestKey, parseDuration } from '../config.js'
import { EdgestarError } from '../errors.js'
import { type BackgroundOrder, parseBackgroundOrder, parseByteSize } from '../fetch/index.js'
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
  /**
   * Settings given by flag or environment variable: they win over the values saved through
   * the API (`agent-settings.json`); the config file's do not.
   */
  explicit?: { bandwidth: boolean; offlineWait: boolean }
  /** Which layers the background fetch takes first. */
  backgroundOrder: BackgroundOrder
  /** Chunk cache size limit in bytes; null = no limit. */
  cacheLimitBytes: number | null
  /** Image platform to resolve, e.g. linux/arm64; default: this machine's. */
  platform?: string
  /** Registries reached over plain HTTP (host:port), e.g. a loopback test registry. */
  insecureRegistries: string[]
  /** Serve layers with nothing to verify lazily (config file `allowUnverified`). */
  allowUnverified: boolean
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

type Kind = 'string' | 'int' | 'bytes' | 'list' | 'runtime' | 'duration'

/** One option: its config-file key, flag, environment variable, kind and doc line. */
export interface AgentOption {
  key: keyof AgentConfig
  flag: string
  env: string
  kind: Kind
  doc: string
}

/**
 * Agent-only options: the `agent` section of the config file, EDGESTAR_* variables and
 * flags. Settings shared with other commands (state dir, bandwidth, offline wait,
 * cache limit, platform, insecure registries) come from `src/config.ts` and SHARED_OPTIONS.
 */
export const AGENT_OPTIONS: readonly AgentOption[] = [
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
    key: 'logMaxFileBytes',
    flag: '--log-max-size <size>',
    env: 'EDGESTAR_LOG_MAX_SIZE',
    kind: 'bytes',
    doc: 'size of one container log file before rotation (default 1MiB)',
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
    flag: '--stop-timeout-ms <duration>',
    env: 'EDGESTAR_STOP_TIMEOUT_MS',
    kind: 'duration',
    doc: 'wait after SIGTERM before SIGKILL, e.g. 10s or 10000 (ms) (default 10s)',
  },
  {
    key: 'updateGraceMs',
    flag: '--update-grace-ms <duration>',
    env: 'EDGESTAR_UPDATE_GRACE_MS',
    kind: 'duration',
    doc: 'an updated container failing within this window rolls back, e.g. 3s (default 3s)',
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
    flag: '--mqtt-telemetry-interval-ms <duration>',
    env: 'EDGESTAR_MQTT_TELEMETRY_INTERVAL_MS',
    kind: 'duration',
    doc: 'telemetry period, e.g. 60s or 60000 (ms) (default 60s; 0 = off)',
  },
]

/**
 * Flags for the settings shared with other commands; their file keys and environment
 * variables are read by `loadConfig` in src/config.ts (see docs/agent.md).
 */
export const SHARED_OPTIONS: readonly { key: keyof AgentConfig; flag: string; doc: string }[] = [
  {
    key: 'stateDir',
    flag: '--state-dir <dir>',
    doc: 'state directory (file stateDir, env EDGESTAR_STATE_DIR)',
  },
  {
    key: 'bandwidthBytesPerSec',
    flag: '--bandwidth <rate>',
    doc: 'background fetch cap, e.g. 512KiB, 2MB; 0 = none (file bandwidth, env EDGESTAR_BANDWIDTH)',
  },
  {
    key: 'offlineWaitMs',
    flag: '--offline-wait <duration>',
    doc:
      'how long a read of a missing chunk waits with no byte from the registry, e.g. 30s ' +
      '(file offlineWait, env EDGESTAR_OFFLINE_WAIT)',
  },
  {
    key: 'backgroundOrder',
    flag: '--background-order <order>',
    doc:
      'which layers the background fetch takes first: bottom-first (default) or top-first ' +
      '(file backgroundOrder, env EDGESTAR_BACKGROUND_ORDER)',
  },
  {
    key: 'cacheLimitBytes',
    flag: '--cache-limit <size>',
    doc: 'chunk cache size limit, e.g. 2GiB; 0 = none (file cacheLimit, env EDGESTAR_CACHE_LIMIT)',
  },
  {
    key: 'platform',
    flag: '--platform <os/arch[/variant]>',
    doc: "image platform to run (file platform, env EDGESTAR_PLATFORM; default this machine's)",
  },
  {
    key: 'insecureRegistries',
    flag: '--insecure-registry <host:port...>',
    doc: 'registries reached over plain HTTP (file insecureRegistries, env EDGESTAR_INSECURE_REGISTRIES)',
  },
]

const DEFAULTS = {
  socket: DEFAULT_SOCKET_PATH,
  runtime: 'auto' as RuntimeChoice,
  logMaxFileBytes: 1024 * 1024,
  logMaxFiles: 3,
  stopTimeoutMs: 10_000,
  updateGraceMs: 3000,
  mqttGroups: [] as string[],
  mqttTelemetryIntervalMs: 60_000,
}

/**
 * Merges the agent's settings. Shared settings: src/config.ts (defaults, config file
 * `--config`/EDGESTAR_CONFIG, environment), then flags. Agent settings: defaults, the
 * file's `agent` section, EDGESTAR_* variables, then flags (commander's parsed options,
 * keyed like AgentConfig). Throws EDGESTAR_CONFIG_INVALID naming the option and its
 * source, or EDGESTAR_CONFIG_BAD_SIZE.
 */
export function loadAgentConfig(
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): AgentConfig {
  const base = loadConfig({
    ...(typeof flags.config === 'string' ? { configPath: flags.config } : {}),
    env,
  })
  const section = base.raw.agent ?? {}
  if (typeof section !== 'object' || section === null || Array.isArray(section))
    throw new EdgestarError(
      'EDGESTAR_CONFIG_INVALID',
      `${base.configPath}: agent: expected an object`,
    )
  checkSectionKeys(section as Record<string, unknown>, base.configPath)

  const config: AgentConfig = {
    ...DEFAULTS,
    ...(base.configPath === undefined ? {} : { configFile: base.configPath }),
    stateDir: stringFlag(flags.stateDir) ?? base.stateDir,
    bandwidthBytesPerSec: nullIfZero(
      flags.bandwidthBytesPerSec === undefined
        ? base.bandwidthBytesPerSec
        : parseByteSize(String(flags.bandwidthBytesPerSec), '--bandwidth'),
    ),
    offlineWaitMs:
      flags.offlineWaitMs === undefined
        ? base.offlineWaitMs
        : parseDuration(String(flags.offlineWaitMs), '--offline-wait'),
    backgroundOrder:
      flags.backgroundOrder === undefined
        ? base.backgroundOrder
        : parseBackgroundOrder(flags.backgroundOrder, '--background-order'),
    cacheLimitBytes: nullIfZero(
      flags.cacheLimitBytes === undefined
        ? base.cacheLimitBytes
        : parseByteSize(String(flags.cacheLimitBytes), '--cache-limit'),
    ),
    insecureRegistries: Array.isArray(flags.insecureRegistries)
      ? (flags.insecureRegistries as string[])
      : base.insecureRegistries,
    allowUnverified: base.allowUnverified,
    explicit: {
      bandwidth: flags.bandwidthBytesPerSec !== undefined || Boolean(env.EDGESTAR_BANDWIDTH),
      offlineWait: flags.offlineWaitMs !== undefined || Boolean(env.EDGESTAR_OFFLINE_WAIT),
    },
  }
  const platform = stringFlag(flags.platform) ?? base.platform
  if (platform !== undefined) config.platform = platform

  for (const option of AGENT_OPTIONS) {
    const sources: Array<[unknown, string]> = [
      [flags[option.key], `option ${option.flag.split(' ')[0]}`],
      [env[option.env], `environment variable ${option.env}`],
      [(section as Record<string, unknown>)[option.key], `${base.configPath}: agent.${option.key}`],
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

function checkSectionKeys(section: Record<string, unknown>, file: string | undefined): void {
  const known = new Set(AGENT_OPTIONS.map((o) => o.key as string))
  for (const key of Object.keys(section)) {
    if (known.has(key)) continue
    const nearest = nearestKey(key, [...known])
    const guess = nearest === undefined ? '' : `did you mean "agent.${nearest}"? `
    throw new EdgestarError(
      'EDGESTAR_CONFIG_INVALID',
      `unknown key "agent.${key}" in config file ${file}`,
      {
        hint: `${guess}known keys of the agent section: ${[...known].join(', ')}`,
      },
    )
  }
}

function stringFlag(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

function nullIfZero(value: number): number | null {
  return value === 0 ? null : value
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
      return parseByteSize(value as string, source)
    case 'duration':
      // Plain numbers stay milliseconds, as the option names (…-ms) have always said.
      if (typeof value !== 'string' && typeof value !== 'number')
        throw invalid('a duration such as 10s, 500ms, 2m, or a number of milliseconds')
      return parseDuration(value, source)
  }
}
