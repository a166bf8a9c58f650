import { moduleLogger } from '../../log.js'

/** libuv's own default when UV_THREADPOOL_SIZE is unset. */
const LIBUV_DEFAULT_THREADS = 4
/** Threads always left for file reads and writes (chunk files, replies). */
const KEPT_FOR_FILE_IO = 2
const READERS_PER_MOUNT = 2

let readersInUse = 0

/**
 * How many device reads a new mount may keep waiting on libuv's thread pool. A waiting
 * read holds its thread until a request comes, and a pool full of them would leave no
 * thread to read the chunk files those requests need: every mount would hang. So a mount
 * gets two readers while the pool has room, else one (and a warning that says how to give
 * it room). bin/edgestar and the tests raise UV_THREADPOOL_SIZE to 32.
 */
export function devicePoolReaders(): number {
  const poolThreads = Number(process.env.UV_THREADPOOL_SIZE) || LIBUV_DEFAULT_THREADS
  const room = poolThreads - KEPT_FOR_FILE_IO - readersInUse
  const readers = Math.max(1, Math.min(READERS_PER_MOUNT, room))
  if (room < 1) {
    moduleLogger('fs').warn(
      { poolThreads, readersInUse },
      'libuv thread pool nearly full of FUSE readers; set UV_THREADPOOL_SIZE higher',
    )
  }
  readersInUse += readers
  return readers
}

/** Gives back the readers of a mount whose session ended. */
export function releasePoolReaders(readers: number): void {
  readersInUse = Math.max(0, readersInUse - readers)
}
