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
}

/**
 * Unmounts the edgestar mount at `dir`: asks the serving process (its pid is in the mount
 * source, `edgestar:PID`) to unmount with SIGTERM and waits up to `timeoutMs`; a mount
 * whose server is gone or does not finish in time is aborted through fusectl and detached.
 * @throws EDGESTAR_FS_NOT_MOUNTED when no FUSE mount is at `dir`.
 */
export async function unmountDir(dir: string, timeoutMs = 10_000): Promise<UnmountResult> {
  const mountpoint = resolve(dir)
  const mounts = await findFuseMounts(mountpoint)
  if (mounts.length === 0) {
    throw new EdgestarError('EDGESTAR_FS_NOT_MOUNTED', `nothing is mounted at ${mountpoint}`, {
      hint: 'check the directory with `findmnt`',
    })
  }

  const source = mounts[mounts.length - 1].source
  const pid = source.startsWith(FSNAME_PREFIX) ? Number(source.slice(FSNAME_PREFIX.length)) : NaN
  const servingPid = Number.isInteger(pid) && pid > 0 ? pid : null
  if (servingPid !== null && servingPid !== process.pid && (await signal(servingPid))) {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if ((await findFuseMounts(mountpoint)).length === 0) {
        return { mountpoint, how: 'signalled', servingPid }
      }
      await sleep(POLL_MS)
    }
  }

  moduleLogger('fs', { mountpoint }).warn({ servingPid }, 'unmount forced')
  await abortMount(mountpoint)
  return { mountpoint, how: 'aborted', servingPid }
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
