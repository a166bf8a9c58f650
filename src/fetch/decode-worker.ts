import { Worker } from 'node:worker_threads'
import { EdgestarError } from '../errors.js'
import type { ChunkExtent, Compression, LayerFormat } from '../estargz/index.js'
import { moduleLogger } from '../log.js'
import type { ChunkExtentInput, UnitRow } from '../store/index.js'
import {
  type DecodeAnswer,
  type DecodeRequest,
  fromErrorWire,
  transferListOf,
} from './decode-wire.js'
import type { DecodedUnit } from './unit-decoder.js'

const log = moduleLogger('fetch')

/** Why work is wanted, best first (the scheduler's FetchPriority). */
export type DecodePriority = 'demand' | 'prefetch' | 'background'

/** A fetched unit to decode: its row, its chunk extents and the bytes as fetched. */
export interface UnitToDecode {
  unit: Pick<UnitRow, 'kind' | 'sizeBytes' | 'chunkDigest'>
  extents: ChunkExtentInput[]
  /** Given away: its memory moves to the decode thread and must not be used afterwards. */
  compressed: Buffer
}

/** One chunk of a layer blob to decode: its extent and the blob bytes it covers. */
export interface ChunkToDecode {
  compression: Compression
  extent: ChunkExtent
  /** The `extent.compressedSize` blob bytes at `extent.compressedOffset` (none for a hole). */
  compressed: Buffer
}

/** The decoded unit, or why it failed its check (the decodeUnit codes). */
export type DecodeOutcome = { decoded: DecodedUnit } | { error: Error }

/** Pieces of a hash sent in one message. */
const HASH_MESSAGE_BYTES = 1 << 20
/** Bytes of a hash sent and not yet hashed, past which `update` waits. */
const HASH_WINDOW_BYTES = 4 << 20

const RANKS: Record<DecodePriority, number> = { demand: 0, prefetch: 1, background: 2 }

/** A request before it is numbered (Omit applied to each member of the union). */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never
type RequestBody = WithoutId<DecodeRequest>

interface Queued {
  body: RequestBody
  transfer: ArrayBuffer[]
  resolve: (answer: DecodeAnswer) => void
  reject: (err: Error) => void
}

/**
 * A decode thread (`decode-thread.ts`): the scheduler's fetched units are inflated and
 * their chunk digests checked there, and whole layers hashed for their diffID; a local
 * layer blob's chunks are decoded there too. So no decompression or hashing of layer
 * data runs on the event loop that serves FUSE. The
 * thread takes one request at a time; queued requests go best priority first, in order
 * within a priority. Memory moves both ways without copies (transfer lists; small buffers
 * of Node's allocation pool are copied). The thread
 * starts at the first request and keeps the process alive only while work is queued; one
 * that dies is started afresh by the next request.
 * Rejections: EDGESTAR_FETCH_DECODE_FAILED when the thread died under a request,
 * EDGESTAR_FETCH_CLOSED after `close`.
 */
export class DecodeWorker {
  readonly #queues: Queued[][] = [[], [], []]
  #worker: Worker | undefined
  #inFlight: Queued | undefined
  #nextId = 0
  #nextHashId = 0
  // Hashes begun before the thread last died lost their state there.
  #firstLiveHashId = 0
  #isClosed = false

  /**
   * Decodes and checks `units` (see decodeUnit) in one request at `priority`. Resolves
   * with one outcome per unit, in order; a unit that fails its check is an outcome, not a
   * rejection. The units' `compressed` memory is moved to the thread.
   */
  async decode(
    format: LayerFormat,
    units: readonly UnitToDecode[],
    priority: DecodePriority,
  ): Promise<DecodeOutcome[]> {
    const items = units.map(({ unit, extents, compressed }) => ({
      unit: { kind: unit.kind, sizeBytes: unit.sizeBytes, chunkDigest: unit.chunkDigest },
      extents,
      compressed,
    }))
    const transfer = transferListOf(units.map((unit) => unit.compressed))
    const answer = await this.#request({ op: 'decode', format, items }, transfer, priority)
    return (answer.outcomes ?? []).map((outcome) => {
      if ('error' in outcome) return { error: fromErrorWire(outcome.error) }
      const { object, tail, memberBytes } = outcome.decoded
      return { decoded: { object: asBuffer(object), tail: tail && asBuffer(tail), memberBytes } }
    })
  }

