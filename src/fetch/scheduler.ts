import { EventEmitter } from 'node:events'
import { appendFileSync } from 'node:fs'
import { EdgestarError, isEdgestarError } from '../errors.js'
import type { LayerFormat } from '../estargz/index.js'
import { moduleLogger } from '../log.js'
import type { BlobReader, ByteRange, RangeReadOptions, RequestPatience } from '../registry/index.js'
import type { ChunkExtentInput, ChunkRef, LayerRow, Store, UnitRow } from '../store/index.js'
import { type DecodeOutcome, DecodeWorker } from './decode-worker.js'
import { computeDiffID } from './layer-verifier.js'
import {
  type LinkChange,
  LinkMonitor,
  type LinkState,
  type SlowLinkThresholds,
} from './link-state.js'
import { readPaced } from './paced-read.js'
import { type Clock, TokenBucket } from './token-bucket.js'
import type { DecodedUnit } from './unit-decoder.js'

/** Why a chunk is wanted; lower runs first. */
export type FetchPriority = 'demand' | 'prefetch' | 'background'

const PRIORITY_RANK: Record<FetchPriority, number> = { demand: 0, prefetch: 1, background: 2 }

/** Units whose storing `storedSince` remembers. */
const RECENT_STORES = 4096
/** Read plans whose chunks were all read, remembered by `readEntryRange`. */
const RECENT_PLANS = 1024
/**
 * How long a remembered plan is used. Another process may evict its objects; their slots
 * keep the verified bytes for `HOLE_GRACE_MS` (a minute) before the space is punched out.
 */
export const READ_PLAN_TTL_MS = 20_000

interface RememberedPlan {
  refs: ChunkRef[]
  size: number
  /** Used until then (ms since the epoch). */
  until: number
}
/**
 * A read on a link not known to be offline is given at least this long without a byte
 * before it fails, however short --offline-wait is: the wait is for a link that is down,
 * not a budget for a healthy request's first byte.
 */
const MIN_STALL_MS = 1000
/**
 * One attempt, and an answer within 5 s, for a probe of an offline registry: a probe
 * stuck behind the client's retries and 30 s timeouts would tell of a registry's return
 * minutes late (seen with a registry that accepts connections and never answers).
 */
const PROBE_PATIENCE: RequestPatience = { maxAttempts: 1, timeoutMs: 5000 }

/**
 * What the scheduler needs from the registry client (RegistryClient satisfies it). The
 * buffers its readers' `readRanges` return become the scheduler's: their memory moves to
 * the decode thread, so a reader must not hand out views of memory it keeps using.
 */
export interface BlobReaderSource {
  blobReader(ref: string, digest: string, sizeBytes: number): BlobReader
}

/** Options of a FetchScheduler. */
export interface FetchSchedulerOptions {
  store: Store
  registry: BlobReaderSource
  /** Requests in flight at most; one slot is always kept free of background work. Default 4. */
  concurrency?: number
  /** Background cap in bytes per second, 0 = none (the default). */
  backgroundRateBytesPerSec?: number
  /**
   * Bucket size of the cap in bytes, which is also the largest background request under a
   * cap. Default a quarter second of the rate, at least 16 KiB.
   */
  backgroundBurstBytes?: number
  /**
   * How long a read of a missing chunk waits with no byte arriving for it (a link down,
   * refusing, or a registry that stopped answering), in ms. Default 30 000.
   */
  offlineWaitMs?: number
  /** Time between probes of an offline registry, in ms. Default 1 000. */
  probeIntervalMs?: number
  /** Units coalesced into one batch of ranges up to this many bytes. Default 4 MiB. */
  maxBatchBytes?: number
  /** When an answered request counts as slow (three of the last four make the link degraded). */
  slowLink?: SlowLinkThresholds
  /** Appends `LAYER OFFSET KEY` per unit requested to this file (tests; EDGESTAR_FETCH_TRACE). */
  tracePath?: string
  clock?: Clock
}

/** Counters of a scheduler since it was made. */
export interface FetchStats {
  /** Blob bytes received for reads a process waits on, counted as they arrive. */
  demandBytes: number
  /** Blob bytes received for the prefetch set, counted as they arrive. */
  prefetchBytes: number
  /** Blob bytes received by the background fetch, counted as they arrive (per piece). */
  backgroundBytes: number
  units: number
  batches: number
  integrityRetries: number
  integrityFailures: number
  linkState: LinkState
  backgroundRateBytesPerSec: number
  queued: number
  running: number
}

interface Waiter {
  resolve: () => void
  reject: (err: unknown) => void
  priority: FetchPriority
  timer?: NodeJS.Timeout
  /** When the wait began (performance.now()), and the --offline-wait it began with. */
  startedMs?: number
  waitMs?: number
}

interface Job {
  id: string
  layerDigest: string
  offset: number
  /** The unit's row as read when the job was made (its fixed fields are what count). */
  unit: UnitRow
  priority: FetchPriority
  waiters: Set<Waiter>
  isRunning: boolean
  isRetry: boolean
  /** Its batch has all its bytes (now being checked and stored). */
  isFetched: boolean
  /** When the last byte for its running batch arrived (performance.now()), 0 before any. */
  bytesAtMs: number
  /** The batch fetching it, while one is. */
  fetch?: BatchFetch
}

/** The jobs one request (or paced run of requests) fetches, and what drops it. */
interface BatchFetch {
  jobs: Job[]
  controller: AbortController
}

const log = moduleLogger('fetch')

/**
 * One per process: fetches fetch units (see store's UnitRow) of layers into the chunk
 * cache. Demand reads run before the prefetch set, which runs before the background
 * trickle; a demand for a unit already queued as background promotes it, and requests
 * for one unit are merged. Units of one layer picked together go out as one `readRanges`
 * call, which the registry coalesces. Only background work is held to the token bucket;
 * one request slot is kept free of it so a demand read never waits behind the trickle.
 * Every unit is decoded and verified before it is stored; a corrupt one is fetched once
 * more, then fails with EDGESTAR_FETCH_INTEGRITY and nothing is stored.
 * Emits `link` (LinkChange), `unit` ({layerDigest, offset, priority, bytes}) and
 * `layer-complete` (layerDigest) when the background fetch has every unit of a layer,
 * and for layers queued `forDiffID`, `layer-verified` or `layer-failed` after the check.
 * Its lookups go to the store's reader thread and its commits to the writer thread, and
 * fetched units are decoded, checked and hashed on its decode thread, so nothing here
 * waits on SQLite or inflates, checks or hashes fetched bytes on the event loop that
 * serves FUSE.
 */
