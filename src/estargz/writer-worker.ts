/**
 * Body of a compression worker thread: compresses segments posted by CompressorPool
 * and posts the result back, transferring buffers instead of copying them.
 */
import { parentPort } from 'node:worker_threads'
import type { ConvertFormat } from './convert-types.js'
import { compressSegment } from './writer-compress.js'

/** A job posted to a worker. */
export interface CompressJob {
  id: number
  format: ConvertFormat
  level: number
  /** The segment: the first `length` bytes of `buffer` (handed back in the reply). */
  buffer: ArrayBuffer
  length: number
}

/** A worker's answer: the compressed bytes, or the error message. */
export interface CompressReply {
  id: number
  /** The job's buffer, returned for reuse. */
  buffer: ArrayBuffer
  out?: Uint8Array
  error?: string
}

parentPort?.on('message', (job: CompressJob) => {
  try {
    const data = new Uint8Array(job.buffer, 0, job.length)
    const compressed = compressSegment(job.format, job.level, data)
    // zlib may hand back a view into a larger buffer; transfer only what we own whole.
    const out = ownsWholeBuffer(compressed) ? compressed : new Uint8Array(compressed)
    const reply: CompressReply = { id: job.id, buffer: job.buffer, out }
    parentPort?.postMessage(reply, [out.buffer as ArrayBuffer, job.buffer])
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err)
    const reply: CompressReply = { id: job.id, buffer: job.buffer, error }
    parentPort?.postMessage(reply, [job.buffer])
  }
})

function ownsWholeBuffer(view: Uint8Array): boolean {
  return view.byteOffset === 0 && view.byteLength === view.buffer.byteLength
}
