/**
 * Body of the store's worker threads (see `IndexWorker`): a connection of its own on the
 * state database, so that the synchronous better-sqlite3 calls of the chunk path never run
 * on the event loop that serves FUSE. A `reader` opens the database read-only and answers
 * the lookups of reads and fetches; the `writer` commits chunk presence durably and records
 * uses and evictions. WAL lets both work beside the main connection.
 * Protocol: `{ id, op, args }` in, `{ id, result }` or `{ id, error }` out, answered in
 * order. `close` is answered after everything sent before it; the thread then closes its
 * connection and sets the shared flag a waiting `IndexWorker.close` sleeps on.
 */
import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'
import { ChunkRows, type PackHole } from './chunk-rows.js'
import { CommandLog } from './command-log.js'
import { type DeploymentInput, DeploymentRecords } from './deployments.js'
import type { ImageUnitsProgress, ReadPlan } from './index-queries.js'
import { type LayerIndexInput, LayerRecords, slotOf } from './layers.js'
import { Outbox, type OutboxKind, type OutboxLimits } from './outbox.js'
import { Pins } from './pins.js'
import { TocRecords } from './toc.js'
import type { ChunkCommit, LayerInput } from './types.js'

/** Which connection a thread keeps. */
export type IndexRole = 'reader' | 'writer'

/** Data a thread is started with. */
export interface IndexThreadData {
  dbPath: string
  role: IndexRole
  /** One Int32: 0 while the thread works, 1 once its connection is closed. */
  closed: SharedArrayBuffer
}

/** A request as the thread receives it. */
export interface IndexRequest {
  id: number
  op: string
  args: unknown[]
}

/** An answer: `result`, or `error` with the SQLite or edgestar code when there is one. */
export interface IndexAnswer {
  id: number
  result?: unknown
  error?: { message: string; code?: string }
}

const data = workerData as IndexThreadData
const closedFlag = new Int32Array(data.closed)
let db: Database.Database
let ops: Record<string, (...args: never[]) => unknown>
try {
  db = new Database(data.dbPath, { readonly: data.role === 'reader', fileMustExist: true })
  // A writer waits for the main connection's transactions (one that records a 100k-entry
  // TOC takes seconds) instead of failing.
  db.pragma('busy_timeout = 10000')
  ops = data.role === 'reader' ? readerOps(db) : writerOps(db)
} catch (err) {
  // A thread that cannot start answers nothing: wake a close that may be waiting on it.
  markClosed()
  throw err
}

function readerOps(db: Database.Database): Record<string, (...args: never[]) => unknown> {
  const toc = new TocRecords(db)
  const layers = new LayerRecords(db)
  const rows = new ChunkRows(db)
  const slotQuery = db.prepare(
    `SELECT pack, pack_offset, size_bytes AS object_bytes FROM chunks
     WHERE key = ? AND state = 'present'`,
  )
  const chunkSlot = {
    get: (key: string) => {
      const row = slotQuery.get(key) as Parameters<typeof slotOf>[0] | undefined
      return row === undefined ? undefined : { slot: slotOf(row) }
    },
  }
  // Reads only: the durably wrapper is never called on this connection.
  const outbox = new Outbox(db, (fn) => fn())
  const commandLog = new CommandLog(db, (fn) => fn())
  // Several lookups answered together read one snapshot.
  const readPlan = db.transaction(
    (layer: string, name: string, offset: number, length: number): ReadPlan => {
      const entry = toc.get(layer, name)
      return {
        layer: layers.get(layer),
        entry: entry && { type: entry.type, size: entry.size },
        refs: toc.chunks(layer, name, offset, length),
      }
    },
  )
  const imageProgress = db.transaction((digests: string[]): ImageUnitsProgress => {
    const total = {
      presentBytes: 0,
      totalBytes: 0,
      presentUnits: 0,
      totalUnits: 0,
      verifiedLayers: 0,
    }
    for (const digest of digests) {
      const progress = layers.progress(digest)
      total.presentBytes += progress.presentBytes
      total.totalBytes += progress.totalBytes
      total.presentUnits += progress.presentUnits
      total.totalUnits += progress.totalUnits
      if (layers.get(digest)?.state === 'verified') total.verifiedLayers++
    }
    return total
  })
  return {
    readPlan,
    imageProgress,
    unitExtents: (layer: string, offsets: number[]) =>
      offsets.map((offset) => layers.unitExtents(layer, offset)),
    chunkRefs: (layer: string, name: string, offset: number, length: number) =>
      toc.chunks(layer, name, offset, length),
    layer: (digest: string) => layers.get(digest),
    unit: (layer: string, offset: number) => layers.unit(layer, offset),
    missingUnits: (layer: string, limit: number, forDiffID: boolean) =>
      layers.missingUnits(layer, limit, forDiffID),
    missingPrefetchUnits: (layer: string) => layers.missingPrefetchUnits(layer),
    unitsWithTails: (layer: string, fromOffset: number, limit: number) =>
      layers.unitsWithTails(layer, fromOffset, limit),
    chunkSlot: (key: string) => chunkSlot.get(key),
    packHoles: (limit: number, freedBy: number) => rows.holes(limit, freedBy),
    // Pins play no part in what a status shows: their sub-select is left empty.
    cacheUsage: () => {
      const usage = rows.usage('SELECT NULL WHERE 0')
      return { presentChunks: usage.presentChunks, presentBytes: usage.presentBytes }
    },
    outboxStats: () => outbox.stats(),
    commandFind: (id: string) => commandLog.find(id),
  }
}

