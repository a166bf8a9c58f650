import { resolve } from 'node:path'
import Fuse from 'fuse-native'
import { moduleLogger } from '../log.js'
import { buildFuseOps } from './fuse-ops.js'
import type { ImageView } from './image-view.js'
import { explainMountFailure } from './mount-failure.js'
import { abortMount, clearStaleMount } from './stale-mount.js'

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
   * Longest a single FUSE op may take before fuse-native answers ETIMEDOUT. Must exceed
   * the scheduler's offline wait, so a read fails with the view's own EIO first.
   */
  opTimeoutMs?: number
  /** How long `unmount()` waits for fuse-native's callback before aborting the connection. */
  unmountTimeoutMs?: number
  /** libfuse debug tracing on stderr. */
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
}

/**
 * The mount source in /proc/self/mountinfo is `edgestar:PID`, so `edgestar umount` can ask
 * the serving process to unmount cleanly and tell a stale mount from a live one.
 */
export const FSNAME_PREFIX = 'edgestar:'

const DEFAULTS = {
  attrTimeoutSec: 3600,
  entryTimeoutSec: 3600,
  kernelCache: true,
  opTimeoutMs: 10 * 60_000,
  unmountTimeoutMs: 5000,
}

/**
 * Mounts `view` read-only at `mountpoint` with fuse-native, after clearing a stale mount a
 * killed edgestar left there. Inode numbers come from the view (`use_ino`), so hardlinks
 * share one. Resolves once the kernel has sent FUSE `init`.
 * @throws EDGESTAR_FS_MOUNT_BUSY when a live server already serves `mountpoint`; when
 *   libfuse refuses the mount, the reason's code from `explainMountFailure`
 *   (EDGESTAR_FS_NO_MOUNTPOINT, EDGESTAR_FS_FUSE_DENIED, …, else EDGESTAR_FS_MOUNT_FAILED).
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

  const fuse = new Fuse(dir, buildFuseOps(view, log), {
    debug: settings.debug ?? false,
    allowOther: settings.allowOther ?? false,
    kernelCache: settings.kernelCache,
    entryTimeout: settings.entryTimeoutSec,
    attrTimeout: settings.attrTimeoutSec,
    // fuse-native has no switch for these; its fsname is passed verbatim inside `-o`,
    // so the extra comma-separated options ride along with it (fuse-native 2.2.6).
    fsname: [
      `${FSNAME_PREFIX}${process.pid}`,
      'ro',
      'use_ino',
      'default_permissions',
      `negative_timeout=${settings.entryTimeoutSec}`,
    ].join(','),
    subtype: 'edgestar',
    timeout: settings.opTimeoutMs,
  })

  const failure = await new Promise<Error | null>((done) => fuse.mount(done))
  if (failure) throw await explainMountFailure(dir, failure)
  log.info('mount ready')

  let unmounting: Promise<void> | undefined
  const unmount = (): Promise<void> => {
    unmounting ??= unmountFuse(fuse, dir, settings.unmountTimeoutMs).finally(() => view.close())
    return unmounting
  }
  return { mountpoint: dir, unmount }
}

async function unmountFuse(fuse: Fuse, dir: string, timeoutMs: number): Promise<void> {
  const log = moduleLogger('fs', { mountpoint: dir })
  let timer: NodeJS.Timeout | undefined

  // NOTES.md: fuse-native's unmount callback sometimes never fires; bound it.
  const finished = await Promise.race([
    new Promise<boolean>((done) => fuse.unmount((err) => done(!err))),
    new Promise<boolean>((done) => {
      timer = setTimeout(() => done(false), timeoutMs)
    }),
  ])
  clearTimeout(timer)

  const left = await abortMount(dir)
  if (!finished || left > 0) log.warn({ aborted: left }, 'unmount forced')
  else log.info('unmounted')
}
