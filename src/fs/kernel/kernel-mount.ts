import { spawn, spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { open, writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { EdgestarError } from '../../errors.js'
import { abortConnection, findFuseMounts } from '../stale-mount.js'

const FUSE_DEVICE = '/dev/fuse'
const FUSECTL_DIR = '/sys/fs/fuse/connections'
// The fd number the FUSE device has inside mount(8); its `fd=` option names it.
const CHILD_DEVICE_FD = 3

export interface DeviceMountOptions {
  /** The mount source, as /proc/self/mountinfo shows it (`edgestar:PID`). */
  source: string
  /** The type is `fuse.SUBTYPE`. */
  subtype: string
  /** Let other users (a container's uid) use the mount; permissions are still checked. */
  allowOther: boolean
}

/** An open FUSE device attached to a mount at `mountpoint`. */
export interface DeviceMount {
  readonly fd: number
  readonly mountpoint: string
  /**
   * Call once the session has ended: the connection no longer needs aborting should the
   * process exit.
   */
  release(): void
}

/**
 * Opens /dev/fuse and mounts it read-only at `dir` with mount(8), which passes the
 * device to the kernel as `fd=3`. This needs root (CAP_SYS_ADMIN), as every edgestar
 * mount does; no setuid helper is involved. The kernel queues its INIT request on the
 * device at once; serve it before touching the mount.
 * @throws EdgestarError EDGESTAR_FS_MOUNT_FAILED with mount(8)'s own reason; an error
 *   opening /dev/fuse is rethrown as is (the caller explains it).
 */
export async function mountDevice(dir: string, options: DeviceMountOptions): Promise<DeviceMount> {
  const mountpoint = resolve(dir)
  const device = await open(FUSE_DEVICE, 'r+')
  try {
    await runMount(mountpoint, device.fd, options)
  } catch (err) {
    await device.close()
    throw err
  }
  const mounts = await findFuseMounts(mountpoint)
  const connectionId = mounts.at(-1)?.connectionId
  // Two mounts made at the same moment both passed the busy check: the later one, on
  // top, backs out instead of hiding the other (its server would go on serving nobody).
  if (mounts.length > 1 && connectionId !== undefined) {
    // Ours is the top mount, just listed last; nothing waits on its unserved INIT.
    await abortConnection(connectionId, mountpoint)
    await device.close()
    throw new EdgestarError('EDGESTAR_FS_MOUNT_BUSY', `${mountpoint} is already mounted`, {
      hint:
        'another mount of it was made at the same moment; run ' +
        `\`edgestar umount ${mountpoint}\` first, or choose another directory`,
    })
  }
  // The handle is given up on purpose: the session reads and writes the raw fd, and
  // closes it once the connection is gone.
  const fd = detachFd(device)
  if (connectionId !== undefined) abortAtExit(connectionId, { mountpoint, source: options.source })
  return { fd, mountpoint, release: () => liveConnections.delete(connectionId ?? -1) }
}

// Connections of this process's mounts that are still served, by fusectl id. Their
// device reads hold libuv pool threads, and Node joins those threads when it exits: a
// process that exits with a mount still up (process.exit, an uncaught exception) would
// hang there for ever, and with it every process touching the mount. Aborting the
// connection wakes the reads (ECONNABORTED), so the exit completes.
const liveConnections = new Map<number, { mountpoint: string; source: string }>()
let isExitHooked = false

function abortAtExit(connectionId: number, mount: { mountpoint: string; source: string }) {
  if (!isExitHooked) process.once('exit', abortLiveConnections)
  isExitHooked = true
  liveConnections.set(connectionId, mount)
}

function abortLiveConnections(): void {
  const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
  for (const [connectionId, { mountpoint, source }] of liveConnections) {
    // The id is a device minor, which the kernel may give to a new mount once ours is
    // unmounted, before the session has seen its end: leave one mounted by someone else.
    // An id mounted nowhere may still be ours (detached with umount -l, files open).
    const mountedBy = mountinfo
      .map((line) => line.split(' '))
      .find((fields) => fields[2] === `0:${connectionId}`)
    if (mountedBy && mountedBy[mountedBy.indexOf('-') + 2] !== source) continue
    abortConnectionSync(connectionId)
    spawnSync('umount', ['-l', mountpoint], { stdio: 'ignore' })
  }
}

// Synchronous, as an exit handler must be.
function abortConnectionSync(connectionId: number): void {
  const abortFile = `${FUSECTL_DIR}/${connectionId}/abort`
  try {
    writeFileSync(abortFile, '1')
    return
  } catch {
    // fusectl is not mounted yet (ENOENT): mount it and try once more.
  }
  spawnSync('mount', ['-t', 'fusectl', 'fusectl', FUSECTL_DIR], { stdio: 'ignore' })
  try {
    writeFileSync(abortFile, '1')
  } catch {
    // Nothing more can be done while exiting; the next mount clears what is left.
  }
}

function detachFd(handle: Awaited<ReturnType<typeof open>>): number {
  const fd = handle.fd
  // A FileHandle closes its fd when garbage-collected; keep it reachable for the
  // process's life instead (one per mount).
  keptHandles.add(handle)
  return fd
}

const keptHandles = new Set<unknown>()

function mountOptions(fd: number, options: DeviceMountOptions): string {
  const uid = process.getuid?.() ?? 0
  const gid = process.getgid?.() ?? 0
  return [
    'ro',
    'nosuid',
    'nodev',
    `fd=${fd}`,
    'rootmode=40000',
    `user_id=${uid}`,
    `group_id=${gid}`,
    'default_permissions',
    ...(options.allowOther ? ['allow_other'] : []),
  ].join(',')
}

async function runMount(mountpoint: string, deviceFd: number, options: DeviceMountOptions) {
  // -i: no /sbin/mount.fuse helper; the options go to the kernel as they are.
  const args = [
    '-i',
    '-t',
    `fuse.${options.subtype}`,
    '-o',
    mountOptions(CHILD_DEVICE_FD, options),
    options.source,
    mountpoint,
  ]
  const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'ignore', 'pipe', deviceFd]
  const child = spawn('mount', args, { stdio })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const outcome = await new Promise<number | Error>((done) => {
    child.on('error', done)
    child.on('close', (code) => done(code ?? 1))
  })
  if (outcome === 0) return

  const reason = outcome instanceof Error ? outcome.message : stderr.trim() || `exit ${outcome}`
  throw new EdgestarError(
    'EDGESTAR_FS_MOUNT_FAILED',
    `mount(8) refused the FUSE mount: ${reason}`,
    {
      hint: 'mounting needs root (CAP_SYS_ADMIN) and the fuse kernel module; see docs/fuse.md',
    },
  )
}

/**
 * Sets the kernel read-ahead of the mount at `mountpoint` (its backing device info in
 * sysfs, `0:MINOR`). The kernel starts every FUSE mount at 128 KiB whatever the INIT
 * reply says; a larger window is what lets sequential reads use 1 MiB requests.
 * @returns false when the mount or its sysfs entry was not found (the default stays).
 */
export async function setReadAhead(mountpoint: string, kib: number): Promise<boolean> {
  const mount = (await findFuseMounts(mountpoint)).at(-1)
  if (!mount) return false
  // A FUSE mount's device is 0:MINOR, and its minor is the fusectl connection id.
  return writeFile(`/sys/class/bdi/0:${mount.connectionId}/read_ahead_kb`, String(kib)).then(
    () => true,
    () => false,
  )
}
