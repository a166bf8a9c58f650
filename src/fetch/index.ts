/**
 * The fetch scheduler and its parts: priorities (demand > prefetch > background), range
 * coalescing through the registry's `readRanges`, a token-bucket cap on background bytes,
 * link-state tracking with bounded offline waits, and verification of every unit before
 * it reaches the chunk cache.
 */
export {
  BACKGROUND_ORDERS,
  type BackgroundOrder,
  layersInBackgroundOrder,
  parseBackgroundOrder,
} from './background-order.js'
export { formatBytes, parseByteSize } from './bandwidth.js'
export { installBandwidthControl } from './bandwidth-control.js'
export { computeDiffID } from './layer-verifier.js'
export { type LinkChange, LinkMonitor, type LinkState } from './link-state.js'
export { type PacedReadOptions, readPaced, type Sleep, takeTokens } from './paced-read.js'
export {
  type BlobReaderSource,
  type FetchPriority,
  FetchScheduler,
  type FetchSchedulerOptions,
  type FetchStats,
} from './scheduler.js'
export { type Clock, TokenBucket } from './token-bucket.js'
export type { DecodedUnit } from './unit-decoder.js'
