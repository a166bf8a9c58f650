import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { EdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import { FSNAME_PREFIX } from './mount-image.js'
import { abortMount, findFuseMounts } from './stale-mount.js'

const POLL_MS = 100

/** How `unmountDir` ended. */
export interface UnmountResult {
  mountpoint: string
  /** `signalled`: the serving edgestar unmounted cleanly; `aborted`: forced via fusectl. */
  how: 'signalled' | 'aborted'
  servingPid: number | null
  /**
   * Whether the serving process has exited (true when there was none). It records the
   * chunks it is still writing after the mount is gone, so a state directory is only
   * settled once it has exited.
   */
  servingExited: boolean
}

/** Bounds of `unmountDir`, in milliseconds. */
export interface UnmountTimeouts {
  /** Wait for the serving process to unmount before aborting the mount; default 10 s. */
  unmountMs?: number
  /** Then wait for it to exit (finish its chunk writes, close the store); default 15 s. */
  exitMs?: number
}

/**
 * Unmounts the edgestar mount at `dir`: asks the serving process (its pid is in the mount
 * source, `edgestar:PID`) to unmount with SIGTERM, waits up to `unmountMs` for the mount to
 * go and then up to `exitMs` for the process to exit; a mount whose server is gone or does
 * not finish in time is aborted through fusectl and detached.
 * @throws EDGESTAR_FS_NOT_MOUNTED when no FUSE mount is at `dir`.
 */
export async function unmountDir(
  dir: string,
  timeouts: UnmountTimeouts = {},
): Promise<UnmountResult> {
  const mountpoint = resolve(dir)
  const mounts = await findFuseMounts(mountpoint)
  if (mounts.length === 0) {
    throw new EdgestarError('EDGESTAR_FS_NOT_MOUNTED', `nothing is mounted at ${mountpoint}`, {
      hint: 'check the directory with `findmnt`',
    })
  }

  const servingPid = pidOf(mounts[mounts.length - 1].source)
  const isSignalled =
    servingPid !== null && servingPid !== process.pid && (await signal(servingPid))
  if (isSignalled && (await mountGone(mountpoint, timeouts.unmountMs ?? 10_000))) {
    const servingExited = await exited(servingPid, timeouts.exitMs ?? 15_000)
    return { mountpoint, how: 'signalled', servingPid, servingExited }
  }

  moduleLogger('fs', { mountpoint }).warn({ servingPid }, 'unmount forced')
  await abortMount(mountpoint)
  const servingExited = !isSignalled || !(await isRunning(servingPid))
  return { mountpoint, how: 'aborted', servingPid, servingExited }
}

function pidOf(source: string): number | null {
  const pid = source.startsWith(FSNAME_PREFIX) ? Number(source.slice(FSNAME_PREFIX.length)) : NaN
  return Number.isInteger(pid) && pid > 0 ? pid : null
}

async function mountGone(mountpoint: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if ((await findFuseMounts(mountpoint)).length === 0) return true
    await sleep(POLL_MS)
  }
  return false
}

async function exited(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!(await isRunning(pid))) return true
    await sleep(POLL_MS)
  }
  return !(await isRunning(pid))
}

// A zombie counts as exited: its parent (the `mount --detach` launcher) may not reap it.
async function isRunning(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state !== 'Z' && state !== 'X'
  } catch {
    return false
  }
}

// NOTE: the pid comes from the mount source; a stale mount's pid may have been reused, so
// only a node/edgestar process is signalled.
async function signal(pid: number): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8')
    if (!/node|edgestar/.test(cmdline)) return false
    process.kill(pid, 'SIGTERM')
    return true
  } catch {
    return false
  }
}
