import { readFileSync } from 'node:fs'
import { EdgestarError } from './errors.js'
import { type BackgroundOrder, parseBackgroundOrder, parseByteSize } from './fetch/index.js'
import { DEFAULT_STATE_DIR } from './store/index.js'

/** Default path of the device's config file. */
export const DEFAULT_CONFIG_PATH = '/etc/edgestar/config.json'

/**
 * Settings shared by every command and the agent. Sources, later winning: defaults,
 * the config file (`/etc/edgestar/config.json`, `--config` or EDGESTAR_CONFIG), the
 * environment (EDGESTAR_*), then command-line options (applied by `cli/options.ts`).
 */
export interface EdgestarConfig {
  /** State directory (database and chunk cache). File key `stateDir`, env EDGESTAR_STATE_DIR. */
  stateDir: string
  /**
   * Registries spoken to over plain HTTP. File `insecureRegistries`,
   * env EDGESTAR_INSECURE_REGISTRIES (comma list).
   */
  insecureRegistries: string[]
  /**
   * Platform to pull (`os/arch[/variant]`); undefined = the machine's.
   * File `platform`, env EDGESTAR_PLATFORM.
   */
  platform: string | undefined
  /**
   * Serve layers with nothing to verify lazily.
   * File `allowUnverified`, env EDGESTAR_ALLOW_UNVERIFIED.
   */
  allowUnverified: boolean
  /**
   * Background fetch cap, bytes per second, 0 = none.
   * File `bandwidth` ("512KiB"), env EDGESTAR_BANDWIDTH.
   */
  bandwidthBytesPerSec: number
  /**
   * How long a read of a missing chunk waits for an offline link.
   * File `offlineWait` ("30s"), env EDGESTAR_OFFLINE_WAIT.
   */
  offlineWaitMs: number
  /** Chunk cache size limit in bytes, 0 = none. File `cacheLimit` ("2GiB"), env EDGESTAR_CACHE_LIMIT. */
  cacheLimitBytes: number
  /** Whether the background fetch runs. File `backgroundFetch`, env EDGESTAR_BACKGROUND_FETCH. */
  backgroundFetch: boolean
  /**
   * Which layers the background fetch takes first: `bottom-first` or `top-first`.
   * File `backgroundOrder`, env EDGESTAR_BACKGROUND_ORDER.
   */
  backgroundOrder: BackgroundOrder
  /** Registry requests in flight at most. File `fetchConcurrency`. */
  fetchConcurrency: number
  /** Docker config.json for registry credentials; undefined = Docker's default. File `dockerConfig`. */
  dockerConfigPath: string | undefined
  /** The whole file as read, so other modules can take their own sections (`mqtt`, `agent`). */
  raw: Record<string, unknown>
  /** The config file that was read, if any. */
  configPath: string | undefined
}

/**
 * Loads the config file and the environment. A missing default file is fine. A file
 * named by `configPath` (--config) or EDGESTAR_CONFIG that is missing throws
 * EDGESTAR_CONFIG_NOT_FOUND; any file that cannot be read, EDGESTAR_CONFIG_UNREADABLE
 * (with the errno); bad JSON (with line and column), an unknown top-level key (with the
 * nearest known one) or a bad value, EDGESTAR_CONFIG_INVALID naming the key and the
 * expected form, or EDGESTAR_CONFIG_BAD_SIZE.
 */
export function loadConfig(
  options: { configPath?: string; env?: NodeJS.ProcessEnv } = {},
): EdgestarConfig {
  const env = options.env ?? process.env
  const source =
    options.configPath !== undefined
      ? '--config'
      : env.EDGESTAR_CONFIG !== undefined
        ? 'EDGESTAR_CONFIG'
        : undefined
  const path = options.configPath ?? env.EDGESTAR_CONFIG ?? DEFAULT_CONFIG_PATH
  const raw = readConfigFile(path, source)

  const config: EdgestarConfig = {
    stateDir: DEFAULT_STATE_DIR,
    insecureRegistries: [],
    platform: undefined,
    allowUnverified: false,
    bandwidthBytesPerSec: 0,
    offlineWaitMs: 30_000,
    cacheLimitBytes: 0,
    backgroundFetch: true,
    backgroundOrder: 'bottom-first',
    fetchConcurrency: 4,
    dockerConfigPath: undefined,
    raw: raw ?? {},
    configPath: raw === undefined ? undefined : path,
  }
  if (raw !== undefined) {
    checkKeys(raw, path)
    applyFile(config, raw, path)
  }
  applyEnv(config, env)
  return config
}

/**
 * Top-level keys of the config file. `agent` is the agent's own section, checked by
 * src/agent/config.ts; any other key is refused, so a misspelt setting is not ignored.
 */
