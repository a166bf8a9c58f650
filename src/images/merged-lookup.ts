import { EdgestarError } from '../errors.js'
import type { Store, TocRow } from '../store/index.js'

const WHITEOUT_PREFIX = '.wh.'
const OPAQUE_MARKER = '.wh..wh..opq'
const MAX_SYMLINK_HOPS = 40

/** A regular file found in the merged view: the layer that provides it and its row. */
export interface MergedFile {
  layerDigest: string
  entry: TocRow
}

/** Normalises a path as TOC names are: no leading `/` or `./`, no `.`/`..` escapes. */
export function normalizePath(path: string): string {
  const parts: string[] = []
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..') parts.pop()
    else parts.push(part)
  }
  return parts.join('/')
}

/**
 * Finds `path` in an image's layers the way the mounted view shows it: top layer first,
 * whiteouts and opaque directories applied, symlinks followed in every component (relative
 * and absolute targets, at most 40 hops as in Linux, never above the image root),
 * hardlinks resolved.
 * Throws EDGESTAR_IMAGES_NO_SUCH_FILE (with near names of the directory as a hint),
 * EDGESTAR_IMAGES_NOT_A_FILE, EDGESTAR_IMAGES_SYMLINK_LOOP.
 */
export function lookupFile(store: Store, layers: readonly string[], path: string): MergedFile {
  const found = resolvePath(store, layers, path)
  const { layerDigest, entry } = found
  if (entry.type === 'hardlink') {
    const target = store.toc.get(layerDigest, normalizePath(entry.linkName ?? ''))
    if (target !== undefined && target.type === 'reg') return { layerDigest, entry: target }
    throw noSuchFile(store, layers, path, entry.name)
  }
  if (entry.type !== 'reg')
    throw new EdgestarError(
      'EDGESTAR_IMAGES_NOT_A_FILE',
      `${JSON.stringify(path)} is a ${entry.type === 'dir' ? 'directory' : entry.type}, not a regular file`,
      { hint: 'cat prints regular files; to browse directories, use edgestar mount' },
    )
  return found
}

/**
 * Walks `path` one component at a time, as the kernel's path walk does: a symlink met on
 * the way (or as the last component) is replaced by its target's components, `..` never
 * climbs above the root, and a name below something that is not a directory is missing.
 */
function resolvePath(store: Store, layers: readonly string[], path: string): MergedFile {
  const pending = splitPath(path)
  const resolved: string[] = []
  let hops = 0
  while (pending.length > 0) {
    const part = pending.shift()!
    if (part === '..') {
      resolved.pop()
      continue
    }

    const name = [...resolved, part].join('/')
    const found = lookupEntry(store, layers, name)
    const isLast = pending.length === 0
    if (found === undefined && isLast) throw noSuchFile(store, layers, path, name)
    // A directory some layers imply (children but no entry of its own) is still a directory.
    if (found === undefined) {
      resolved.push(part)
      continue
    }
    if (found.entry.type === 'symlink') {
      hops++
      if (hops > MAX_SYMLINK_HOPS) throw symlinkLoop(path)
      const target = found.entry.linkName ?? ''
      if (target.startsWith('/')) resolved.length = 0
      pending.unshift(...splitPath(target))
      continue
    }

    if (isLast) return found
    if (found.entry.type !== 'dir')
      throw new EdgestarError(
        'EDGESTAR_IMAGES_NO_SUCH_FILE',
        `no file ${JSON.stringify(path)} in the image ` +
          `(${JSON.stringify(`/${name}`)} is a ${found.entry.type}, not a directory)`,
        { hint: 'name a file inside a directory; to browse the image, use edgestar mount' },
      )
    resolved.push(part)
  }

  // The path named the root itself (or resolved to it).
  throw new EdgestarError(
    'EDGESTAR_IMAGES_NOT_A_FILE',
    `${JSON.stringify(path)} is the root directory, not a regular file`,
    { hint: 'name a file inside the image, e.g. etc/os-release' },
  )
}

function splitPath(path: string): string[] {
  return path.split('/').filter((part) => part !== '' && part !== '.')
}

