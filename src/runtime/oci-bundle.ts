import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { INIT_PATH_IN_CONTAINER, withInit } from './init-process.js'
import type { BindMount, NetworkMode, ProcessSpec } from './types.js'

/** Everything a runtime needs to start one container over a prepared root filesystem. */
export interface LaunchRequest {
  /** Container id for the runtime: letters, digits, `-`, `_`, `.`. */
  id: string
  /** A directory the runtime may use for its bundle and pid files. */
  containerDir: string
  /** The container's root filesystem (the merged overlay). */
  rootDir: string
  process: ProcessSpec
  network: NetworkMode
  binds: BindMount[]
  hostname?: string
  /** Host path of an init binary to run as pid 1 in front of the process (`--init`). */
  init?: string
}

const CAPABILITIES = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE']

/**
 * The OCI runtime-spec config for a request: runc's own `runc spec` defaults (mounts,
 * masked paths, a small capability set), no terminal, a writable root, the host
 * network namespace for `host`, and the binds appended after the default mounts. With
 * `init`, that binary is bound read-only into the container and runs the process.
 */
export function ociConfig(req: LaunchRequest): Record<string, unknown> {
  const namespaces = ['pid', 'ipc', 'uts', 'mount']
  if (req.network === 'none') namespaces.push('network')

  return {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: {
        uid: req.process.uid,
        gid: req.process.gid,
        additionalGids: req.process.additionalGids,
      },
      args: req.init === undefined ? req.process.args : withInit(req.process.args),
      env: req.process.env,
      cwd: req.process.cwd,
      capabilities: Object.fromEntries(
        ['bounding', 'effective', 'permitted', 'ambient'].map((set) => [set, CAPABILITIES]),
      ),
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: req.rootDir, readonly: false },
    hostname: req.hostname ?? req.id,
    mounts: [
      ...DEFAULT_MOUNTS,
      ...initMounts(req.init),
      ...hostNetworkMounts(req.network),
      ...req.binds.map(bindMount),
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: namespaces.map((type) => ({ type })),
      maskedPaths: MASKED_PATHS,
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  }
}

/** Writes `config.json` into `<containerDir>/bundle` and returns the bundle directory. */
export async function writeBundle(req: LaunchRequest): Promise<string> {
  const bundleDir = path.join(req.containerDir, 'bundle')
  await mkdir(bundleDir, { recursive: true })
  await writeFile(path.join(bundleDir, 'config.json'), JSON.stringify(ociConfig(req), null, 2))
  return bundleDir
}

function bindMount(bind: BindMount): Record<string, unknown> {
  const options = ['rbind', 'rprivate', bind.readOnly ? 'ro' : 'rw']
  return { destination: bind.target, type: 'bind', source: bind.source, options }
}

// After the /dev tmpfs, which holds the mount point (see INIT_PATH_IN_CONTAINER).
function initMounts(init: string | undefined): Record<string, unknown>[] {
  if (init === undefined) return []
  return [bindMount({ source: init, target: INIT_PATH_IN_CONTAINER, readOnly: true })]
}

// NOTE: with the host network the image's own resolv.conf would point at nothing
// useful, so the host's is bound read-only, as Docker does for --network host.
function hostNetworkMounts(network: NetworkMode): Record<string, unknown>[] {
  if (network !== 'host') return []
  return [bindMount({ source: '/etc/resolv.conf', target: '/etc/resolv.conf', readOnly: true })]
}

const DEFAULT_MOUNTS = [
  { destination: '/proc', type: 'proc', source: 'proc' },
  {
    destination: '/dev',
    type: 'tmpfs',
    source: 'tmpfs',
    options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
  },
  {
    destination: '/dev/pts',
    type: 'devpts',
    source: 'devpts',
    options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
  },
  {
    destination: '/dev/shm',
    type: 'tmpfs',
    source: 'shm',
    options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
  },
  {
    destination: '/dev/mqueue',
    type: 'mqueue',
    source: 'mqueue',
    options: ['nosuid', 'noexec', 'nodev'],
  },
  {
    destination: '/sys',
    type: 'sysfs',
    source: 'sysfs',
    options: ['nosuid', 'noexec', 'nodev', 'ro'],
  },
]

const MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/sys/firmware',
  '/proc/scsi',
]
