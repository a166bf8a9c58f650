import { mkdir, readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import { EdgestarError } from '../errors.js'
import { run } from './exec.js'

/** Where a container's writable overlay lives: upper, work and the merged root. */
export interface OverlayPaths {
  upperDir: string
  workDir: string
  mergedDir: string
}

/** The overlay directories under a container directory. */
export function overlayPaths(containerDir: string): OverlayPaths {
  return {
    upperDir: path.join(containerDir, 'upper'),
    workDir: path.join(containerDir, 'work'),
    mergedDir: path.join(containerDir, 'rootfs'),
  }
}

/**
 * Mounts kernel overlayfs at `paths.mergedDir` with `lowerDirs` (top first; a FUSE
 * view or plain directories) read-only below an upper/work pair on disk. A mount
 * already there (left by a killed agent) is detached first. Throws
 * EDGESTAR_RUNTIME_OVERLAY_FAILED with mount(8)'s message.
 */
export async function mountOverlay(lowerDirs: string[], paths: OverlayPaths): Promise<void> {
  if (lowerDirs.length === 0) throw new Error('mountOverlay needs at least one lower dir')
  await unmountOverlay(paths.mergedDir)
  for (const dir of [paths.upperDir, paths.workDir, paths.mergedDir])
    await mkdir(dir, { recursive: true })

  // NOTE: overlayfs splits lowerdir on ':' and treats ',' as an option separator, so
  // such characters are escaped (our own state paths normally contain neither).
  const escapeDir = (dir: string): string => dir.replace(/([:,\\])/g, '\\$1')
  const options = [
    `lowerdir=${lowerDirs.map(escapeDir).join(':')}`,
    `upperdir=${escapeDir(paths.upperDir)}`,
    `workdir=${escapeDir(paths.workDir)}`,
  ].join(',')
  const result = await run('mount', ['-t', 'overlay', 'overlay', '-o', options, paths.mergedDir])
  if (result.code !== 0) {
    throw new EdgestarError(
      'EDGESTAR_RUNTIME_OVERLAY_FAILED',
      `could not mount overlayfs at ${paths.mergedDir}: ${result.stderr.trim()}`,
      { hint: 'the agent must run as root on a kernel with overlayfs; check dmesg for details' },
    )
  }
}

/**
 * Detaches every mount at `mergedDir` and below (lazily, so a busy or dead mount does
 * not block). Missing or unmounted directories are fine.
 */
export async function unmountOverlay(mergedDir: string): Promise<void> {
  const targets = await mountsUnder(mergedDir)
  for (const target of targets.sort((a, b) => b.length - a.length))
    await run('umount', ['-l', target])
}

/**
 * Removes a container's upper and work directories (after unmounting), which frees
 * what the container wrote.
 */
export async function removeOverlay(paths: OverlayPaths): Promise<void> {
  await unmountOverlay(paths.mergedDir)
  for (const dir of [paths.upperDir, paths.workDir, paths.mergedDir])
    await rm(dir, { recursive: true, force: true })
}

/** Mount points at or below `dir`, read from /proc/self/mountinfo (a stat could hang). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8')
  const prefix = path.resolve(dir)
  const found: string[] = []
  for (const line of info.split('\n')) {
    const field = line.split(' ')[4]
    if (field === undefined) continue
    const target = field.replace(/\\([0-7]{3})/g, (_, oct: string) =>
      String.fromCharCode(Number.parseInt(oct, 8)),
    )
    if (target === prefix || target.startsWith(`${prefix}/`)) found.push(target)
  }
  return found
}
