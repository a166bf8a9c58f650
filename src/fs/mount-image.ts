import { execFile } from 'node:child_process'
import { resolve } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { promisify } from 'node:util'
import { isEdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import { buildFuseHandlers } from './fuse-ops.js'
import type { ImageView } from './image-view.js'
import { mountDevice, setReadAhead } from './kernel/kernel-mount.js'
import { FuseSession } from './kernel/session.js'
import { devicePoolReaders, releasePoolReaders } from './kernel/thread-pool.js'
import { findMountProblem } from './mount-failure.js'
import { abortMount, clearStaleMount, findFuseMounts } from './stale-mount.js'

/** Kernel caching and access options of a mount; the defaults are chosen for speed. */
export interface MountOptions {
  /** Let other users (a container's uid) use the mount; permissions are still checked. */
  allowOther?: boolean
  /** Seconds the kernel caches attributes (`attr_timeout`). The image never changes. */
  attrTimeoutSec?: number
  /** Seconds the kernel caches names and negative lookups (`entry_timeout`). */
  entryTimeoutSec?: number
  /** Keep file pages in the kernel page cache across opens (`kernel_cache`); safe because
   * only verified bytes are ever served and the image is immutable. */
  kernelCache?: boolean
  /**
   * Kernel read-ahead of the mount in KiB, which is also the size of the READ requests a
   * sequential reader causes (up to 1024). `FULL_READ_AHEAD_KIB` suits an image whose
   * chunks are all cached; `LAZY_READ_AHEAD_KIB` fetches less past what a process reads
   * (a page fault in a mapped library reads the whole window around it) and rarely makes
   * a read wait for a second missing chunk. Change it later with `setReadAhead`.
   */
  readAheadKiB?: number
  /**
   * Longest a single FUSE op may take before it is answered EIO. Must exceed the
   * scheduler's offline wait, so a read fails with the view's own error first.
   */
  opTimeoutMs?: number
  /** How long `unmount()` waits for the kernel to end the connection before aborting it. */
  unmountTimeoutMs?: number
  /** Log every FUSE request at debug level. */
  debug?: boolean
}

/** A live mount. */
export interface Mounted {
  readonly mountpoint: string
  /**
   * Unmounts (bounded by `unmountTimeoutMs`; a stuck unmount is aborted through fusectl and
   * detached) and closes the view. Safe to call more than once.
   */
  unmount(): Promise<void>
  /** Changes the kernel read-ahead (KiB); false when the kernel did not take it. */
  setReadAhead(kib: number): Promise<boolean>
}

/** Read-ahead for an image whose chunks are all in the cache: 1 MiB READ requests. */
export const FULL_READ_AHEAD_KIB = 1024
/** Read-ahead while chunks are still missing: the kernel's own default for FUSE. */
export const LAZY_READ_AHEAD_KIB = 128

/**
 * The mount source in /proc/self/mountinfo is `edgestar:PID`, so `edgestar umount` can ask
 * the serving process to unmount cleanly and tell a stale mount from a live one.
 */
export const FSNAME_PREFIX = 'edgestar:'

const execFileAsync = promisify(execFile)

/** Largest READ request the mount negotiates (the kernel's limit is 256 pages). */
const MAX_READ_BYTES = 1 << 20

const DEFAULTS = {
  attrTimeoutSec: 3600,
  entryTimeoutSec: 3600,
  kernelCache: true,
  readAheadKiB: FULL_READ_AHEAD_KIB,
  opTimeoutMs: 10 * 60_000,
  unmountTimeoutMs: 5000,
}

/**
 * Mounts `view` read-only at `mountpoint`, served by this process over /dev/fuse
 * (`FuseSession`), after clearing a stale mount a killed edgestar left there. Inode numbers
 * come from the view, so hardlinks share one. Resolves once the kernel's INIT is answered.
 * @throws EDGESTAR_FS_MOUNT_BUSY when a live server already serves `mountpoint`;
 *   EDGESTAR_FS_NO_MOUNTPOINT, EDGESTAR_FS_FUSE_DENIED, … from `findMountProblem`;
 *   EDGESTAR_FS_THREAD_POOL_FULL when this process's mounts hold all the libuv pool
 *   threads it can spare (`devicePoolReaders`);
 *   EDGESTAR_FS_MOUNT_FAILED with mount(8)'s reason when the kernel refuses.
 */
export async function mountImage(
  view: ImageView,
  mountpoint: string,
  options: MountOptions = {},
): Promise<Mounted> {
  const dir = resolve(mountpoint)
  const settings = { ...DEFAULTS, ...options }
  const log = moduleLogger('fs', { mountpoint: dir })
  await clearStaleMount(dir)
  const problem = await findMountProblem(dir)
  if (problem) throw problem

  // Taken before mounting: a mount the pool cannot serve would hang whoever touches it.
  const readers = devicePoolReaders()
  const device = await mountDevice(dir, {
    source: `${FSNAME_PREFIX}${process.pid}`,
    subtype: 'edgestar',
    allowOther: settings.allowOther ?? false,
  }).catch(async (err: unknown) => {
    releasePoolReaders(readers)
    throw isEdgestarError(err) ? err : ((await findMountProblem(dir, err)) ?? err)
  })
  const session = new FuseSession(
    device.fd,
    buildFuseHandlers(view, log, settings),
    {
      maxReadBytes: MAX_READ_BYTES,
      readdirPlus: true,
      opTimeoutMs: settings.opTimeoutMs,
      readers,
      trace: settings.debug ?? false,
    },
    log,
  )
  await session.start()
  void session.done.then(() => {
    releasePoolReaders(readers)
    device.release()
  })
  const changeReadAhead = async (kib: number): Promise<boolean> => {
    const taken = await setReadAhead(dir, kib)
    if (!taken) log.warn({ readAheadKiB: kib }, 'the kernel did not take the read-ahead')
    else log.info({ readAheadKiB: kib }, 'read-ahead set')
    return taken
  }
  await changeReadAhead(settings.readAheadKiB)
  log.info('mount ready')

  let unmounting: Promise<void> | undefined
  const unmount = (): Promise<void> => {
    unmounting ??= unmountSession(session, dir, settings.unmountTimeoutMs).finally(() =>
      view.close(),
    )
    return unmounting
  }
  return { mountpoint: dir, unmount, setReadAhead: changeReadAhead }
}

/**
 * umount(8), bounded; a busy or hung mount is aborted through fusectl and detached. Either
 * way the kernel ends the connection and the session's readers stop.
 */
async function unmountSession(session: FuseSession, dir: string, timeoutMs: number) {
  const log = moduleLogger('fs', { mountpoint: dir })
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<boolean>((done) => {
    timer = setTimeout(() => done(false), timeoutMs)
  })

  // Already gone (an outside umount, `edgestar umount`): the connection has ended too.
  const unmounted = execFileAsync('umount', [dir])
    .catch(async (err: unknown) => {
      if ((await findFuseMounts(dir)).length > 0) throw err
    })
    .then(
      () => session.done.then(() => true),
      () => false,
    )
  const finished = await Promise.race([unmounted, timedOut])
  clearTimeout(timer)
  const left = finished ? 0 : await abortMount(dir)
  // After an abort the readers wake at once with ENODEV; bounded all the same.
  if (!finished) await Promise.race([session.done, delay(timeoutMs)])
  if (!finished || left > 0) log.warn({ aborted: left }, 'unmount forced')
  else log.info('unmounted')
}
