import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { type Command, Option } from 'commander'
import { type EdgestarConfig, loadConfig, parseDuration } from '../config.js'
import { EdgestarError } from '../errors.js'
import {
  BACKGROUND_ORDERS,
  FetchScheduler,
  parseBackgroundOrder,
  parseByteSize,
} from '../fetch/index.js'
import { ImageService } from '../images/index.js'
import { RegistryClient } from '../registry/index.js'
import { Store } from '../store/index.js'

/** Options every command gets from `addCommonOptions`, as commander hands them over. */
export interface CommonOptions {
  json?: boolean
  stateDir?: string
  config?: string
  insecureRegistry?: string[]
  platform?: string
  allowUnverified?: boolean
}

/** Options of commands that fetch (`addFetchOptions`). */
export interface FetchOptions {
  bandwidth?: string
  offlineWait?: string
  /** commander's `--no-background` sets this false. */
  background?: boolean
  backgroundOrder?: string
}

/**
 * Adds the options of a command that only reads or tends the store: `--json`,
 * `--state-dir DIR`, `--config FILE`. Read them back with `settingsFrom`.
 */
export function addStoreOptions(command: Command): Command {
  return command
    .option('--json', 'print one JSON result for scripts')
    .option(
      '--state-dir <dir>',
      'state directory (database and chunk cache); default /var/lib/edgestar',
    )
    .option('--config <file>', 'config file; default /etc/edgestar/config.json')
}

/**
 * Adds the options every command that talks to a registry takes: those of
 * `addStoreOptions`, `--insecure-registry HOST[:PORT]` (repeatable),
 * `--platform OS/ARCH[/VARIANT]`, `--allow-unverified`. Read them back with `settingsFrom`.
 */
export function addCommonOptions(command: Command): Command {
  return addStoreOptions(command)
    .option(
      '--insecure-registry <host[:port]>',
      'talk plain HTTP to this registry (repeatable)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--platform <os/arch[/variant]>', "platform to pull; default the machine's")
    .option(
      '--allow-unverified',
      'serve layers that have nothing to verify lazily (at your own risk)',
    )
}

/**
 * Adds `--bandwidth RATE`, `--offline-wait DURATION`, `--no-background` and
 * `--background-order ORDER`.
 */
export function addFetchOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--bandwidth <rate>', 'background fetch cap, e.g. 512KiB (per second); 0 = none'),
    )
    .option(
      '--offline-wait <duration>',
      'how long a read of a missing chunk waits with no byte from the registry, e.g. 30s',
    )
    .option('--no-background', 'do not fetch the rest of the image in the background')
    .option(
      '--background-order <order>',
      `which layers the background fetch takes first: ${BACKGROUND_ORDERS.join(' or ')} ` +
        '(default bottom-first)',
    )
}

/**
 * Adds `flag` (e.g. `--broker <url>`) as a hidden alias of a renamed option: the value
 * is stored under `attribute`, the replacement's attribute, so scripts written for the
 * old name keep working while `--help` shows one name per setting.
 */
export function addHiddenAlias(command: Command, flag: string, attribute: string): Command {
  const alias = new Option(flag).hideHelp()
  command.addOption(alias)
  command.on(`option:${alias.name()}`, (value: unknown) => {
    command.setOptionValueWithSource(attribute, value, 'cli')
  })
  return command
}

/** The settings a command runs with: config file and environment, then its options. */
export function settingsFrom(options: CommonOptions & FetchOptions): EdgestarConfig {
  const config = loadConfig(options.config === undefined ? {} : { configPath: options.config })
  if (options.stateDir !== undefined) config.stateDir = options.stateDir
  if (options.insecureRegistry !== undefined)
    config.insecureRegistries = [...config.insecureRegistries, ...options.insecureRegistry]
  if (options.platform !== undefined) config.platform = options.platform
  if (options.allowUnverified) config.allowUnverified = true
  if (options.bandwidth !== undefined)
    config.bandwidthBytesPerSec = parseByteSize(options.bandwidth, '--bandwidth')
  if (options.offlineWait !== undefined)
    config.offlineWaitMs = parseDuration(options.offlineWait, '--offline-wait')
  if (options.background === false) config.backgroundFetch = false
  if (options.backgroundOrder !== undefined)
    config.backgroundOrder = parseBackgroundOrder(options.backgroundOrder, '--background-order')
  return config
}

/**
 * True when `stateDir` holds a store (its database exists). Read-only commands check
 * this first, so that looking never creates a state directory.
 */
export function hasStore(stateDir: string): boolean {
  return existsSync(join(stateDir, 'edgestar.db'))
}

/** Everything a command needs to work with images; close it when done. */
export interface Services {
  config: EdgestarConfig
  store: Store
  registry: RegistryClient
  scheduler: FetchScheduler
  images: ImageService
  /** File the bandwidth control hook reads on SIGHUP (see installBandwidthControl). */
  bandwidthControlFile: string
  close(): Promise<void>
}

/** Opens the store, a registry client, the fetch scheduler and the image service. */
export function openServices(config: EdgestarConfig): Services {
  const store = Store.open(config.stateDir, { cacheLimitBytes: config.cacheLimitBytes })
  // Three attempts, not five: the scheduler retries a failed batch itself, and background
  // work on a dead link should let go of its slots soon (reads have their own deadline).
  const registry = new RegistryClient({
    insecureRegistries: config.insecureRegistries,
    retry: { maxAttempts: 3 },
    ...(config.dockerConfigPath === undefined ? {} : { dockerConfigPath: config.dockerConfigPath }),
  })
  const scheduler = new FetchScheduler({
    store,
    registry,
    concurrency: config.fetchConcurrency,
    backgroundRateBytesPerSec: config.bandwidthBytesPerSec,
    offlineWaitMs: config.offlineWaitMs,
  })
  scheduler.setBackgroundEnabled(config.backgroundFetch)
  const images = new ImageService({
    store,
    registry,
    scheduler,
    allowUnverified: config.allowUnverified,
    backgroundOrder: config.backgroundOrder,
    ...(config.platform === undefined ? {} : { platform: config.platform }),
  })
  return {
    config,
    store,
    registry,
    scheduler,
    images,
    bandwidthControlFile: join(config.stateDir, 'bandwidth'),
    async close() {
      await scheduler.close()
      await registry.close()
      store.close()
    },
  }
}

/** A CLI option given in whole or fractional seconds; throws EDGESTAR_CLI_BAD_OPTION. */
export function parseSeconds(option: string, value: string): number {
  const parsed = Number(value)
  if (Number.isFinite(parsed) && parsed >= 0) return parsed
  throw new EdgestarError(
    'EDGESTAR_CLI_BAD_OPTION',
    `${option} must be a number of seconds, not "${value}"`,
    { hint: `for example ${option} 30` },
  )
}