export class FetchScheduler extends EventEmitter {
  readonly store: Store
  private readonly registry: BlobReaderSource
  private readonly concurrency: number
  private offlineWaitMs: number
  private readonly probeIntervalMs: number
  private readonly maxBatchBytes: number
  private readonly tracePath: string | undefined
  private readonly bucket: TokenBucket
  private readonly link: LinkMonitor
  private readonly decoder = new DecodeWorker()
  private readonly jobs = new Map<string, Job>()
  private readonly readers = new Map<string, BlobReader>()
  private readonly layerRows = new Map<string, LayerRow>()
  private readonly wholeChecks = new Map<string, Promise<void>>()
  private readonly backgroundRetried = new Set<string>()
  // Job ids of the units stored most recently, each with `unitsStored` after it. The
  // reader thread answers from a snapshot taken after the question was sent, which may
  // predate a store acknowledged meanwhile; this corrects such answers.
  private readonly storedAt = new Map<string, number>()
  private unitsStored = 0
  // Plans of ranges read in full, by layer, file and range: a re-read of cached data (a
  // running container's usual read) then asks no thread at all. They are all dropped
  // when this process frees objects, and each is used for READ_PLAN_TTL_MS at most, so a
  // plan never outlives the bytes of an object another process evicted.
  private readonly readPlans = new Map<string, RememberedPlan>()
  private readonly stopWatchingFrees: () => void
  // Units (job ids) whose wait ran out during the current outage. The kernel asks
  // again at once after a failed read-ahead; that second ask must not wait the whole
  // --offline-wait again. Cleared when the link comes back.
  private readonly offlineFailures = new Set<string>()
  /** Chunk writes between their first file and their commit (see close). */
  private readonly writes = new Set<Promise<void>>()
  private unitsSinceGc = 0
  private running = 0
  /** When the last byte of any fetch arrived (performance.now()), 0 before any. */
  private bytesAtMs = 0
  private bucketTimer: NodeJS.Timeout | undefined
  private probeTimer: NodeJS.Timeout | undefined
  private backgroundLayers: { digest: string; forDiffID: boolean }[] = []
  private isBackgroundEnabled = true
  private isRefilling = false
  private isEvicting = false
  private isRefillWanted = false
  private isClosed = false
  private readonly counters = {
    demandBytes: 0,
    prefetchBytes: 0,
    backgroundBytes: 0,
    units: 0,
    batches: 0,
    integrityRetries: 0,
    integrityFailures: 0,
  }

  constructor(options: FetchSchedulerOptions) {
    super()
    this.store = options.store
    this.registry = options.registry
    this.concurrency = Math.max(1, options.concurrency ?? 4)
    this.offlineWaitMs = options.offlineWaitMs ?? 30_000
    this.probeIntervalMs = options.probeIntervalMs ?? 1_000
    this.maxBatchBytes = options.maxBatchBytes ?? 4 * 1024 * 1024
    this.tracePath = options.tracePath ?? process.env.EDGESTAR_FETCH_TRACE
    this.bucket = new TokenBucket(
      options.backgroundRateBytesPerSec ?? 0,
      options.clock,
      options.backgroundBurstBytes,
    )
    this.link = new LinkMonitor(options.slowLink)
    this.link.on('change', (change) => this.onLinkChange(change))
    this.stopWatchingFrees = this.store.chunks.onObjectsFreed(() => this.readPlans.clear())
  }

  /** The link to the registry as last seen. */
  get linkState(): LinkState {
    return this.link.state
  }

  /** Changes the background cap at run time (bytes per second, 0 = none). */
  setBandwidth(rateBytesPerSec: number): void {
    if (!Number.isFinite(rateBytesPerSec) || rateBytesPerSec < 0)
      throw new EdgestarError(
        'EDGESTAR_FETCH_BAD_RATE',
        `bandwidth must be a byte rate >= 0, got ${rateBytesPerSec}`,
      )
    this.bucket.setRate(rateBytesPerSec)
    log.info({ rateBytesPerSec }, 'bandwidth changed')
    this.dispatch()
  }

  /** The background cap in bytes per second (0 = none). */
  get bandwidth(): number {
    return this.bucket.rateBytesPerSec
  }

  /** Turns the background trickle on or off (demand and prefetch are unaffected). */
  setBackgroundEnabled(isEnabled: boolean): void {
    this.isBackgroundEnabled = isEnabled
    this.dispatch()
  }

  /** Counters and queue sizes. */
  stats(): FetchStats {
    let queued = 0
    for (const job of this.jobs.values()) if (!job.isRunning) queued++
    return {
      ...this.counters,
      linkState: this.link.state,
      backgroundRateBytesPerSec: this.bucket.rateBytesPerSec,
      queued,
      running: this.running,
    }
  }

  /**
   * Resolves once unit `offset` of layer `layerDigest` is in the cache. A demand or
   * prefetch wait fails with EDGESTAR_FETCH_OFFLINE once `offlineWaitMs` passed without a
   * byte arriving for it, whatever the registry does (see `deadlineMs`), and marks the
   * link offline when nothing arrived at all; EDGESTAR_FETCH_INTEGRITY when the unit
   * failed verification twice.
   */
  async ensureUnit(
    layerDigest: string,
    offset: number,
    priority: FetchPriority,
    needTail = false,
  ): Promise<void> {
    if (this.isClosed) throw closedError()
    const job = this.jobs.get(jobId(layerDigest, offset))
    if (job !== undefined) return this.awaitUnit(job.unit, priority, needTail, this.unitsStored)

    const mark = this.unitsStored
    const unit = await this.ask(this.store.queries.unit(layerDigest, offset))
    if (unit === undefined) throw new Error(`no unit at ${offset} in layer ${layerDigest}`)
    return this.awaitUnit(unit, priority, needTail, mark)
  }

