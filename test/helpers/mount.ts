import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { FetchScheduler } from '../../src/fetch/index.js'
import {
  abortMount,
  FSNAME_PREFIX,
  type ImageView,
  type Mounted,
  type MountOptions,
  mountImage,
  openStoreView,
} from '../../src/fs/index.js'
import { ImageService } from '../../src/images/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import { type ImageRow, Store } from '../../src/store/index.js'

const execFileAsync = promisify(execFile)

/** One entry of a tree as a checker process saw it through the kernel. */
export interface ScannedEntry {
  path: string
  type: 'dir' | 'reg' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket'
  mode: number
  uid: number
  gid: number
  size: number
  nlink: number
  ino: number
  mtimeSec: number
  devMajor: number
  devMinor: number
  linkName?: string
  /** xattr name → base64 value. */
  xattrs: Record<string, string>
  sha256?: string
}

const TEST_MOUNT_PREFIX = 'edgestar-mnt-'

/**
 * Aborts and removes test mounts (`$TMPDIR/edgestar-mnt-*`) whose serving process is gone:
 * a test process killed mid-run cannot clean up after itself.
 */
export async function clearDeadTestMounts(): Promise<void> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8')
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ')
    const mountpoint = fields[4] ?? ''
    const source = fields[fields.indexOf('-') + 2] ?? ''
    if (!mountpoint.startsWith(join(tmpdir(), TEST_MOUNT_PREFIX))) continue
    if (!source.startsWith(FSNAME_PREFIX)) continue
    const pid = Number(source.slice(FSNAME_PREFIX.length))
    if (existsSync(`/proc/${pid}`)) continue
    await abortMount(mountpoint).catch(() => {})
    await rm(mountpoint, { recursive: true, force: true }).catch(() => {})
  }
}

/** A test mount in a fresh temporary directory. */
export interface TestMount {
  dir: string
  mounted: Mounted
  /** Unmounts (aborting if need be) and removes the directory; never throws. */
  cleanup(): Promise<void>
}

/** Mounts `view` in a new temporary directory. Pair with `cleanup()` in `after`/`finally`. */
export async function mountForTest(
  view: ImageView,
  options: MountOptions = {},
): Promise<TestMount> {
  const dir = await mkdtemp(join(tmpdir(), 'edgestar-mnt-'))
  let mounted: Mounted
  try {
    mounted = await mountImage(view, dir, { unmountTimeoutMs: 3000, ...options })
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }

  const cleanup = async (): Promise<void> => {
    await mounted.unmount().catch(() => {})
    await abortMount(dir).catch(() => {})
    await rm(dir, { recursive: true, force: true }).catch(() => {})
  }
  return { dir, mounted, cleanup }
}

// Walks a tree with lstat, never following links, and prints one JSON document. Python
// because Node has no xattr API; it runs in a child so the mount's server stays free.
const SCANNER = `
import base64, hashlib, json, os, stat, sys
root = sys.argv[1]
with_content = sys.argv[2] == '1'
out = []
def kind(m):
    for test, name in ((stat.S_ISDIR, 'dir'), (stat.S_ISREG, 'reg'), (stat.S_ISLNK, 'symlink'),
                       (stat.S_ISCHR, 'char'), (stat.S_ISBLK, 'block'), (stat.S_ISFIFO, 'fifo')):
        if test(m): return name
    return 'socket'
def visit(rel):
    full = os.path.join(root, rel) if rel else root
    st = os.lstat(full)
    e = {'path': rel, 'type': kind(st.st_mode), 'mode': stat.S_IMODE(st.st_mode), 'uid': st.st_uid,
         'gid': st.st_gid, 'size': st.st_size, 'nlink': st.st_nlink, 'ino': st.st_ino,
         'mtimeSec': int(st.st_mtime), 'devMajor': os.major(st.st_rdev), 'devMinor': os.minor(st.st_rdev),
         'xattrs': {}}
    try:
        for name in sorted(os.listxattr(full, follow_symlinks=False)):
            e['xattrs'][name] = base64.b64encode(os.getxattr(full, name, follow_symlinks=False)).decode()
    except OSError:
        pass
    if e['type'] == 'symlink':
        e['linkName'] = os.readlink(full)
    if e['type'] == 'reg' and with_content:
        h = hashlib.sha256()
        with open(full, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                h.update(block)
        e['sha256'] = h.hexdigest()
    out.append(e)
    if e['type'] == 'dir':
        for name in sorted(os.listdir(full)):
            visit(os.path.join(rel, name) if rel else name)
visit('')
json.dump(out, sys.stdout)
`

/**
 * Every entry under `dir` (the root itself has path ''), with file sha256s unless
 * `withContent` is false, as seen by a checker in a CHILD process.
 */
export async function scanTree(dir: string, withContent = true): Promise<ScannedEntry[]> {
  const { stdout } = await execFileAsync('python3', ['-c', SCANNER, dir, withContent ? '1' : '0'], {
    maxBuffer: 512 * 1024 * 1024,
  })
  return JSON.parse(stdout) as ScannedEntry[]
}

/** Runs a command in a child process and returns its stdout, stderr and exit code. */
export async function runChild(
  file: string,
  args: string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      file,
      args,
      { timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 << 20, env: options.env },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0
        done({ code, stdout: String(stdout), stderr: String(stderr) })
      },
    )
  })
}

/** One process's worth of edgestar parts serving an image, as `edgestar mount` wires them. */
export interface ImageMount {
  store: Store
  registry: RegistryClient
  scheduler: FetchScheduler
  images: ImageService
  image: ImageRow
  mount: TestMount
  /** Stops background work, unmounts, closes everything (the state dir stays). */
  close(): Promise<void>
}

/** Options of `mountImageFromRegistry`. */
export interface ImageMountOptions {
  /** Background cap in bytes per second; 0 = none (default). */
  bandwidthBytesPerSec?: number
  /** Background fetch on (default) or off. */
  background?: boolean
  offlineWaitMs?: number
}

/**
 * Records image `ref` in a store at `stateDir` (from the registry, or as already recorded)
 * and mounts its store-backed view in a temporary directory. Background fetch is only
 * allowed, not started: call `images.pull(image, { priority: 'background' })` for it.
 */
export async function mountImageFromRegistry(
  stateDir: string,
  ref: string,
  options: ImageMountOptions = {},
): Promise<ImageMount> {
  const store = Store.open(stateDir)
  const registry = new RegistryClient({
    dockerConfigPath: null,
    retry: { maxAttempts: 2, baseDelayMs: 50 },
  })
  const scheduler = new FetchScheduler({
    store,
    registry,
    offlineWaitMs: options.offlineWaitMs ?? 30_000,
    probeIntervalMs: 200,
    backgroundRateBytesPerSec: options.bandwidthBytesPerSec ?? 0,
  })
  scheduler.setBackgroundEnabled(options.background ?? true)
  const images = new ImageService({ store, registry, scheduler })
  const image = await images.open(ref)
  const view = await openStoreView({
    dbPath: store.dbPath,
    layerDigests: image.layers,
    read: images.readLayerFile,
  })
  const mount = await mountForTest(view)
  return {
    store,
    registry,
    scheduler,
    images,
    image,
    mount,
    async close() {
      // Let batches in flight finish before the store closes under them.
      scheduler.setBackgroundEnabled(false)
      for (let i = 0; i < 100 && scheduler.stats().running > 0; i++) await sleep(100)
      await mount.cleanup()
      scheduler.close()
      await registry.close()
      store.close()
    },
  }
}
