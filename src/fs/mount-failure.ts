import { constants } from 'node:fs'
import { access, readdir, stat } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { EdgestarError } from '../errors.js'

const FUSE_DEVICE = '/dev/fuse'

/**
 * Why a FUSE mount at `dir` cannot work, checked before mounting: /dev/fuse missing or
 * not openable by this user, `dir` missing, not a directory or not empty (the kernel
 * would mount over a non-empty directory and hide its contents). Call it only once a
 * stale mount at `dir` has been cleared (a stat of a hung mount hangs).
 * @returns EDGESTAR_FS_NO_FUSE, EDGESTAR_FS_FUSE_DENIED, EDGESTAR_FS_NO_MOUNTPOINT,
 *   EDGESTAR_FS_MOUNTPOINT_NOT_DIR, EDGESTAR_FS_MOUNTPOINT_NOT_EMPTY, or undefined when
 *   none of them applies.
 */
export async function findMountProblem(
  dir: string,
  cause?: unknown,
): Promise<EdgestarError | undefined> {
  const device = await errnoOf(access(FUSE_DEVICE, constants.R_OK | constants.W_OK))
  if (device === 'ENOENT') {
    return new EdgestarError('EDGESTAR_FS_NO_FUSE', `${FUSE_DEVICE} does not exist`, {
      hint: 'load the FUSE kernel module (`modprobe fuse`) and install the fuse package',
      cause,
    })
  }
  if (device === 'EACCES' || device === 'EPERM') {
    return new EdgestarError(
      'EDGESTAR_FS_FUSE_DENIED',
      `cannot mount at ${dir}: this user (uid ${process.getuid?.()}) may not open ${FUSE_DEVICE}`,
      {
        hint: 'run edgestar as root (sudo edgestar mount ...): its mounts need CAP_SYS_ADMIN',
        cause,
      },
    )
  }

  const info = await stat(dir).catch((err: NodeJS.ErrnoException) => err)
  if (info instanceof Error) return mountPointError(dir, info, cause)
  if (!info.isDirectory()) {
    return new EdgestarError('EDGESTAR_FS_MOUNTPOINT_NOT_DIR', `${dir} is not a directory`, {
      hint: 'give an empty directory as the mount point',
      cause,
    })
  }
  const names = await readdir(dir).catch(() => [])
  if (names.length > 0) {
    return new EdgestarError(
      'EDGESTAR_FS_MOUNTPOINT_NOT_EMPTY',
      `mount point ${dir} is not empty (${names.length} entries)`,
      { hint: 'mount on an empty directory; its contents would be hidden', cause },
    )
  }
  return undefined
}

/**
 * Throws EDGESTAR_FS_NO_MOUNTPOINT when `dir` does not exist, before anything is started
 * for a mount. Its parent is listed rather than `dir` stat'ed: a stat of a hung mount at
 * `dir` would hang.
 */
export async function checkMountpointExists(dir: string): Promise<void> {
  const names = await readdir(dirname(dir)).catch((err: NodeJS.ErrnoException) =>
    err.code === 'ENOENT' ? ([] as string[]) : undefined,
  )
  if (names === undefined || names.includes(basename(dir))) return
  throw noMountpointError(dir)
}

function noMountpointError(dir: string, cause?: unknown): EdgestarError {
  return new EdgestarError('EDGESTAR_FS_NO_MOUNTPOINT', `mount point ${dir} does not exist`, {
    hint: `create it first: mkdir -p ${dir}`,
    cause,
  })
}

function mountPointError(dir: string, err: NodeJS.ErrnoException, cause: unknown): EdgestarError {
  if (err.code === 'ENOENT') return noMountpointError(dir, cause)
  return new EdgestarError(
    'EDGESTAR_FS_MOUNT_FAILED',
    `cannot use ${dir} as mount point (${err.code})`,
    { hint: 'give an empty directory this user may read', cause },
  )
}

async function errnoOf(check: Promise<unknown>): Promise<string | undefined> {
  try {
    await check
    return undefined
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'EIO'
  }
}