  /**
   * Decodes and checks one chunk of a layer blob on the thread (estargz's `decodeChunk`).
   * Resolves with exactly the chunk's bytes. Rejects with decodeChunk's codes
   * (EDGESTAR_ESTARGZ_CHUNK_CORRUPT, _CHUNK_BOMB, _CHUNK_DIGEST_MISMATCH) and the thread's
   * own (EDGESTAR_FETCH_DECODE_FAILED, EDGESTAR_FETCH_CLOSED).
   */
  async decodeChunk(chunk: ChunkToDecode, priority: DecodePriority): Promise<Buffer> {
    // `compressed` is given away: its memory moves to the thread.
    const { compression, extent, compressed } = chunk
    const body: RequestBody = { op: 'chunk', compression, extent, compressed }
    const answer = await this.#request(body, transferListOf([compressed]), priority)
    if (answer.data === undefined) throw new Error('decode thread answered a chunk without data')
    return asBuffer(answer.data)
  }

  /**
   * Decompresses a whole run of gzip members or zstd frames (a plain layer blob) on the
   * thread; `compressed` moves there. Rejects with the decompressor's error (no code) for
   * input that does not decompress, and with the thread's own codes (see decodeChunk).
   */
  async inflate(
    format: LayerFormat,
    compressed: Buffer,
    priority: DecodePriority,
  ): Promise<Buffer> {
    const body: RequestBody = { op: 'inflate', format, compressed }
    const answer = await this.#request(body, transferListOf([compressed]), priority)
    if (answer.data === undefined) throw new Error('decode thread answered inflate without data')
    return asBuffer(answer.data)
  }

