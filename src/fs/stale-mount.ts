import { execFile } from 'node:child_process'
import { readFile, readlink, realpath, statfs, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { EdgestarError } from '../errors.js'
import { moduleLogger } from '../log.js'

const execFileAsync = promisify(execFile)

const MOUNTINFO = '/proc/self/mountinfo'
const FUSECTL_DIR = '/sys/fs/fuse/connections'
const LIVENESS_TIMEOUT_MS = 2000
const ENOTCONN = 'ENOTCONN'
/** As many symlinks as the kernel follows in one path (MAXSYMLINKS). */
const MAX_SYMLINK_HOPS = 40

/** One FUSE mount as /proc/self/mountinfo lists it. */
export interface FuseMountInfo {
  mountpoint: string
  fsType: string
  source: string
  /** The fusectl connection id (the mount's device minor number). */
  connectionId: number
}

/**
 * FUSE mounts at `dir` (never stat'ed: a stat of a hung mount hangs), read from
 * /proc/self/mountinfo as NOTES.md advises. `dir` may go through symlinks: mountinfo
 * names the mount by the path they lead to.
 */
export async function findFuseMounts(dir: string): Promise<FuseMountInfo[]> {
  const target = await canonicalMountpoint(dir)
  const text = await readFile(MOUNTINFO, 'utf8')
  const found: FuseMountInfo[] = []
  for (const line of text.split('\n')) {
    const info = parseMountinfoLine(line)
    if (info && info.mountpoint === target && info.fsType.startsWith('fuse')) found.push(info)
  }
  return found
}

/**
 * `dir` as mountinfo names a mount on it: absolute, every symlink resolved. The parent
 * goes through realpath; the last component is only ever read with readlink, which
 * answers EINVAL for a directory or a mount point without asking its file system (so a
 * hung mount does not hang this). Parts that do not exist are kept as given.
 */
async function canonicalMountpoint(dir: string): Promise<string> {
  let path = resolve(dir)
  for (let hop = 0; hop < MAX_SYMLINK_HOPS; hop++) {
    const parent = await realpath(dirname(path)).catch(() => dirname(path))
    path = join(parent, basename(path))
    const target = await readlink(path).catch(() => undefined)
    if (target === undefined) return path
    path = resolve(parent, target)
  }
  return path
}

/**
 * Aborts the FUSE connection behind `dir` (fusectl `abort`, so nothing waits on a dead or
 * hung server any more) and detaches it with `umount -l`. Mounts fusectl first when
 * needed. Returns how many mounts were removed.
 */
export async function abortMount(dir: string): Promise<number> {
  const mounts = await findFuseMounts(dir)
  for (const mount of mounts.reverse()) await abortConnection(mount.connectionId, mount.mountpoint)
  return mounts.length
}

/**
 * Aborts FUSE connection `connectionId` through fusectl (mounted first when needed) and
 * detaches the top mount at `mountpoint` with `umount -l`: the caller knows it is that
 * connection's. Failures are ignored; the next mount clears what is left.
 */
export async function abortConnection(connectionId: number, mountpoint: string): Promise<void> {
  await ensureFusectl()
  await writeFile(`${FUSECTL_DIR}/${connectionId}/abort`, '1').catch(() => {})
  await execFileAsync('umount', ['-l', mountpoint]).catch(() => {})
}

/**
 * Makes `dir` mountable again after a killed edgestar left its FUSE mount behind: a
 * mount whose server is gone (ENOTCONN) or does not answer within 2 s is aborted and
 * detached. A mount whose server answers is left alone.
 * @returns true when a stale mount was cleared.
 * @throws EDGESTAR_FS_MOUNT_BUSY when a live FUSE server already serves `dir`.
 */
export async function clearStaleMount(dir: string): Promise<boolean> {
  const mounts = await findFuseMounts(dir)
  if (mounts.length === 0) return false

  if (await answers(dir)) {
    throw new EdgestarError('EDGESTAR_FS_MOUNT_BUSY', `${resolve(dir)} is already mounted`, {
      hint: `run \`edgestar umount ${dir}\` first, or choose another directory`,
    })
  }

  moduleLogger('fs', { mountpoint: resolve(dir) }).warn(
    { mounts: mounts.length },
    'stale mount cleared',
  )
  await abortMount(dir)
  return true
}

async function answers(dir: string): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<boolean>((done) => {
    timer = setTimeout(() => done(false), LIVENESS_TIMEOUT_MS)
  })
  // statfs, not stat: the kernel answers a stat of the root from its attribute cache
  // (edgestar keeps attributes an hour) even once the server is dead, while STATFS is
  // never cached and fails at once with ENOTCONN. A probe of a hung mount stays pending
  // in the thread pool until the abort releases it.
  const probe = statfs(dir).then(
    () => true,
    (err: NodeJS.ErrnoException) => err.code !== ENOTCONN,
  )
  try {
    return await Promise.race([probe, timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function ensureFusectl(): Promise<void> {
  const text = await readFile(MOUNTINFO, 'utf8')
  if (text.split('\n').some((line) => parseMountinfoLine(line)?.fsType === 'fusectl')) return
  await execFileAsync('mount', ['-t', 'fusectl', 'fusectl', FUSECTL_DIR]).catch(() => {})
}

/** Parses one mountinfo line (proc(5)); octal escapes such as `\040` are decoded. */
function parseMountinfoLine(line: string): FuseMountInfo | undefined {
  const fields = line.split(' ')
  const separator = fields.indexOf('-')
  if (fields.length < 10 || separator < 6) return undefined

  const minor = Number(fields[2].split(':')[1])
  return {
    mountpoint: unescapeOctal(fields[4]),
    fsType: fields[separator + 1],
    source: unescapeOctal(fields[separator + 2]),
    connectionId: minor,
  }
}

function unescapeOctal(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, code: string) => String.fromCharCode(parseInt(code, 8)))
}