export const CONFIG_FILE_KEYS = [
  'stateDir',
  'insecureRegistries',
  'platform',
  'allowUnverified',
  'bandwidth',
  'offlineWait',
  'cacheLimit',
  'backgroundFetch',
  'backgroundOrder',
  'fetchConcurrency',
  'dockerConfig',
  'agent',
] as const

function readConfigFile(
  path: string,
  source: string | undefined,
): Record<string, unknown> | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (source === undefined && code === 'ENOENT') return undefined
    throw unreadable(path, source ?? 'the default path', code, err)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw badJson(path, text, err as Error)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new EdgestarError(
      'EDGESTAR_CONFIG_INVALID',
      `config file ${path} must hold a JSON object`,
      { hint: 'write the settings as one object, e.g. {"stateDir": "/var/lib/edgestar"}' },
    )
  return parsed as Record<string, unknown>
}

function unreadable(
  path: string,
  source: string,
  code: string | undefined,
  cause: unknown,
): EdgestarError {
  if (code === 'ENOENT')
    return new EdgestarError(
      'EDGESTAR_CONFIG_NOT_FOUND',
      `config file ${path} (from ${source}) does not exist (ENOENT)`,
      {
        hint: `check the path, create the file, or drop ${source} to run with the defaults`,
        cause,
      },
    )
  const why =
    code === 'EACCES' || code === 'EPERM'
      ? `this user (uid ${process.getuid?.()}) may not read it`
      : code === 'EISDIR'
        ? 'it is a directory'
        : 'it cannot be read'
  return new EdgestarError(
    'EDGESTAR_CONFIG_UNREADABLE',
    `config file ${path} (from ${source}): ${why} (${code ?? 'error'})`,
    {
      hint:
        code === 'EISDIR'
          ? `give the path of the JSON file itself, e.g. ${path}/config.json`
          : 'run as a user who may read it (often root: sudo), or grant this user read ' +
            `access to ${path} (chgrp, chmod g+r)`,
      cause,
    },
  )
}

// JSON.parse names only a character position (Node 20: "... in JSON at position 23");
// line and column are what an editor jumps to.
function badJson(path: string, text: string, err: Error): EdgestarError {
  const position = Number(/at position (\d+)/.exec(err.message)?.[1] ?? text.length)
  const before = text.slice(0, position).split('\n')
  const line = before.length
  const column = (before[before.length - 1]?.length ?? 0) + 1
  const reason = err.message.replace(/,? (in JSON )?at position \d+.*$/, '')
  return new EdgestarError(
    'EDGESTAR_CONFIG_INVALID',
    `config file ${path} is not valid JSON: ${reason} at line ${line}, column ${column}`,
    {
      hint:
        'JSON wants double-quoted keys and strings, commas between entries but not after ' +
        'the last, and no comments',
      cause: err,
    },
  )
}

function checkKeys(raw: Record<string, unknown>, path: string): void {
  const known: readonly string[] = CONFIG_FILE_KEYS
  for (const key of Object.keys(raw)) {
    if (known.includes(key)) continue
    const nearest = nearestKey(key, known)
    throw new EdgestarError(
      'EDGESTAR_CONFIG_INVALID',
      `unknown key "${key}" in config file ${path}`,
      {
        hint:
          (nearest === undefined ? '' : `did you mean "${nearest}"? `) +
          `known top-level keys: ${known.join(', ')} (agent settings go inside "agent")`,
      },
    )
  }
}

/**
 * The key of `known` closest to `key` (case ignored) when it is a likely misspelling (at
 * most a third of its letters differ, and at least two may), else undefined.
 */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  let best: { key: string; distance: number } | undefined
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase())
    if (best === undefined || distance < best.distance) best = { key: candidate, distance }
  }
  if (best === undefined) return undefined
  return best.distance <= Math.max(2, Math.floor(key.length / 3)) ? best.key : undefined
}

// Levenshtein distance, one row at a time.
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution)
    }
    previous = current
  }
  return previous[b.length]!
}