  /**
   * Reads `length` bytes of regular file `name` of a layer from `offset` (fewer at end of
   * file), fetching the units it needs at `priority`. Hardlinks are the caller's to
   * resolve. A layer that must be verified whole is fetched and checked first. With
   * `into` (at least `length` bytes) the bytes land there and a view of it is returned,
   * so a caller with its own buffer pays no allocation.
   */
  async readEntryRange(
    layerDigest: string,
    name: string,
    offset: number,
    length: number,
    priority: FetchPriority = 'demand',
    into?: Buffer,
  ): Promise<Buffer> {
    const planKey = `${layerDigest}\0${name}\0${offset}\0${length}`
    for (let attempt = 0; ; attempt++) {
      if (this.isClosed) throw closedError()
      const known = attempt === 0 ? this.recalledPlan(planKey) : undefined
      let plan = known ?? (await this.planRead(layerDigest, name, offset, length, priority))
      const missing = plan.refs.filter((ref) => !ref.isPresent)
      if (missing.length > 0) {
        await Promise.all(
          missing.map((ref) => this.ensureUnit(layerDigest, ref.unitOffset, priority)),
        )
        // Asked again for where the fetched objects were put (their slots).
        plan = await this.planRead(layerDigest, name, offset, length, priority)
      }
      try {
        const data = await this.assemble(plan.refs, plan.size, offset, length, into)
        this.rememberPlan(planKey, plan.refs, plan.size)
        return data
      } catch (err) {
        if (this.isClosed) throw closedError()
        this.readPlans.delete(planKey)
        // Evicted between the wait and the read: fetch again, once.
        if (attempt > 0 || !isEdgestarError(err, 'EDGESTAR_STORE_CHUNK_MISSING')) throw err
      }
    }
  }

  private recalledPlan(key: string): RememberedPlan | undefined {
    const plan = this.readPlans.get(key)
    if (plan === undefined || plan.until > Date.now()) return plan
    this.readPlans.delete(key)
    return undefined
  }

  private rememberPlan(key: string, refs: ChunkRef[], size: number): void {
    this.readPlans.delete(key)
    if (!refs.every((ref) => ref.isPresent)) return
    this.readPlans.set(key, { refs, size, until: Date.now() + READ_PLAN_TTL_MS })
    if (this.readPlans.size <= RECENT_PLANS) return
    const oldest = this.readPlans.keys().next().value
    if (oldest !== undefined) this.readPlans.delete(oldest)
  }

  // The file's size and the chunks of the range, from one snapshot the reader thread
  // takes. A layer with nothing to check chunks against is served only as a whole
  // verified layer; after an eviction it is fetched and checked whole again.
  private async planRead(
    layerDigest: string,
    name: string,
    offset: number,
    length: number,
    priority: FetchPriority,
  ): Promise<{ refs: ChunkRef[]; size: number }> {
    if (this.isClosed) throw closedError()
    let plan = await this.ask(this.store.queries.readPlan(layerDigest, name, offset, length))
    const layer = this.rememberLayer(layerDigest, plan.layer)
    const isWholeDue = layer.state !== 'verified' || plan.refs.some((ref) => !ref.isPresent)
    if (layer.verification === 'whole' && isWholeDue) {
      await this.verifyWhole(layerDigest, priority)
      plan = await this.ask(this.store.queries.readPlan(layerDigest, name, offset, length))
    }

    if (plan.entry === undefined || plan.entry.type !== 'reg')
      throw new EdgestarError(
        'EDGESTAR_FETCH_NO_SUCH_FILE',
        `no regular file ${JSON.stringify(name)} in layer ${layerDigest}`,
      )
    return { refs: plan.refs, size: plan.entry.size }
  }

  /**
   * Queues the background fetch of `layers` in the given order (each layer: the prefetch
   * set, then file order). With `forDiffID`, gap units and unit tails are fetched too, so
   * the layer can be checked against its diffID (a full pull).
   */
  startBackground(layers: readonly string[], options: { forDiffID?: boolean } = {}): void {
    if (this.isClosed) return
    for (const digest of layers) {
      if (this.backgroundLayers.some((entry) => entry.digest === digest)) continue
      this.backgroundLayers.push({ digest, forDiffID: options.forDiffID ?? false })
    }
    this.dispatch()
  }

  /** Queues the prefetch set (units before the prefetch landmark) of a layer. */
  async prefetch(layerDigest: string): Promise<void> {
    if (this.isClosed) throw closedError()
    const mark = this.unitsStored
    const units = await this.ask(this.store.queries.missingPrefetchUnits(layerDigest))
    await Promise.all(units.map((unit) => this.awaitUnit(unit, 'prefetch', false, mark)))
  }

  /**
   * Changes how long a read of a missing chunk waits for an offline link before it fails
   * (EDGESTAR_FETCH_OFFLINE). Applies to waits that start from now on.
   */
  setOfflineWaitMs(waitMs: number): void {
    if (!Number.isFinite(waitMs) || waitMs < 0)
      throw new EdgestarError(
        'EDGESTAR_FETCH_BAD_OPTION',
        `offline wait must be >= 0 ms, not ${waitMs}`,
      )
    this.offlineWaitMs = waitMs
  }

