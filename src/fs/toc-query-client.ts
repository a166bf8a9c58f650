import { Worker } from 'node:worker_threads'
import { EdgestarError } from '../errors.js'
import type { ChunkSpan, LayerSummary, TocWorkerData, WorkerTocRow } from './toc-query-worker.js'

type Pending = { resolve: (value: unknown) => void; reject: (err: Error) => void }

/**
 * Asynchronous TOC queries against the store's SQLite database, answered by one worker
 * thread (`toc-query-worker.ts`). Requests are answered in order; the worker keeps its
 * own read-only connection.
 */
export class TocQueryClient {
  readonly #worker: Worker
  readonly #pending = new Map<number, Pending>()
  #nextId = 0
  #closed = false

  constructor(dbPath: string) {
    const data: TocWorkerData = { dbPath }
    this.#worker = new Worker(new URL('./toc-query-worker.js', import.meta.url), {
      workerData: data,
    })
    this.#worker.on('message', (message: { id: number; result?: unknown; error?: string }) => {
      const pending = this.#pending.get(message.id)
      if (!pending) return
      this.#pending.delete(message.id)
      if (message.error === undefined) pending.resolve(message.result)
      else pending.reject(queryError(message.error))
    })
    this.#worker.on('error', (err) => this.#failAll(err))
    this.#worker.on('exit', () => this.#failAll(new Error('TOC query worker exited')))
  }

  /** The row of `name` in layer `layerDigest`, or undefined. */
  entry(layerDigest: string, name: string): Promise<WorkerTocRow | undefined> {
    return this.#call('entry', [layerDigest, name]) as Promise<WorkerTocRow | undefined>
  }

  /** Rows directly inside `dir`, ordered by base name. */
  children(layerDigest: string, dir: string): Promise<WorkerTocRow[]> {
    return this.#call('children', [layerDigest, dir]) as Promise<WorkerTocRow[]>
  }

  /** The chunk of file `name` that holds byte `offset`, or undefined (no chunks). */
  chunkSpan(layerDigest: string, name: string, offset: number): Promise<ChunkSpan | undefined> {
    return this.#call('chunkSpan', [layerDigest, name, offset]) as Promise<ChunkSpan | undefined>
  }

  /**
   * Up to `limit` chunks of file `name` in file order, from the one that holds byte
   * `offset` (empty when none does): one round trip for a sequential reader's next chunks.
   */
  chunkSpans(
    layerDigest: string,
    name: string,
    offset: number,
    limit: number,
  ): Promise<ChunkSpan[]> {
    return this.#call('chunkSpans', [layerDigest, name, offset, limit]) as Promise<ChunkSpan[]>
  }

  /** Counts, hardlink targets and implied directories of a layer (one pass). */
  summary(layerDigest: string): Promise<LayerSummary> {
    return this.#call('summary', [layerDigest]) as Promise<LayerSummary>
  }

  async close(): Promise<void> {
    this.#closed = true
    await this.#worker.terminate()
  }

  #call(op: string, args: unknown[]): Promise<unknown> {
    if (this.#closed) return Promise.reject(new Error('TOC query client is closed'))
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      this.#worker.postMessage({ id, op, args })
    })
  }

  #failAll(err: Error): void {
    for (const pending of this.#pending.values()) pending.reject(queryError(String(err)))
    this.#pending.clear()
  }
}

function queryError(message: string): EdgestarError {
  return new EdgestarError('EDGESTAR_FS_QUERY_FAILED', `TOC query failed: ${message}`)
}
