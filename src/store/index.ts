/**
 * The local source of truth: SQLite index (images, layers, TOC rows, fetch units, chunk
 * state, deployments, executed commands, telemetry outbox) and the chunk cache directory.
 * Fetches nothing; `fetch/` fills it.
 */
export type {
  CacheStatus,
  ChunkBookkeeping,
  ChunkWrite,
  GcReport,
  ReconcileReport,
} from './chunk-cache.js'
export { ChunkCache } from './chunk-cache.js'
export type { CommandLogEntry } from './command-log.js'
export { CommandLog } from './command-log.js'
export type { DeploymentHistoryRow, DeploymentInput, DeploymentRow } from './deployments.js'
export { DeploymentRecords } from './deployments.js'
export type { ImageInput } from './images.js'
export { ImageRecords } from './images.js'
export {
  type ImageUnitsProgress,
  IndexQueries,
  type ReadPlan,
  type UnitWithTail,
} from './index-queries.js'
export type { LayerIndexInput } from './layers.js'
export { LayerRecords } from './layers.js'
export { MIGRATIONS, SCHEMA_VERSION } from './migrations.js'
export { chunkKey, digestHex, isChunkKey } from './names.js'
export type {
  OutboxEnqueued,
  OutboxKind,
  OutboxLimits,
  OutboxMessage,
  OutboxStats,
  StoreThreads,
} from './outbox.js'
export { Outbox } from './outbox.js'
export { Pins } from './pins.js'
export type { StoreOptions } from './store.js'
export { DEFAULT_STATE_DIR, Store } from './store.js'
export { TocRecords } from './toc.js'
export type * from './types.js'
