import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { EdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'
import { FSNAME_PREFIX } from './mount-image.js'
import { abortMount, findFuseMounts } from './stale-mount.js'

const execFileAsync = promisify(execFile)
const POLL_MS = 100

/** How `unmountDir` ended. */
export interface UnmountResult {
  mountpoint: string
  /**
   * `signalled`: unmounted cleanly and the serving edgestar told to exit; `aborted`: forced
   * via fusectl (its server was gone or stuck, or `force` was given).
   */
  how: 'signalled' | 'aborted'
  servingPid: number | null
  /**
   * Whether the serving process has exited (true when there was none). It records the
   * chunks it is still writing after the mount is gone, so a state directory is only
   * settled once it has exited.
   */
  servingExited: boolean
}

/** Bounds and choices of `unmountDir`. */
export interface UnmountTimeouts {
  /** Wait for the serving process to unmount before aborting the mount; default 10 s. */
  unmountMs?: number
  /** Then wait for it to exit (finish its chunk writes, close the store); default 15 s. */
  exitMs?: number
  /**
   * Abort a mount that is in use or that the agent serves instead of refusing. Readers of
   * an aborted mount get errors (ENOTCONN) from then on.
   */
  force?: boolean
}

/**
 * Unmounts the edgestar mount at `dir`. The kernel unmount comes first (umount(8)), so a
 * mount in use is refused as umount(8) refuses it; then the serving process (its pid is in
 * the mount source, `edgestar:PID`) gets SIGTERM and is waited for up to `exitMs`. A mount
 * whose server is gone or stuck is aborted through fusectl and detached.
 * @throws EDGESTAR_FS_NOT_MOUNTED when no FUSE mount is at `dir`;
 *   EDGESTAR_FS_MOUNT_IN_USE when a process has a file or its working directory there, and
 *   EDGESTAR_FS_AGENT_MOUNT when the agent serves it (a deployment's image), unless `force`.
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

  const candidate = pidOf(mounts[mounts.length - 1]!.source)
  const server = candidate === null ? undefined : await servingProcess(candidate)
  if (server?.isAgent) {
    if (!timeouts.force) throw agentMountError(mountpoint, server.pid)
    // The agent keeps running: only its mount goes, as asked.
    return abort(mountpoint, server.pid, true)
  }
  const servingPid = server?.pid ?? null

  const unmounted = await kernelUnmount(mountpoint)
  if (unmounted === 'busy' && !timeouts.force) throw inUseError(mountpoint)
  if (unmounted === 'busy' || server === undefined || servingPid === process.pid)
    return abort(mountpoint, servingPid, server === undefined)

  // The server's readers see the connection end; SIGTERM makes the process finish its
  // chunk writes and exit (it would otherwise keep serving a fetch nobody reads).
  process.kill(server.pid, 'SIGTERM')
  if (unmounted === 'failed' && !(await mountGone(mountpoint, timeouts.unmountMs ?? 10_000)))
    return abort(mountpoint, servingPid, false)
  const servingExited = await exited(server.pid, timeouts.exitMs ?? 15_000)
  return { mountpoint, how: 'signalled', servingPid, servingExited }
}

async function abort(
  mountpoint: string,
  servingPid: number | null,
  keepsRunning: boolean,
): Promise<UnmountResult> {
  moduleLogger('fs', { mountpoint }).warn({ servingPid }, 'unmount forced')
  await abortMount(mountpoint)
  const servingExited = keepsRunning || servingPid === null || !(await isRunning(servingPid))
  return { mountpoint, how: 'aborted', servingPid, servingExited }
}

/** umount(8): `busy` when something inside is in use, `failed` for any other refusal. */
async function kernelUnmount(mountpoint: string): Promise<'done' | 'busy' | 'failed'> {
  try {
    await execFileAsync('umount', [mountpoint])
    return 'done'
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? '')
    return /busy/i.test(stderr) ? 'busy' : 'failed'
  }
}

function inUseError(mountpoint: string): EdgestarError {
  return new EdgestarError('EDGESTAR_FS_MOUNT_IN_USE', `${mountpoint} is in use`, {
    hint:
      `a process has a file open or its working directory there (\`fuser -vm ${mountpoint}\` ` +
      'lists them): end them and try again, or pass --force to abort the mount (their ' +
      'reads then fail)',
  })
}

function agentMountError(mountpoint: string, pid: number): EdgestarError {
  return new EdgestarError(
    'EDGESTAR_FS_AGENT_MOUNT',
    `${mountpoint} is a deployment's image, served by the edgestar agent (pid ${pid})`,
    {
      hint:
        'stop or remove the deployment instead (`edgestar stop NAME`, `edgestar rm NAME`), ' +
        'which unmounts it; --force aborts the mount and leaves the agent running, and the ' +
        "deployment's container then fails to read its files",
    },
  )
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

interface ServingProcess {
  pid: number
  /** The agent (`edgestar agent`), which serves every deployment's mount. */
  isAgent: boolean
}

// NOTE: the pid comes from the mount source; a stale mount's pid may have been reused, so
// only a node/edgestar process counts as the server.
async function servingProcess(pid: number): Promise<ServingProcess | undefined> {
  if (!(await isRunning(pid))) return undefined
  try {
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
    if (!args.some((arg) => /node|edgestar/.test(arg))) return undefined
    return { pid, isAgent: args.includes('agent') }
  } catch {
    return undefined
  }
}