function symlinkLoop(path: string): EdgestarError {
  return new EdgestarError(
    'EDGESTAR_IMAGES_SYMLINK_LOOP',
    `too many levels of symbolic links resolving ${JSON.stringify(path)} (more than ${MAX_SYMLINK_HOPS})`,
    { hint: 'the image has a symlink loop on this path; name the file by its real path' },
  )
}

function noSuchFile(
  store: Store,
  layers: readonly string[],
  path: string,
  missing: string,
): EdgestarError {
  const slash = missing.lastIndexOf('/')
  const dir = slash < 0 ? '' : missing.slice(0, slash)
  const near = nearNames(store, layers, dir, missing.slice(slash + 1))
  const shown = dir === '' ? '/' : `/${dir}/`
  const hint =
    near.length > 0
      ? `${shown} has ${near.map((n) => JSON.stringify(n)).join(', ')}; ` +
        'to browse the image, use edgestar mount'
      : `nothing near ${JSON.stringify(missing.slice(slash + 1))} in ${shown}; ` +
        'to browse the image, use edgestar mount'
  // Name the missing component when symlinks or a shorter prefix make it differ from PATH.
  const where =
    missing === normalizePath(path) ? '' : ` (${JSON.stringify(`/${missing}`)} does not exist)`
  return new EdgestarError(
    'EDGESTAR_IMAGES_NO_SUCH_FILE',
    `no file ${JSON.stringify(path)} in the image${where}`,
    { hint },
  )
}

const MAX_NEAR_NAMES = 5
const MAX_NAMES_SCANNED = 20_000

/** Names in `dir` (any layer, whiteouts left out) that look like `base`: closest first. */
function nearNames(store: Store, layers: readonly string[], dir: string, base: string): string[] {
  const scored = new Map<string, number>()
  let scanned = 0
  for (const layerDigest of layers) {
    for (const row of store.toc.children(layerDigest, dir)) {
      if (++scanned > MAX_NAMES_SCANNED) break
      const name = row.name.slice(row.name.lastIndexOf('/') + 1)
      if (name.startsWith(WHITEOUT_PREFIX)) continue
      const score = nameDistance(base, name)
      if (score <= Math.max(2, Math.floor(base.length / 3))) scored.set(name, score)
    }
  }
  return [...scored.entries()]
    .sort((a, b) => a[1] - b[1] || a[0].localeCompare(b[0]))
    .slice(0, MAX_NEAR_NAMES)
    .map(([name]) => name)
}

/** Edit distance, with a shared prefix of 3+ characters counting as near. */
function nameDistance(a: string, b: string): number {
  if (a.length >= 3 && b.startsWith(a)) return 1
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost)
    }
    previous = current
  }
  return previous[b.length]!
}

function lookupEntry(
  store: Store,
  layers: readonly string[],
  name: string,
): MergedFile | undefined {
  const ancestors = ancestorsOf(name)
  for (let i = layers.length - 1; i >= 0; i--) {
    const layerDigest = layers[i]!
    const entry = store.toc.get(layerDigest, name)
    if (entry !== undefined) return { layerDigest, entry }

    // A whiteout of the name or of a directory above it hides everything below this layer.
    const hidden = [name, ...ancestors].some(
      (p) => store.toc.get(layerDigest, whiteoutOf(p)) !== undefined,
    )
    if (hidden) return undefined
    const opaque = ancestors.some(
      (dir) => store.toc.get(layerDigest, join(dir, OPAQUE_MARKER)) !== undefined,
    )
    if (opaque) return undefined
  }
  return undefined
}

function ancestorsOf(name: string): string[] {
  const out: string[] = []
  let current = name
  while (current.includes('/')) {
    current = current.slice(0, current.lastIndexOf('/'))
    out.push(current)
  }
  if (name !== '') out.push('')
  return out
}

function whiteoutOf(name: string): string {
  const slash = name.lastIndexOf('/')
  return slash < 0
    ? `${WHITEOUT_PREFIX}${name}`
    : `${name.slice(0, slash)}/${WHITEOUT_PREFIX}${name.slice(slash + 1)}`
}

function join(dir: string, base: string): string {
  return dir === '' ? base : `${dir}/${base}`
}