function writerOps(db: Database.Database): Record<string, (...args: never[]) => unknown> {
  // Every commit of this connection must survive a power cut (DESIGN.md): full sync of
  // the WAL; uses are the exception and switch it off for their own transaction.
  db.pragma('synchronous = FULL')
  const rows = new ChunkRows(db)
  const pins = new Pins(db)
  const layers = new LayerRecords(db)
  // This connection syncs fully already: a durable write is a transaction of its own.
  const durably = <T>(fn: () => T): T => db.transaction(fn).immediate()
  const outbox = new Outbox(db, durably)
  const commandLog = new CommandLog(db, durably)
  const deployments = new DeploymentRecords(db, durably)
  return {
    deploymentPut: (input: DeploymentInput) => deployments.put(input),
    deploymentSetState: (name: string, state: string, reason: string | null) =>
      deployments.setState(name, state, reason),
    deploymentRemove: (name: string) => deployments.remove(name),
    outboxEnqueue: (kind: OutboxKind, topic: string, payload: string, limits: OutboxLimits) => {
      outbox.limits = limits
      return outbox.enqueueCounted(kind, topic, payload)
    },
    outboxRemove: (ids: number[]) => outbox.remove(ids),
    outboxPeek: (n: number) => outbox.peek(n),
    commandRecord: (id: string, result: unknown) => commandLog.record(id, result),
    failLayer: (digest: string) =>
      db
        .transaction(() => {
          layers.setState(digest, 'failed')
          layers.resetUnitsDecoded(digest)
          const unvouched = layers
            .units(digest)
            .filter((unit) => unit.kind === 'gap' || unit.chunkDigest === null)
            .map((unit) => unit.chunkKey)
          rows.missing(unvouched)
          return unvouched
        })
        .immediate(),
    gc: (targetBytes: number) =>
      db.transaction(() => rows.evict(pins.pinnedKeysSql(), targetBytes)).immediate(),
    commit: (commit: ChunkCommit) => db.transaction(() => rows.commit(commit)).immediate(),
    recordLayer: (layer: LayerInput, index: LayerIndexInput) =>
      db
        .transaction(() => {
          layers.upsert(layer)
          layers.recordIndex(layer.digest, index)
        })
        .immediate(),
    reserveSlots: (requests: { pack: string; sizeBytes: number }[]) =>
      db
        .transaction(() => requests.map((request) => rows.reserve(request.pack, request.sizeBytes)))
        .immediate(),
    holesPunched: (holes: PackHole[]) => db.transaction(() => rows.punched(holes)).immediate(),
    freeUnseenSlots: (holes: PackHole[]) =>
      db.transaction(() => rows.freeUnseenSlots(holes)).immediate(),
    markMissing: (keys: string[]) => db.transaction(() => rows.missing(keys)).immediate(),
    recordUses: (uses: [string, number][]) => {
      db.pragma('synchronous = NORMAL')
      try {
        db.transaction(() => rows.used(uses)).immediate()
      } finally {
        db.pragma('synchronous = FULL')
      }
    },
  }
}

function answer(request: IndexRequest): IndexAnswer {
  try {
    const op = ops[request.op]
    if (op === undefined) throw new Error(`unknown ${data.role} request ${request.op}`)
    return { id: request.id, result: op(...(request.args as never[])) }
  } catch (err) {
    const code = (err as { code?: unknown }).code
    return {
      id: request.id,
      error: {
        message: String((err as Error).message ?? err),
        ...(typeof code === 'string' ? { code } : {}),
      },
    }
  }
}

parentPort?.on('message', (request: IndexRequest) => {
  if (request.op !== 'close') {
    parentPort?.postMessage(answer(request))
    return
  }
  db.close()
  parentPort?.postMessage({ id: request.id, result: null })
  markClosed()
  parentPort?.close()
})

function markClosed(): void {
  Atomics.store(closedFlag, 0, 1)
  Atomics.notify(closedFlag, 0)
}
