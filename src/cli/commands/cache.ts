import type { Command } from 'commander'
import { formatBytes, parseByteSize } from '../../fetch/index.js'
import { type CacheStatus, type GcReport, Store } from '../../store/index.js'
import { addStoreOptions, type CommonOptions, hasStore, settingsFrom } from '../options.js'
import { printResult } from '../output.js'
import { nothingStored } from './images.js'

interface GcOptions extends CommonOptions {
  target?: string
}

/** `edgestar cache status|gc`: chunk cache usage and LRU eviction (pinned images kept). */
export function register(program: Command): void {
  const cache = program.command('cache').description('chunk cache: status and garbage collection')

  addStoreOptions(
    cache.command('status').description('show cache usage, pinned bytes and the limit'),
  ).action((options: CommonOptions) => {
    const config = settingsFrom(options)
    if (!hasStore(config.stateDir)) {
      const empty: CacheStatus = {
        presentChunks: 0,
        presentBytes: 0,
        pinnedBytes: 0,
        limitBytes: config.cacheLimitBytes,
      }
      printResult(options, { ok: true, stateDir: config.stateDir, ...empty }, () =>
        nothingStored(config.stateDir),
      )
      return
    }
    const store = Store.open(config.stateDir, { cacheLimitBytes: config.cacheLimitBytes })
    try {
      const status = store.cacheStatus()
      printResult(
        options,
        { ok: true, stateDir: config.stateDir, ...status, reconciled: store.reconciled },
        () =>
          `${status.presentChunks} chunks, ${formatBytes(status.presentBytes)} (uncompressed) ` +
          `(${formatBytes(status.pinnedBytes)} pinned by mounted images), limit ` +
          `${status.limitBytes === 0 ? 'none' : formatBytes(status.limitBytes)}` +
          packNote(status),
      )
    } finally {
      store.close()
    }
  })

  const gc = cache
    .command('gc')
    .description('evict least recently used chunks of unmounted images down to the limit')
    .option(
      '--target <size>',
      'evict down to this size instead of the configured limit, e.g. 500MiB or 0',
    )
  addStoreOptions(gc).action((options: GcOptions) => {
    const config = settingsFrom(options)
    if (!hasStore(config.stateDir)) {
      const none: GcReport = {
        evictedChunks: 0,
        evictedBytes: 0,
        presentBytes: 0,
        limitBytes: config.cacheLimitBytes,
      }
      printResult(options, { ok: true, ...none }, () => nothingStored(config.stateDir))
      return
    }
    const store = Store.open(config.stateDir, { cacheLimitBytes: config.cacheLimitBytes })
    try {
      const target =
        options.target === undefined ? undefined : parseByteSize(options.target, '--target')
      const report = store.gc(target)
      const { pinnedBytes } = store.cacheStatus()
      printResult(
        options,
        { ok: true, ...report, pinnedBytes },
        () =>
          `evicted ${report.evictedChunks} chunks (${formatBytes(report.evictedBytes)}); ` +
          `${formatBytes(report.presentBytes)} left` +
          (target === undefined && report.limitBytes === 0 ? NO_LIMIT_NOTE : '') +
          (pinnedBytes > 0 ? `\n${formatBytes(pinnedBytes)} stay: mounted images pin them` : '') +
          laterNote(report.spaceReturnedLaterBytes),
      )
    } finally {
      store.close()
    }
  })
}

const NO_LIMIT_NOTE =
  '\nno cache limit is set, so nothing had to go: give --target SIZE (0 empties the cache ' +
  'of unmounted images), or set a limit (EDGESTAR_CACHE_LIMIT, cacheLimit in the config file)'

function laterNote(laterBytes: number | undefined): string {
  if (laterBytes === undefined) return ''
  return (
    `\n${formatBytes(laterBytes)} of disk space comes back within two minutes: ` +
    'another edgestar process is running and may still be reading those chunks ' +
    '(if it exits sooner, the next edgestar command on this state directory returns it)'
  )
}

function packNote(status: CacheStatus): string {
  if (status.packDiskBytes === undefined) return ''
  const holes = status.holeBytes ?? 0
  return (
    `\npack files take ${formatBytes(status.packDiskBytes)} on disk` +
    (holes > 0 ? `, of which ${formatBytes(holes)} evicted, returned within two minutes` : '')
  )
}