  /** Resolves when nothing is queued or running and (if enabled) every background layer is done. */
  async whenIdle(): Promise<void> {
    while (this.jobs.size > 0 || (this.isBackgroundEnabled && this.backgroundLayers.length > 0)) {
      if (this.isClosed) return
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  /**
   * Stops timers and fails every waiter with EDGESTAR_FETCH_CLOSED. Batches still being
   * fetched drop their answers and errors quietly, and every later call rejects with
   * EDGESTAR_FETCH_CLOSED without touching the store. Resolves once chunk writes already
   * under way have committed; close the store only then, or their files stay without a
   * row and the next open removes them as strays.
   */
  close(): Promise<void> {
    if (!this.isClosed) this.shutDown()
    return Promise.allSettled([...this.writes]).then(() => {})
  }

  private shutDown(): void {
    this.isClosed = true
    this.stopWatchingFrees()
    clearTimeout(this.bucketTimer)
    clearTimeout(this.probeTimer)
    this.link.close()
    this.decoder.close()
    const err = closedError()
    for (const job of this.jobs.values()) this.settle(job, err)
    this.jobs.clear()
    this.backgroundLayers = []
  }

  // A question to the store's threads. Once the scheduler is closed the store may be
  // closed under it: any answer or failure then becomes EDGESTAR_FETCH_CLOSED.
  private async ask<T>(question: Promise<T>): Promise<T> {
    try {
      const answer = await question
      if (this.isClosed) throw closedError()
      return answer
    } catch (err) {
      throw this.isClosed ? closedError() : err
    }
  }

  // A verified layer's row is final; any other is asked for again (its state moves on,
  // and recording another image can change how it is verified).
  private async layerRow(layerDigest: string): Promise<LayerRow> {
    const cached = this.layerRows.get(layerDigest)
    if (cached !== undefined && cached.state === 'verified') return cached
    const row = await this.ask(this.store.queries.layer(layerDigest))
    return this.rememberLayer(layerDigest, row)
  }

  private rememberLayer(layerDigest: string, row: LayerRow | undefined): LayerRow {
    if (row === undefined)
      throw new EdgestarError(
        'EDGESTAR_STORE_UNKNOWN_LAYER',
        `layer ${layerDigest} is not in the store`,
      )
    this.layerRows.set(layerDigest, row)
    return row
  }

  // Resolves once `unit` (its row read when `unitsStored` was `mark`) is in the cache:
  // joins or makes its job.
  private awaitUnit(
    unit: UnitRow,
    priority: FetchPriority,
    needTail: boolean,
    mark: number,
  ): Promise<void> {
    if (this.isClosed) return Promise.reject(closedError())
    const id = jobId(unit.layerDigest, unit.offset)
    const isTailDue = needTail && unit.kind === 'chunk' && unit.memberBytes === null
    if (unit.isPresent && !isTailDue) return Promise.resolve()
    // Stored (with its tail) after the row was read: the row is older than the cache.
    if (!this.jobs.has(id) && this.storedSince(id, mark)) return Promise.resolve()

    const hasFailedOffline = this.offlineFailures.has(id)
    if (this.link.state === 'offline' && hasFailedOffline && priority !== 'background')
      return Promise.reject(this.offlineError(unit.layerDigest, unit.offset))

    return new Promise<void>((resolve, reject) => {
      const job = this.jobFor(unit, priority)
      const waiter: Waiter = { resolve, reject, priority }
      job.waiters.add(waiter)
      this.armDeadline(job, waiter)
      this.dispatch()
    })
  }

  private jobFor(unit: UnitRow, priority: FetchPriority): Job {
    const id = jobId(unit.layerDigest, unit.offset)
    const existing = this.jobs.get(id)
    if (existing !== undefined) {
      if (PRIORITY_RANK[priority] < PRIORITY_RANK[existing.priority]) existing.priority = priority
      return existing
    }
    const job: Job = {
      id,
      layerDigest: unit.layerDigest,
      offset: unit.offset,
      unit,
      priority,
      waiters: new Set(),
      isRunning: false,
      isRetry: false,
      isFetched: false,
      bytesAtMs: 0,
    }
    this.jobs.set(id, job)
    return job
  }

  private noteStored(id: string): void {
    this.unitsStored++
    this.storedAt.delete(id)
    this.storedAt.set(id, this.unitsStored)
    if (this.storedAt.size <= RECENT_STORES) return
    const oldest = this.storedAt.keys().next().value
    if (oldest !== undefined) this.storedAt.delete(oldest)
  }

  // True when the unit was stored after `unitsStored` was `mark` (as far as remembered).
  private storedSince(id: string, mark: number): boolean {
    return (this.storedAt.get(id) ?? 0) > mark
  }

  // Reads the wanted bytes of the chunk objects straight into one buffer (in parallel when
  // the range spans several); bytes no chunk covers (holes of zstd:chunked `zeros` chunks)
  // read as zeros, up to the end of the file. A short object counts as missing.
  private async assemble(
    refs: ChunkRef[],
    fileSize: number,
    offset: number,
    length: number,
    into?: Buffer,
  ): Promise<Buffer> {
    const end = Math.min(offset + length, fileSize)
    const total = Math.max(0, end - offset)
    const target = into ?? Buffer.allocUnsafe(total)
    const reads: Promise<void>[] = []
    let cursor = offset
    for (const ref of refs) {
      const from = Math.max(cursor, ref.chunkOffset)
      const to = Math.min(end, ref.chunkOffset + ref.chunkSize)
      if (to <= from) continue
      if (from > cursor) target.fill(0, cursor - offset, from - offset)
      reads.push(
        this.readObject(
          ref,
          ref.objectOffset + (from - ref.chunkOffset),
          target,
          from - offset,
          to - from,
        ),
      )
      this.store.chunks.touch(ref.chunkKey)
      cursor = to
    }
    if (end > cursor) target.fill(0, cursor - offset, end - offset)
    // Every read settles before an error is thrown: none may write into `target` later.
    const failed = (await Promise.allSettled(reads)).find((r) => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
    return target.length === total ? target : target.subarray(0, total)
  }

  private async readObject(
    ref: ChunkRef,
    objectOffset: number,
    target: Buffer,
    targetOffset: number,
    length: number,
  ): Promise<void> {
    const key = ref.chunkKey
    // Evicted again between its fetch and the plan asked afterwards: fetched once more.
    if (!ref.isPresent)
      throw new EdgestarError('EDGESTAR_STORE_CHUNK_MISSING', `chunk ${key} was evicted`)
    const chunks = this.store.chunks
    const n = await chunks.readInto(key, objectOffset, target, targetOffset, length, ref.slot)
    if (n === length) return
    await this.store.chunks.forget(key)
    throw new EdgestarError(
      'EDGESTAR_STORE_CHUNK_MISSING',
      `chunk ${key} is shorter than its row says`,
    )
  }

  // The dispatcher: start batches while slots are free, best priority first.
  private dispatch(): void {
    if (this.isClosed) return
    this.fillBackground()
    while (this.running < this.concurrency) {
      const batch = this.nextBatch()
      if (batch === undefined) return
      void this.runBatch(batch)
    }
  }

  private nextBatch(): Job[] | undefined {
    if (this.link.state === 'offline') return undefined
    let best: Job | undefined
    for (const job of this.jobs.values()) {
      if (job.isRunning) continue
      if (best === undefined || PRIORITY_RANK[job.priority] < PRIORITY_RANK[best.priority])
        best = job
      if (best.priority === 'demand') break
    }
    if (best === undefined) return undefined

    const isBackground = best.priority === 'background'
    if (isBackground && (!this.isBackgroundEnabled || this.running >= this.concurrency - 1))
      return undefined
    // The trickle waits while a read or the prefetch set is in flight: on a thin link every
    // background byte sent then delays the bytes a starting process is blocked on.
    if (isBackground && this.hasForegroundInFlight()) return undefined

    const batch = this.companions(best)
    if (isBackground) {
      const bytes = batch.reduce((sum, job) => sum + this.unitSize(job), 0)
      const waitMs = this.bucket.tryTake(Math.min(bytes, this.pieceBytes()))
      if (waitMs > 0) {
        this.wakeAfter(waitMs)
        return undefined
      }
    }
    for (const job of batch) job.isRunning = true
    return batch
  }

  // Queued jobs of the same layer and priority close to `first`, up to the batch size
  // (for capped background work, up to one piece: see readPaced).
  private companions(first: Job): Job[] {
    const batch = [first]
    let bytes = this.unitSize(first)
    const maxBytes = first.priority === 'background' ? this.pieceBytes() : this.maxBatchBytes
    for (const job of this.jobs.values()) {
      if (job === first || job.isRunning || job.layerDigest !== first.layerDigest) continue
      if (job.priority !== first.priority) continue
      const size = this.unitSize(job)
      if (bytes + size > maxBytes || batch.length >= 32) break
      batch.push(job)
      bytes += size
    }
    return batch.sort((a, b) => a.offset - b.offset)
  }

  // Each request's time on the wire tells the link monitor how fast the link is. Paced
  // pieces are timed one by one, after their wait for the bucket.
  private timed(reader: BlobReader, watch: RangeReadOptions): Pick<BlobReader, 'readRanges'> {
    const link = this.link
    return {
      async readRanges(ranges: readonly ByteRange[]): Promise<Buffer[]> {
        const startedMs = performance.now()
        const buffers = await reader.readRanges(ranges, watch)
        let bytes = 0
        for (const buffer of buffers) bytes += buffer.length
        link.observed(bytes, performance.now() - startedMs)
        return buffers
      },
    }
  }

  // Bytes arriving for a batch keep its readers waiting (see deadlineMs). A failed attempt
  // tells the link monitor at once: a registry that never answers is called offline after
  // its first timeout, not after every retry of the client's policy.
  private watchFor(batch: Job[], signal: AbortSignal): RangeReadOptions {
    return {
      signal,
      onBytes: () => {
        const nowMs = performance.now()
        this.bytesAtMs = nowMs
        for (const job of batch) job.bytesAtMs = nowMs
      },
      onRetry: (reason) => {
        if (this.isClosed) return
        const code = (reason as { code?: unknown })?.code
        const isHard = typeof code === 'string' && HARD_FAILURE.test(code)
        this.link.failed(`request retried: ${describeReason(reason)}`, isHard)
      },
    }
  }

  private hasForegroundInFlight(): boolean {
    for (const job of this.jobs.values()) {
      if (job.isRunning && job.priority !== 'background') return true
    }
    return false
  }

  private unitSize(job: Job): number {
    return job.unit.sizeBytes
  }

  private wakeAfter(ms: number): void {
    if (this.bucketTimer !== undefined) return
    this.bucketTimer = setTimeout(() => {
      this.bucketTimer = undefined
      this.dispatch()
    }, ms)
  }

  private async runBatch(batch: Job[]): Promise<void> {
    this.running++
    const fetch: BatchFetch = { jobs: batch, controller: new AbortController() }
    const layerDigest = batch[0]!.layerDigest
    const units = batch.map((job) => job.unit)
    try {
      // Format and source of a layer never change for its digest: any row read will do.
      const layer = this.layerRows.get(layerDigest) ?? (await this.layerRow(layerDigest))
      const chunkOffsets = units.filter((u) => u.kind === 'chunk').map((u) => u.offset)
      // Asked while the bytes are on their way; settled (not left unhandled) on any path.
      const extents = this.store.queries.unitExtents(layerDigest, chunkOffsets).then(
        (lists) => ({ lists }),
        (err: unknown) => ({ err }),
      )
      const reader = this.readerFor(layer)
      this.trace(units)
      for (const job of batch) job.fetch = fetch
      const wire = this.timed(reader, this.watchFor(batch, fetch.controller.signal))
      const buffers = await this.fetchUnits(wire, units, batch[0]!.priority)
      // A late answer after close is dropped: the store may already be closed.
      if (this.isClosed) return
      for (const job of batch) this.onFetched(job)
      this.counters.batches++
      this.link.succeeded()
      const answer = await extents
      if (this.isClosed) return
      if ('err' in answer) throw answer.err
      const byOffset = new Map(chunkOffsets.map((offset, i) => [offset, answer.lists[i]!]))
      await this.storeUnits(batch, layer, units, buffers, byOffset)
    } catch (err) {
      if (fetch.controller.signal.aborted) this.onBatchDropped(batch)
      else this.onBatchError(batch, err)
    } finally {
      for (const job of batch) if (job.fetch === fetch) job.fetch = undefined
      this.running--
      if (!this.isClosed) setImmediate(() => this.dispatch())
    }
  }

  // Dropped because every reader gave up (see dropIfAbandoned): no verdict on the link.
  // A reader that came meanwhile gets a fresh fetch.
  private onBatchDropped(batch: Job[]): void {
    if (this.isClosed) return
    for (const job of batch) {
      job.isRunning = false
      if (job.waiters.size === 0) this.jobs.delete(job.id)
      else this.onRefetch(job)
    }
  }

  // A fetch whose every reader gave up is dropped: on a hung link its request would hold a
  // slot and a connection through each timeout and retry of the client's policy, and a
  // reader after the link's return would queue behind it.
  private dropIfAbandoned(job: Job): void {
    const fetch = job.fetch
    if (fetch === undefined || fetch.jobs.some((other) => other.waiters.size > 0)) return
    log.debug({ layer: job.layerDigest, units: fetch.jobs.length }, 'abandoned fetch dropped')
    fetch.controller.abort()
  }

  // One request for the batch, except a capped background unit larger than a piece, which
  // goes out in paid pieces (see readPaced). Bytes are counted as they arrive.
  private async fetchUnits(
    wire: Pick<BlobReader, 'readRanges'>,
    units: UnitRow[],
    priority: FetchPriority,
  ): Promise<Buffer[]> {
    const counter = `${priority}Bytes` as const
    const unit = units[0]!
    const isPaced =
      priority === 'background' &&
      this.bucket.rateBytesPerSec > 0 &&
      units.length === 1 &&
      unit.sizeBytes > this.pieceBytes()
    if (isPaced) {
      const data = await readPaced(wire, unit.offset, unit.sizeBytes, {
        bucket: this.bucket,
        pieceBytes: () => this.pieceBytes(),
        sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
        isClosed: () => this.isClosed,
        onBytes: (bytes) => {
          this.counters[counter] += bytes
        },
      })
      return [data]
    }
    const buffers = await wire.readRanges(
      units.map((u) => ({ offset: u.offset, length: u.sizeBytes })),
    )
    for (const buffer of buffers) this.counters[counter] += buffer.length
    return buffers
  }

  private pieceBytes(): number {
    return this.bucket.rateBytesPerSec > 0
      ? Math.max(4096, this.bucket.burstBytes)
      : this.maxBatchBytes
  }

  // Decodes and checks every unit of a batch on the decode thread, then stores the good
  // ones in one durable write; a unit that fails its check is retried or failed on its own.
  private async storeUnits(
    batch: Job[],
    layer: LayerRow,
    units: UnitRow[],
    buffers: Buffer[],
    extents: Map<number, ChunkExtentInput[]>,
  ): Promise<void> {
    const outcomes = await this.decodeUnits(batch, layer, units, buffers, extents)
    if (this.isClosed) return
    const verified: { job: Job; unit: UnitRow; decoded: DecodedUnit }[] = []
    for (const [i, job] of batch.entries()) {
      const outcome = outcomes[i]!
      if ('error' in outcome) this.onIntegrityError(job, units[i]!, outcome.error)
      else verified.push({ job, unit: units[i]!, decoded: outcome.decoded })
    }

    const writing = this.store.chunks.writeMany(
      verified.map(({ unit, decoded }) => ({
        key: unit.chunkKey,
        data: decoded.object,
        unit: {
          layerDigest: layer.digest,
          offset: unit.offset,
          memberBytes: decoded.memberBytes,
          dataBytes: decoded.object.length,
          tail: decoded.tail,
        },
      })),
    )
    this.writes.add(writing)
    try {
      await writing
    } finally {
      this.writes.delete(writing)
    }
    if (this.isClosed) return
    for (const { job, unit } of verified) this.finishUnit(job, layer, unit)
  }

  // One outcome per unit, in order. A short unit fails here; the rest go to the decode
  // thread in one request (the buffers' memory moves there). A thread that died under
  // the request fails each unit as a bad one would: fetched and decoded once more.
  private async decodeUnits(
    batch: Job[],
    layer: LayerRow,
    units: UnitRow[],
    buffers: Buffer[],
    extents: Map<number, ChunkExtentInput[]>,
  ): Promise<DecodeOutcome[]> {
    const outcomes: (DecodeOutcome | undefined)[] = units.map((unit, i) => {
      const got = buffers[i]!.length
      if (got === unit.sizeBytes) return undefined
      return { error: new Error(`got ${got} of ${unit.sizeBytes} bytes`) }
    })
    const sent = units.flatMap((_, i) => (outcomes[i] === undefined ? [i] : []))
    if (sent.length === 0) return outcomes as DecodeOutcome[]

    // A job promoted after this point keeps its place in the decode queue: at most the
    // few batches queued before it are decoded first.
    const priority = batch.reduce<FetchPriority>(
      (best, job) => (PRIORITY_RANK[job.priority] < PRIORITY_RANK[best] ? job.priority : best),
      'background',
    )
    const toDecode = sent.map((i) => ({
      unit: units[i]!,
      extents: extents.get(units[i]!.offset) ?? [],
      compressed: buffers[i]!,
    }))
    try {
      const decoded = await this.decoder.decode(layer.format as LayerFormat, toDecode, priority)
      for (const [k, i] of sent.entries()) outcomes[i] = decoded[k]!
    } catch (err) {
      for (const i of sent) outcomes[i] = { error: err as Error }
    }
    return outcomes as DecodeOutcome[]
  }

  private finishUnit(job: Job, layer: LayerRow, unit: UnitRow): void {
    this.noteStored(job.id)
    this.counters.units++
    this.maybeEvict()
    this.jobs.delete(job.id)
    this.settle(job)
    this.emit('unit', {
      layerDigest: layer.digest,
      offset: unit.offset,
      priority: job.priority,
      bytes: unit.sizeBytes,
    })
  }

  private onIntegrityError(job: Job, unit: UnitRow, err: unknown): void {
    if (this.isClosed) return
    const fields = {
      layer: job.layerDigest,
      offset: unit.offset,
      code: (err as { code?: string }).code,
    }
    if (!job.isRetry) {
      this.counters.integrityRetries++
      log.warn({ ...fields, err: String(err) }, 'chunk failed verification, fetching again')
      job.isRetry = true
      job.isRunning = false
      this.onRefetch(job)
      return
    }
    this.counters.integrityFailures++
    log.error(fields, 'chunk failed verification twice')
    this.jobs.delete(job.id)
    this.settle(
      job,
      new EdgestarError(
        'EDGESTAR_FETCH_INTEGRITY',
        `chunk at offset ${unit.offset} of layer ${job.layerDigest} failed verification twice; nothing was stored`,
        {
          hint: 'the registry or something on the way serves corrupt bytes; check the link and the registry',
          cause: err,
        },
      ),
    )
    this.dropBackgroundLayer(job.layerDigest)
  }

  private onBatchError(batch: Job[], err: unknown): void {
    if (this.isClosed) return
    const code = (err as { code?: string }).code ?? ''
    if (isLinkError(code)) {
      this.link.failed(
        `${code}: ${(err as Error).message}`,
        /UNREACHABLE|ECONNREFUSED|OFFLINE/.test(code),
      )
      for (const job of batch) {
        job.isRunning = false
        // Its readers gave up (see onDeadline): nobody waits for it when the link is back.
        if (job.waiters.size === 0) this.jobs.delete(job.id)
        else this.onRefetch(job)
      }
      if (batch[0]!.priority === 'background')
        this.bucket.refund(
          Math.min(
            this.pieceBytes(),
            batch.reduce((s, j) => s + this.unitSize(j), 0),
          ),
        )
      return
    }
    log.warn({ layer: batch[0]!.layerDigest, code, err: String(err) }, 'fetch failed')
    const failure = isEdgestarError(err)
      ? err
      : new EdgestarError(
          'EDGESTAR_FETCH_FAILED',
          `fetch from layer ${batch[0]!.layerDigest} failed`,
          { cause: err },
        )
    for (const job of batch) {
      this.jobs.delete(job.id)
      this.settle(job, failure)
    }
    this.dropBackgroundLayer(batch[0]!.layerDigest)
  }

  private settle(job: Job, err?: unknown): void {
    for (const waiter of job.waiters) {
      clearTimeout(waiter.timer)
      if (err === undefined) waiter.resolve()
      else waiter.reject(err)
    }
    job.waiters.clear()
  }

  private readerFor(layer: LayerRow): BlobReader {
    let reader = this.readers.get(layer.digest)
    if (reader === undefined) {
      reader = this.registry.blobReader(layer.sourceReference, layer.digest, layer.sizeBytes)
      this.readers.set(layer.digest, reader)
    }
    return reader
  }

  private trace(units: UnitRow[]): void {
    if (this.tracePath === undefined) return
    appendFileSync(
      this.tracePath,
      units.map((u) => `${u.layerDigest} ${u.offset} ${u.chunkKey}\n`).join(''),
    )
  }

  // Keeps a window of background jobs queued from the first unfinished background layer.
  // The reader thread says which units are missing; one question at a time, asked again
  // when a dispatch came meanwhile (a batch stored units the answer may still list).
  private fillBackground(): void {
    if (!this.isBackgroundEnabled || this.link.state === 'offline') return
    if (this.backgroundLayers.length === 0 || this.queuedBackground() >= 64) return
    if (this.isRefilling) {
      this.isRefillWanted = true
      return
    }
    this.isRefilling = true
    this.refillBackground().then(
      (hasChanged) => this.afterRefill(hasChanged),
      (err: unknown) => {
        if (!this.isClosed) log.warn({ err: String(err) }, 'background fetch not refilled')
        this.afterRefill(false)
      },
    )
  }

  private afterRefill(hasChanged: boolean): void {
    this.isRefilling = false
    const isWanted = this.isRefillWanted
    this.isRefillWanted = false
    if (hasChanged || isWanted) this.dispatch()
  }

  // Queues background jobs; true when it queued any or finished a layer.
  private async refillBackground(): Promise<boolean> {
    let hasChanged = false
    while (this.backgroundLayers.length > 0 && this.queuedBackground() < 64) {
      const { digest, forDiffID } = this.backgroundLayers[0]!
      const mark = this.unitsStored
      const missing = await this.ask(this.store.queries.missingUnits(digest, 128, forDiffID))
      if (this.isClosed || !this.isBackgroundEnabled || this.link.state === 'offline')
        return hasChanged
      // Dropped (it failed) while the question was out.
      if (this.backgroundLayers[0]?.digest !== digest) continue

      const fresh = missing.filter((unit) => {
        const id = jobId(digest, unit.offset)
        return !this.jobs.has(id) && !this.storedSince(id, mark)
      })
      for (const unit of fresh.slice(0, 64 - this.queuedBackground())) {
        const job = this.jobFor(unit, 'background')
        job.waiters.add({ resolve: () => {}, reject: () => {}, priority: 'background' })
        hasChanged = true
      }
      if (missing.length > 0) return hasChanged
      const stillRunning = [...this.jobs.values()].some((job) => job.layerDigest === digest)
      if (stillRunning) return hasChanged
      this.backgroundLayers.shift()
      hasChanged = true
      this.emit('layer-complete', digest)
      if (forDiffID) void this.verifyInBackground(digest)
    }
    return hasChanged
  }

  private queuedBackground(): number {
    let queued = 0
    for (const job of this.jobs.values()) if (job.priority === 'background') queued++
    return queued
  }

  // A layer the background fetched whole is checked against its diffID; a mismatch drops
  // the unverifiable parts and queues the layer once more.
  private async verifyInBackground(layerDigest: string): Promise<void> {
    if (this.isClosed) return
    try {
      if (await this.verifyLayer(layerDigest)) {
        this.emit('layer-verified', layerDigest)
        return
      }
      if (this.backgroundRetried.has(layerDigest)) {
        this.emit('layer-failed', layerDigest)
        return
      }
      this.backgroundRetried.add(layerDigest)
      this.startBackground([layerDigest], { forDiffID: true })
    } catch (err) {
      if (this.isClosed) return
      log.warn({ layer: layerDigest, err: String(err) }, 'layer check failed')
      this.emit('layer-failed', layerDigest)
    }
  }

  // Keeps the cache under its limit while fetching (pinned images are never evicted).
  private maybeEvict(): void {
    if (this.store.chunks.limitBytes <= 0 || ++this.unitsSinceGc < 16 || this.isEvicting) return
    this.unitsSinceGc = 0
    this.isEvicting = true
    this.store
      .gcAsync()
      .catch((err: unknown) => {
        if (!this.isClosed) log.warn({ err: String(err) }, 'cache eviction failed')
      })
      .finally(() => {
        this.isEvicting = false
      })
  }

  private dropBackgroundLayer(layerDigest: string): void {
    this.backgroundLayers = this.backgroundLayers.filter((entry) => entry.digest !== layerDigest)
  }

  private onLinkChange(change: LinkChange): void {
    log.warn(
      { state: change.state, previous: change.previous, reason: change.reason },
      'link state changed',
    )
    this.emit('link', change)
    if (change.state === 'offline') {
      // Waits end sooner on a link known to be down (see deadlineMs).
      for (const job of this.jobs.values()) this.rearm(job)
      this.scheduleProbe()
      return
    }
    if (change.previous === 'offline') {
      this.offlineFailures.clear()
      clearTimeout(this.probeTimer)
      this.probeTimer = undefined
      // The probe's answer is a byte from the registry: queued reads count from it.
      this.bytesAtMs = performance.now()
      for (const job of this.jobs.values()) this.rearm(job)
      setImmediate(() => this.dispatch())
    }
  }

  // The batch has every byte of the job: what is left (checks, the durable write) is no
  // wait for the link, so its readers' deadlines are off until a refetch.
  private onFetched(job: Job): void {
    job.isFetched = true
    for (const waiter of job.waiters) {
      clearTimeout(waiter.timer)
      waiter.timer = undefined
    }
  }

  // The job goes back to the queue (a failed check, a link error): deadlines run again.
  private onRefetch(job: Job): void {
    job.isFetched = false
    this.rearm(job)
  }

  private rearm(job: Job): void {
    for (const waiter of job.waiters) this.armDeadline(job, waiter)
  }

  // Sets the timer that ends a demand or prefetch wait (background work waits for good).
  private armDeadline(job: Job, waiter: Waiter): void {
    if (waiter.priority === 'background' || job.isFetched || this.isClosed) return
    waiter.startedMs ??= performance.now()
    waiter.waitMs ??= this.offlineWaitMs
    clearTimeout(waiter.timer)
    const dueInMs = this.deadlineMs(job, waiter) - performance.now()
    waiter.timer = setTimeout(() => this.onDeadline(job, waiter), Math.max(0, dueInMs))
  }

  // A wait ends --offline-wait after the later of its start and the last byte that came
  // for it (for a queued unit, for any unit): a download that keeps receiving is never cut,
  // one that hangs is, before or after its headers, whatever the registry's timeouts and
  // retries. Unless the link is known to be offline, at least MIN_STALL_MS.
  private deadlineMs(job: Job, waiter: Waiter): number {
    const startedMs = waiter.startedMs ?? performance.now()
    const waitMs = waiter.waitMs ?? this.offlineWaitMs
    const bytesAtMs = job.isRunning ? job.bytesAtMs : this.bytesAtMs
    const stallMs = this.link.state === 'offline' ? waitMs : Math.max(waitMs, MIN_STALL_MS)
    return Math.max(startedMs, bytesAtMs) + stallMs
  }

  private onDeadline(job: Job, waiter: Waiter): void {
    waiter.timer = undefined
    if (!job.waiters.has(waiter) || job.isFetched || this.isClosed) return
    const nowMs = performance.now()
    // Bytes came meanwhile (or the link went offline): the deadline moved.
    if (this.deadlineMs(job, waiter) > nowMs) {
      this.armDeadline(job, waiter)
      return
    }

    job.waiters.delete(waiter)
    if (job.waiters.size === 0 && !job.isRunning) this.jobs.delete(job.id)
    this.dropIfAbandoned(job)
    const startedMs = waiter.startedMs ?? nowMs
    const waitMs = waiter.waitMs ?? this.offlineWaitMs
    // Nothing from the registry at all for a whole wait: down, as far as readers can tell.
    if (this.link.state !== 'offline' && nowMs - Math.max(startedMs, this.bytesAtMs) >= waitMs) {
      const seconds = Number((waitMs / 1000).toFixed(1))
      this.link.failed(`no byte from the registry for ${seconds} s (--offline-wait)`, true)
    }
    this.offlineFailures.add(job.id)
    waiter.reject(this.offlineError(job.layerDigest, job.offset, nowMs - startedMs))
  }

  // Without `waitedMs`, the read failed at once: its unit's wait ran out earlier in this
  // outage (see offlineFailures).
  private offlineError(layerDigest: string, offset: number, waitedMs?: number): EdgestarError {
    const seconds = (ms: number): number => Number((ms / 1000).toFixed(1))
    const why =
      waitedMs === undefined
        ? 'a wait for it already ran out while the registry stays offline'
        : `no byte of it came in ${seconds(waitedMs)} s`
    return new EdgestarError(
      'EDGESTAR_FETCH_OFFLINE',
      `registry offline: chunk at offset ${offset} of layer ${layerDigest} is not cached ` +
        `and ${why} (--offline-wait ${seconds(this.offlineWaitMs)} s)`,
      { hint: 'reconnect the device, or pull the image while online (edgestar pull REF)' },
    )
  }

  // While offline, one small read every probeIntervalMs tells when the registry is back.
  private scheduleProbe(): void {
    if (this.probeTimer !== undefined || this.isClosed) return
    this.probeTimer = setTimeout(async () => {
      this.probeTimer = undefined
      const job = this.jobs.values().next().value as Job | undefined
      const layer = (job && this.layerRows.get(job.layerDigest)) ?? [...this.layerRows.values()][0]
      if (layer === undefined) {
        this.link.succeeded()
        return
      }
      try {
        await this.readerFor(layer).readRanges([{ offset: 0, length: 1 }], {
          patience: PROBE_PATIENCE,
        })
        this.link.succeeded()
      } catch {
        this.scheduleProbe()
      }
    }, this.probeIntervalMs)
  }

  private verifyWhole(layerDigest: string, priority: FetchPriority): Promise<void> {
    let pending = this.wholeChecks.get(layerDigest)
    if (pending === undefined) {
      log.info({ layer: layerDigest }, 'layer has nothing to verify lazily, fetching it whole')
      pending = this.completeLayer(layerDigest, priority).finally(() =>
        this.wholeChecks.delete(layerDigest),
      )
      this.wholeChecks.set(layerDigest, pending)
    }
    return pending
  }

  /**
   * Fetches every unit of a layer that a diffID check needs (landmark order, then file
   * order) at `priority`, then checks the layer against its diffID and marks it verified.
   * A mismatch drops the unverifiable parts (gaps, tails, and for layers without chunk
   * digests every object) and tries once more; then EDGESTAR_FETCH_INTEGRITY.
   */
  async completeLayer(layerDigest: string, priority: FetchPriority = 'prefetch'): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      for (;;) {
        if (this.isClosed) throw closedError()
        const mark = this.unitsStored
        const missing = await this.ask(this.store.queries.missingUnits(layerDigest, 256, true))
        if (missing.length === 0) break
        await Promise.all(missing.map((unit) => this.awaitUnit(unit, priority, true, mark)))
      }
      if (this.isClosed) throw closedError()
      if (await this.verifyLayer(layerDigest, priority)) return
      if (attempt > 0)
        throw new EdgestarError(
          'EDGESTAR_FETCH_INTEGRITY',
          `layer ${layerDigest} does not match its diffID after fetching it twice`,
          {
            hint: 'the registry serves a layer that differs from the image config; check the image',
          },
        )
    }
  }

  /**
   * Checks a fully fetched layer against the diffID in its image config. True when it
   * matches (the layer is marked verified); false after dropping what could be wrong.
   * A layer with no recorded diffID counts as verified when complete. The layer is hashed
   * on the decode thread, queued at `priority` among the units it decodes.
   */
  async verifyLayer(layerDigest: string, priority: FetchPriority = 'background'): Promise<boolean> {
    const layer = await this.layerRow(layerDigest)
    const hash = this.decoder.sha256(priority)
    const computed = await this.ask(computeDiffID(this.store, layerDigest, hash)).finally(() =>
      hash.drop(),
    )
    if (layer.diffID === null || computed === layer.diffID) {
      await this.ask(this.store.setLayerState(layerDigest, 'verified'))
      this.layerRows.delete(layerDigest)
      log.info({ layer: layerDigest, diffID: computed }, 'layer verified')
      return true
    }

    log.error({ layer: layerDigest, expected: layer.diffID, computed }, 'layer diffID mismatch')
    await this.ask(this.store.chunks.dropUnverified(layerDigest))
    this.layerRows.delete(layerDigest)
    return false
  }
}

function jobId(layerDigest: string, offset: number): string {
  return `${layerDigest}@${offset}`
}

function closedError(): EdgestarError {
  return new EdgestarError('EDGESTAR_FETCH_CLOSED', 'the fetch scheduler was closed')
}

// Integrity and "not there" answers are the registry's verdict; anything else is the link.
function isLinkError(code: string): boolean {
  if (
    /NOT_FOUND|UNAUTHORIZED|DENIED|BAD_MANIFEST|DIGEST|INVALID|UNKNOWN|NOT_IMPLEMENTED/.test(code)
  )
    return false
  // The bytes came: storing them failed (a full disk), which fetching again cannot mend.
  return !code.startsWith('EDGESTAR_STORE_')
}

// Failures that say the registry cannot be reached at all (nothing answers, or not in
// time): the link is offline after the first, not the second.
const HARD_FAILURE =
  /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|UND_ERR_CONNECT_TIMEOUT|UND_ERR_HEADERS_TIMEOUT/

function describeReason(reason: unknown): string {
  if (typeof reason === 'string') return reason
  const code = (reason as { code?: unknown })?.code
  const message = reason instanceof Error ? reason.message : String(reason)
  return typeof code === 'string' ? `${code} ${message}` : message
}
