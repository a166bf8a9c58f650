import { EdgestarError } from '../../errors.js'
import { moduleLogger } from '../../log.js'

/** libuv's own default when UV_THREADPOOL_SIZE is unset. */
const LIBUV_DEFAULT_THREADS = 4
/** libuv's ceiling (MAX_THREADPOOL_SIZE in deps/uv/src/threadpool.c). */
const LIBUV_MAX_THREADS = 1024
/** Threads always left for file reads and writes (chunk files, replies). */
const KEPT_FOR_FILE_IO = 2
const READERS_PER_MOUNT = 2

let readersInUse = 0

/**
 * The size of libuv's pool as libuv itself reads UV_THREADPOOL_SIZE (threadpool.c,
 * libuv 1.4x): `atoi`, so text that is no number counts 0; 0 (an empty value too) gives
 * one thread; a negative value wraps in its unsigned int and so meets the ceiling.
 */
export function libuvPoolThreads(env: NodeJS.ProcessEnv = process.env): number {
  const value = env.UV_THREADPOOL_SIZE
  if (value === undefined) return LIBUV_DEFAULT_THREADS
  const parsed = Number.parseInt(value, 10)
  const threads = Number.isNaN(parsed) ? 0 : parsed
  if (threads === 0) return 1
  return threads < 0 ? LIBUV_MAX_THREADS : Math.min(threads, LIBUV_MAX_THREADS)
}

/**
 * How many device reads a new mount may keep waiting on libuv's thread pool. A waiting
 * read holds its thread until a request comes, and a pool full of them would leave no
 * thread to read the chunk files those requests need: every mount of the process would
 * hang. So a mount gets two readers while the pool has room, then one while that still
 * leaves a thread free (with a warning that says how to give it room), then none.
 * bin/edgestar and the tests raise UV_THREADPOOL_SIZE to 32.
 * @throws EdgestarError EDGESTAR_FS_THREAD_POOL_FULL when no thread can be spared; nothing
 *   is taken then.
 */
export function devicePoolReaders(): number {
  const poolThreads = libuvPoolThreads()
  const room = poolThreads - KEPT_FOR_FILE_IO - readersInUse
  if (room >= 1) {
    const readers = Math.min(READERS_PER_MOUNT, room)
    readersInUse += readers
    return readers
  }
  if (poolThreads - readersInUse < 2) {
    throw new EdgestarError(
      'EDGESTAR_FS_THREAD_POOL_FULL',
      `no libuv pool thread is left for another FUSE mount (UV_THREADPOOL_SIZE ${poolThreads}, ` +
        `${readersInUse} taken by the mounts of this process)`,
      {
        hint: 'start edgestar with UV_THREADPOOL_SIZE set higher (up to 1024), or unmount an image',
      },
    )
  }
  moduleLogger('fs').warn(
    { poolThreads, readersInUse },
    'libuv thread pool nearly full of FUSE readers; set UV_THREADPOOL_SIZE higher',
  )
  readersInUse += 1
  return 1
}

/** Gives back the readers of a mount whose session ended (or that never mounted). */
export function releasePoolReaders(readers: number): void {
  readersInUse = Math.max(0, readersInUse - readers)
}