function applyFile(config: EdgestarConfig, raw: Record<string, unknown>, path: string): void {
  const where = (key: string): string => `${path}: ${key}`
  if (raw.stateDir !== undefined) config.stateDir = expectString(raw.stateDir, where('stateDir'))
  if (raw.insecureRegistries !== undefined) {
    const list = raw.insecureRegistries
    if (!Array.isArray(list) || !list.every((item) => typeof item === 'string'))
      throw invalid(where('insecureRegistries'), 'a list of HOST[:PORT] strings')
    config.insecureRegistries = list as string[]
  }
  if (raw.platform !== undefined) config.platform = expectString(raw.platform, where('platform'))
  if (raw.allowUnverified !== undefined)
    config.allowUnverified = expectBoolean(raw.allowUnverified, where('allowUnverified'))
  if (raw.bandwidth !== undefined)
    config.bandwidthBytesPerSec = parseByteSize(raw.bandwidth as string, where('bandwidth'))
  if (raw.offlineWait !== undefined)
    config.offlineWaitMs = parseDuration(raw.offlineWait as string, where('offlineWait'))
  if (raw.cacheLimit !== undefined)
    config.cacheLimitBytes = parseByteSize(raw.cacheLimit as string, where('cacheLimit'))
  if (raw.backgroundFetch !== undefined)
    config.backgroundFetch = expectBoolean(raw.backgroundFetch, where('backgroundFetch'))
  if (raw.backgroundOrder !== undefined)
    config.backgroundOrder = parseBackgroundOrder(raw.backgroundOrder, where('backgroundOrder'))
  if (raw.fetchConcurrency !== undefined) {
    const n = raw.fetchConcurrency
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 64)
      throw invalid(where('fetchConcurrency'), 'an integer from 1 to 64')
    config.fetchConcurrency = n
  }
  if (raw.dockerConfig !== undefined)
    config.dockerConfigPath = expectString(raw.dockerConfig, where('dockerConfig'))
}

function applyEnv(config: EdgestarConfig, env: NodeJS.ProcessEnv): void {
  if (env.EDGESTAR_STATE_DIR) config.stateDir = env.EDGESTAR_STATE_DIR
  if (env.EDGESTAR_INSECURE_REGISTRIES)
    config.insecureRegistries = env.EDGESTAR_INSECURE_REGISTRIES.split(',')
      .map((s) => s.trim())
      .filter(Boolean)
  if (env.EDGESTAR_PLATFORM) config.platform = env.EDGESTAR_PLATFORM
  if (env.EDGESTAR_ALLOW_UNVERIFIED)
    config.allowUnverified = parseBoolean(
      env.EDGESTAR_ALLOW_UNVERIFIED,
      'EDGESTAR_ALLOW_UNVERIFIED',
    )
  if (env.EDGESTAR_BANDWIDTH)
    config.bandwidthBytesPerSec = parseByteSize(env.EDGESTAR_BANDWIDTH, 'EDGESTAR_BANDWIDTH')
  if (env.EDGESTAR_OFFLINE_WAIT)
    config.offlineWaitMs = parseDuration(env.EDGESTAR_OFFLINE_WAIT, 'EDGESTAR_OFFLINE_WAIT')
  if (env.EDGESTAR_CACHE_LIMIT)
    config.cacheLimitBytes = parseByteSize(env.EDGESTAR_CACHE_LIMIT, 'EDGESTAR_CACHE_LIMIT')
  if (env.EDGESTAR_BACKGROUND_FETCH)
    config.backgroundFetch = parseBoolean(
      env.EDGESTAR_BACKGROUND_FETCH,
      'EDGESTAR_BACKGROUND_FETCH',
    )
  if (env.EDGESTAR_BACKGROUND_ORDER)
    config.backgroundOrder = parseBackgroundOrder(
      env.EDGESTAR_BACKGROUND_ORDER,
      'EDGESTAR_BACKGROUND_ORDER',
    )
}

/**
 * Parses a duration: a number of milliseconds, or a number with `ms`, `s`, `m` or `h`.
 * Throws EDGESTAR_CONFIG_INVALID naming `option`.
 */
export function parseDuration(text: string | number, option: string): number {
  if (typeof text === 'number' && Number.isFinite(text) && text >= 0) return Math.floor(text)
  const match = /^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$/.exec(String(text))
  if (!match) throw invalid(option, 'a duration such as 500ms, 30s, 2m or a number of milliseconds')
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? 'ms'] ?? 1
  return Math.floor(Number(match[1]) * factor)
}

function parseBoolean(text: string, option: string): boolean {
  if (/^(1|true|yes|on)$/i.test(text)) return true
  if (/^(0|false|no|off)$/i.test(text)) return false
  throw invalid(option, 'true or false')
}

function expectString(value: unknown, option: string): string {
  if (typeof value !== 'string' || value === '') throw invalid(option, 'a non-empty string')
  return value
}

function expectBoolean(value: unknown, option: string): boolean {
  if (typeof value !== 'boolean') throw invalid(option, 'true or false')
  return value
}

function invalid(option: string, expected: string): EdgestarError {
  return new EdgestarError('EDGESTAR_CONFIG_INVALID', `${option}: expected ${expected}`, {
    hint: 'fix the value in the config file, the environment or the command line',
  })
}