  /** A sha256 computed on the thread from pieces given in order (see ThreadHash). */
  sha256(priority: DecodePriority = 'background'): ThreadHash {
    const hashId = this.#nextHashId++
    const send = (pieces: Uint8Array[], given: ArrayBuffer[], isLast: boolean) => {
      if (hashId < this.#firstLiveHashId) return Promise.reject(diedError())
      return this.#request({ op: 'hash', hashId, pieces, isLast }, given, priority)
    }
    return new ThreadHash(send, () => this.#drop(hashId))
  }

  /** Stops the thread; queued and running requests reject with EDGESTAR_FETCH_CLOSED. */
  close(): void {
    if (this.#isClosed) return
    this.#isClosed = true
    const worker = this.#worker
    this.#worker = undefined
    if (worker !== undefined) void worker.terminate()
    this.#failAll(closedError())
  }

  #request(body: RequestBody, transfer: ArrayBuffer[], priority: DecodePriority) {
    if (this.#isClosed) return Promise.reject(closedError())
    return new Promise<DecodeAnswer>((resolve, reject) => {
      this.#queues[RANKS[priority]]!.push({ body, transfer, resolve, reject })
      this.#sendNext()
    })
  }

  #drop(hashId: number): void {
    if (this.#isClosed || hashId < this.#firstLiveHashId) return
    const body: RequestBody = { op: 'drop-hash', hashId }
    this.#queues[RANKS.background]!.push({
      body,
      transfer: [],
      resolve: () => {},
      reject: () => {},
    })
    this.#sendNext()
  }

  #sendNext(): void {
    if (this.#inFlight !== undefined || this.#isClosed) return
    const next = this.#queues.find((queue) => queue.length > 0)?.shift()
    if (next === undefined) {
      this.#worker?.unref()
      return
    }
    const worker = this.#start()
    worker.ref()
    this.#inFlight = next
    const message = { id: this.#nextId++, ...next.body } as DecodeRequest
    try {
      worker.postMessage(message, next.transfer)
    } catch {
      // A runtime that refuses some memory in a transfer list: copy it all instead.
      worker.postMessage(message)
    }
  }

  #start(): Worker {
    if (this.#worker !== undefined) return this.#worker
    const worker = new Worker(new URL('./decode-thread.js', import.meta.url))
    worker.on('message', (answer: DecodeAnswer) => this.#settle(answer))
    // Followed by `exit`, which settles what was running.
    worker.on('error', (err) => log.warn({ err: String(err) }, 'decode thread failed'))
    worker.on('exit', () => this.#onExit(worker))
    worker.unref()
    this.#worker = worker
    return worker
  }

  #settle(answer: DecodeAnswer): void {
    const done = this.#inFlight
    this.#inFlight = undefined
    if (answer.error === undefined) done?.resolve(answer)
    else done?.reject(fromErrorWire(answer.error))
    this.#sendNext()
  }

  // The request under way fails; the rest go to a fresh thread, except pieces of hashes
  // whose earlier pieces died with this one.
  #onExit(worker: Worker): void {
    if (this.#worker !== worker) return
    this.#worker = undefined
    this.#firstLiveHashId = this.#nextHashId
    const running = this.#inFlight
    this.#inFlight = undefined
    running?.reject(diedError())
    for (const queue of this.#queues)
      for (const queued of queue.splice(0)) {
        if (isRepeatable(queued.body)) queue.push(queued)
        else queued.reject(diedError())
      }
    this.#sendNext()
  }

  #failAll(err: Error): void {
    this.#inFlight?.reject(err)
    this.#inFlight = undefined
    for (const queue of this.#queues) for (const queued of queue.splice(0)) queued.reject(err)
  }
}

/**
 * A sha256 fed in order and computed on the decode thread. `update` keeps a window of
 * bytes in flight (it waits while more than HASH_WINDOW_BYTES are unhashed), so a caller
 * reading faster than the thread hashes holds little memory. The caller must not change a
 * piece after `update`. `drop` abandons the hash (safe after `digest`).
 */
export class ThreadHash {
  #pieces: Uint8Array[] = []
  #given = new Set<ArrayBuffer>()
  #pieceBytes = 0
  // Messages sent and not yet known to be hashed, oldest first.
  readonly #sent: { bytes: number; isDone: boolean; done: Promise<void> }[] = []
  #failure: Error | undefined
  #hasSent = false
  #isFinished = false

  constructor(
    private readonly send: (
      pieces: Uint8Array[],
      given: ArrayBuffer[],
      isLast: boolean,
    ) => Promise<DecodeAnswer>,
    private readonly onDrop: () => void,
  ) {}

  /**
   * Adds `piece`. With `isGiven`, a piece that spans its whole ArrayBuffer (as a file read
   * returns it) moves to the thread instead of being copied, and is empty afterwards: pass
   * it only for memory nothing else views. Rejects with the thread's error
   * (EDGESTAR_FETCH_DECODE_FAILED when it died, EDGESTAR_FETCH_CLOSED).
   */
  async update(piece: Uint8Array, isGiven = false): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure
    this.#pieces.push(piece)
    if (isGiven && isWholeBuffer(piece)) this.#given.add(piece.buffer as ArrayBuffer)
    this.#pieceBytes += piece.byteLength
    if (this.#pieceBytes >= HASH_MESSAGE_BYTES) this.#flush()

    while (this.#sent[0]?.isDone) this.#sent.shift()
    let unhashed = this.#sent.reduce((sum, sent) => sum + sent.bytes, 0)
    while (unhashed > HASH_WINDOW_BYTES) {
      const oldest = this.#sent.shift()!
      await oldest.done
      unhashed -= oldest.bytes
    }
    if (this.#failure !== undefined) throw this.#failure
  }

  /** The digest of everything added, as `sha256:<hex>`. */
  async digest(): Promise<string> {
    if (this.#failure !== undefined) throw this.#failure
    this.#isFinished = true
    const answer = await this.send(this.#pieces, [...this.#given], true)
    // Answers come in order: an earlier piece's failure is known by now.
    if (this.#failure !== undefined) throw this.#failure
    if (answer.digest === undefined) throw new Error('decode thread answered a hash without digest')
    return answer.digest
  }

  /** Forgets the hash on the thread unless `digest` finished it or nothing was sent. */
  drop(): void {
    if (this.#isFinished) return
    this.#isFinished = true
    if (this.#hasSent) this.onDrop()
  }

  #flush(): void {
    const sent = { bytes: this.#pieceBytes, isDone: false, done: Promise.resolve() }
    sent.done = this.send(this.#pieces, [...this.#given], false).then(
      () => {
        sent.isDone = true
      },
      (err: Error) => {
        sent.isDone = true
        this.#failure ??= err
      },
    )
    this.#sent.push(sent)
    this.#hasSent = true
    this.#pieces = []
    this.#given = new Set()
    this.#pieceBytes = 0
  }
}

// Whole requests can run again on a fresh thread; pieces of a hash cannot.
function isRepeatable(body: RequestBody): boolean {
  return body.op === 'decode' || body.op === 'chunk' || body.op === 'inflate'
}

function isWholeBuffer(view: Uint8Array): boolean {
  return (
    view.buffer instanceof ArrayBuffer &&
    view.byteOffset === 0 &&
    view.byteLength === view.buffer.byteLength &&
    view.byteLength > 0
  )
}

function asBuffer(view: Uint8Array): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength)
}

function diedError(): EdgestarError {
  return new EdgestarError('EDGESTAR_FETCH_DECODE_FAILED', 'the decode thread stopped', {
    hint: 'the unit is fetched and decoded again; report it if this repeats',
  })
}

function closedError(): EdgestarError {
  return new EdgestarError('EDGESTAR_FETCH_CLOSED', 'the fetch scheduler was closed')
}
