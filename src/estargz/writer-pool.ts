/**
 * A small pool of worker threads that compress segments in parallel. Results come back
 * out of order; the writer keeps order itself by awaiting the promises in sequence.
 */
import { Worker } from 'node:worker_threads'
import { EdgestarError } from '../errors.js'
import { CONVERT_ERRORS } from './convert-errors.js'
import type { ConvertFormat } from './convert-types.js'
import { compressSegment } from './writer-compress.js'
import type { CompressJob, CompressReply } from './writer-worker.js'

const INLINE_BELOW_BYTES = 16 * 1024

interface Pending {
  resolve: (out: Buffer) => void
  reject: (err: Error) => void
}

interface PoolWorker {
  worker: Worker
  inFlight: number
}

/**
 * Compresses segments on `workerCount` threads, or inline when it is 0. `close()`
 * must be called (it terminates the threads); after a worker crash every pending and
 * later job fails with COMPRESS_FAILED.
 */
export class CompressorPool {
  private readonly workers: PoolWorker[] = []
  private readonly pending = new Map<number, Pending>()
  private nextId = 0
  private failure: Error | undefined

  constructor(
    private readonly format: ConvertFormat,
    private readonly level: number,
    workerCount: number,
    private readonly onBufferReturned: (buffer: ArrayBuffer) => void = () => {},
  ) {
    for (let i = 0; i < workerCount; i++) this.workers.push(this.startWorker())
  }

  /**
   * Compresses the first `length` bytes of `buffer`. The buffer is transferred to a
   * worker (unusable meanwhile) and handed to `onBufferReturned` once compressed.
   */
  compress(buffer: ArrayBuffer, length: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure)
    // A small segment costs less to compress here than to post to a worker and back.
    if (this.workers.length === 0 || length < INLINE_BELOW_BYTES) {
      const out = compressSegment(this.format, this.level, new Uint8Array(buffer, 0, length))
      this.onBufferReturned(buffer)
      return Promise.resolve(out)
    }

    const target = this.workers.reduce((a, b) => (b.inFlight < a.inFlight ? b : a))
    const id = this.nextId++
    const job: CompressJob = { id, format: this.format, level: this.level, buffer, length }
    target.inFlight++
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(id, {
        resolve: (out) => {
          target.inFlight--
          resolve(out)
        },
        reject,
      })
      target.worker.postMessage(job, [buffer])
    })
  }

  /** Terminates the worker threads. */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.worker.terminate()))
    this.workers.length = 0
  }

  private startWorker(): PoolWorker {
    const worker = new Worker(new URL('./writer-worker.js', import.meta.url))
    worker.on('message', (reply: CompressReply) => this.onReply(reply))
    worker.on('error', (err) => this.fail(err))
    worker.on('exit', (code) => {
      if (code !== 0 && this.workers.length > 0) this.fail(new Error(`exit code ${code}`))
    })
    return { worker, inFlight: 0 }
  }

  private onReply(reply: CompressReply): void {
    const pending = this.pending.get(reply.id)
    if (pending === undefined) return
    this.pending.delete(reply.id)
    this.onBufferReturned(reply.buffer)
    if (reply.out === undefined) {
      pending.reject(this.compressError(new Error(reply.error ?? 'no output')))
      return
    }
    const out = reply.out
    pending.resolve(Buffer.from(out.buffer, out.byteOffset, out.byteLength))
  }

  private fail(cause: Error): void {
    this.failure ??= this.compressError(cause)
    for (const pending of this.pending.values()) pending.reject(this.failure)
    this.pending.clear()
  }

  private compressError(cause: Error): EdgestarError {
    return new EdgestarError(
      CONVERT_ERRORS.COMPRESS_FAILED,
      `${this.format} compression worker failed: ${cause.message}`,
      { hint: 'retry with --workers 0 to compress inline; report the error if it persists', cause },
    )
  }
}
