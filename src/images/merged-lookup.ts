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
 * whiteouts and opaque directories applied, symlinks followed, hardlinks resolved.
 * Throws EDGESTAR_IMAGES_NO_SUCH_FILE, EDGESTAR_IMAGES_NOT_A_FILE.
 */
export function lookupFile(store: Store, layers: readonly string[], path: string): MergedFile {
  let wanted = normalizePath(path)
  for (let hop = 0; hop <= MAX_SYMLINK_HOPS; hop++) {
    const found = lookupEntry(store, layers, wanted)
    if (found === undefined)
      throw new EdgestarError(
        'EDGESTAR_IMAGES_NO_SUCH_FILE',
        `no file ${JSON.stringify(path)} in the image`,
      )
    const { layerDigest, entry } = found
    if (entry.type === 'symlink') {
      const target = entry.linkName ?? ''
      const base = entry.parent
      wanted = normalizePath(target.startsWith('/') ? target : `${base}/${target}`)
      continue
    }
    if (entry.type === 'hardlink') {
      const target = store.toc.get(layerDigest, normalizePath(entry.linkName ?? ''))
      if (target === undefined || target.type !== 'reg') break
      return { layerDigest, entry: target }
    }
    if (entry.type !== 'reg')
      throw new EdgestarError(
        'EDGESTAR_IMAGES_NOT_A_FILE',
        `${JSON.stringify(path)} is a ${entry.type}, not a regular file`,
      )
    return found
  }
  throw new EdgestarError(
    'EDGESTAR_IMAGES_NO_SUCH_FILE',
    `cannot resolve ${JSON.stringify(path)} in the image`,
  )
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
