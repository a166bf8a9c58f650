import { lstat, readlink } from 'node:fs/promises'
import path from 'node:path'

const MAX_SYMLINK_HOPS = 40

/**
 * Resolves `inner` (an absolute path as the container sees it) to a host path under
 * `root`, following symlinks the way the kernel would after chroot: absolute targets
 * restart at `root`, and `..` never climbs above it. Returns undefined when a component
 * is missing. Only asynchronous calls, because `root` may be a FUSE view served by this
 * very process.
 */
export async function resolveInRoot(root: string, inner: string): Promise<string | undefined> {
  const pending = inner.split('/').filter((part) => part !== '' && part !== '.')
  const resolved: string[] = []
  let hops = 0

  while (pending.length > 0) {
    const part = pending.shift() as string
    if (part === '..') {
      resolved.pop()
      continue
    }

    const hostPath = path.join(root, ...resolved, part)
    const stat = await lstat(hostPath).catch(() => undefined)
    if (stat === undefined) return undefined
    if (!stat.isSymbolicLink()) {
      resolved.push(part)
      continue
    }

    hops += 1
    if (hops > MAX_SYMLINK_HOPS) return undefined
    const target = await readlink(hostPath)
    if (target.startsWith('/')) resolved.length = 0
    pending.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'))
  }
  return path.join(root, ...resolved)
}
