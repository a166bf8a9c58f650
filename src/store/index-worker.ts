import { Worker } from 'node:worker_threads'
import { EdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import { diskFullError } from './chunk-packs.js'
import type { IndexAnswer, IndexRole, IndexThreadData } from './index-thread.js'

const log = moduleLogger('store')

/** How long `close` waits for a writer to finish what it was sent (its busy timeout, and more). */
const CLOSE_WAIT_MS = 15_000

interface Pending {
  resolve: (value: unknown) => void
  reject: (err: Error) => void
  op: string
}

/**
 * One worker thread of the store with its own SQLite connection (`index-thread.ts`):
 * requests go out as messages and are answered in order, so the event loop never waits
 * on SQLite. The thread starts at the first request (a CLI command that never asks starts
 * none) and keeps the process alive only while a request is pending.
 * Rejections carry EDGESTAR_STORE_QUERY_FAILED (with the SQLite code as `cause.code`),
 * EDGESTAR_STORE_DISK_FULL for SQLITE_FULL, or EDGESTAR_STORE_CLOSED after `close`.
 */
export class IndexWorker {
  readonly #dbPath: string
  readonly #role: IndexRole
  readonly #pending = new Map<number, Pending>()
  #worker: Worker | undefined
  #closed: Int32Array | undefined
  #nextId = 0
  #isClosed = false

  constructor(dbPath: string, role: IndexRole) {
    this.#dbPath = dbPath
    this.#role = role
  }

  /** Sends `op` with `args` to the thread; resolves with its answer. */
  call<T>(op: string, args: unknown[]): Promise<T> {
    if (this.#isClosed) return Promise.reject(closedError())
    const worker = this.#start()
    const id = this.#nextId++
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject, op })
      if (this.#pending.size === 1) worker.ref()
      worker.postMessage({ id, op, args })
    })
  }

  /**
   * Stops the thread. A writer first finishes every request already sent (this waits, up
   * to CLOSE_WAIT_MS, blocking the caller: only for shutdown), so a commit under way is
   * either done or never started when this returns; a reader's pending requests reject.
   */
  close(): void {
    if (this.#isClosed) return
    this.#isClosed = true
    const worker = this.#worker
    if (worker === undefined) return
    if (this.#role === 'writer' && this.#closed !== undefined) {
      worker.postMessage({ id: this.#nextId++, op: 'close', args: [] })
      if (Atomics.wait(this.#closed, 0, 0, CLOSE_WAIT_MS) === 'timed-out')
        log.warn({ waitMs: CLOSE_WAIT_MS }, 'store writer did not finish in time; stopping it')
    }
    void worker.terminate()
    if (this.#role === 'reader') this.#failAll(closedError())
  }

  #start(): Worker {
    if (this.#worker !== undefined) return this.#worker
    this.#closed = new Int32Array(new SharedArrayBuffer(4))
    const data: IndexThreadData = {
      dbPath: this.#dbPath,
      role: this.#role,
      closed: this.#closed.buffer as SharedArrayBuffer,
    }
    const worker = new Worker(new URL('./index-thread.js', import.meta.url), { workerData: data })
    worker.on('message', (answer: IndexAnswer) => this.#settle(answer))
    worker.on('error', (err) => this.#failAll(threadError('thread failed', err)))
    worker.on('exit', () => {
      // A thread that died is started afresh by the next request (a closed one is not).
      if (this.#worker === worker) this.#worker = undefined
      this.#failAll(closedError())
    })
    worker.unref()
    this.#worker = worker
    return worker
  }

  #settle(answer: IndexAnswer): void {
    const pending = this.#pending.get(answer.id)
    if (pending === undefined) return
    this.#pending.delete(answer.id)
    if (this.#pending.size === 0) this.#worker?.unref()
    if (answer.error === undefined) pending.resolve(answer.result)
    else pending.reject(threadError(`${pending.op} failed: ${answer.error.message}`, answer.error))
  }

  #failAll(err: Error): void {
    for (const pending of this.#pending.values()) pending.reject(err)
    this.#pending.clear()
    this.#worker?.unref()
  }
}

function threadError(message: string, cause: unknown): EdgestarError {
  if ((cause as { code?: unknown })?.code === 'SQLITE_FULL') return diskFullError(cause)
  return new EdgestarError('EDGESTAR_STORE_QUERY_FAILED', `store thread: ${message}`, { cause })
}

function closedError(): EdgestarError {
  return new EdgestarError('EDGESTAR_STORE_CLOSED', 'the store was closed')
}
