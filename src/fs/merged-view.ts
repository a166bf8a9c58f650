import { EdgestarError } from '../errors.js'
import type {
  DirEntry,
  ImageView,
  LayerEntry,
  LayerSource,
  LentBytes,
  ViewNode,
  ViewStats,
} from './image-view.js'
import { impliedDir } from './layer-entry.js'

/** OCI layer whiteout markers (image-spec layer.md, "Whiteouts"). */
export const WHITEOUT_PREFIX = '.wh.'
export const OPAQUE_MARKER = '.wh..wh..opq'

const ROOT_INO = 1
const MAX_HARDLINK_HOPS = 8
const DEFAULT_CACHE_NODES = 20_000
const DEFAULT_CACHE_LISTING_ENTRIES = 200_000

/** One layer's entry with the layer it came from (index into the bottom-to-top list). */
interface Placed {
  layer: number
  entry: LayerEntry
}

/** A path resolved in the merged view. */
interface Resolved {
  node: ViewNode
  /** For a regular file: where its bytes live (the hardlink target, when linked). */
  content?: Placed
  /** For a directory: the layers that contribute to its listing, top first. */
  dirLayers?: number[]
}

/** Tuning for `MergedView`'s caches. */
export interface MergedViewOptions {
  /** Resolved paths kept (LRU). */
  cacheNodes?: number
  /** Directory listing entries kept in total (LRU by directory). */
  cacheListingEntries?: number
  /** Called once by `close()`, to release what the layer sources hold. */
  onClose?: () => Promise<void>
}

/**
 * The merged read-only view of an image's layers, top layer winning (OCI image-spec
 * layer.md): `.wh.NAME` hides NAME in lower layers of that directory only; `.wh..wh..opq`
 * hides lower contents of its directory wherever it sits in the layer; markers are never
 * shown. Hardlinks resolve to their target in the same layer and share its inode number.
 * `layers` is ordered bottom to top. Caches are bounded so a 100k-entry TOC stays out of
 * the heap when the sources keep it in SQLite.
 */
export class MergedView implements ImageView {
  readonly #layers: LayerSource[]
  readonly #nodes = new Map<string, Resolved>()
  readonly #listings = new Map<string, DirEntry[]>()
  readonly #maxNodes: number
  readonly #maxListingEntries: number
  #onClose: (() => Promise<void>) | undefined
  #listingEntries = 0

  constructor(layers: LayerSource[], options: MergedViewOptions = {}) {
    this.#layers = layers
    this.#maxNodes = options.cacheNodes ?? DEFAULT_CACHE_NODES
    this.#maxListingEntries = options.cacheListingEntries ?? DEFAULT_CACHE_LISTING_ENTRIES
    this.#onClose = options.onClose
  }

  async lookup(path: string): Promise<ViewNode | undefined> {
    return (await this.#resolve(path))?.node
  }

  async readdir(path: string): Promise<DirEntry[] | undefined> {
    const cached = this.#listings.get(path)
    if (cached) {
      this.#listings.delete(path)
      this.#listings.set(path, cached)
      return cached
    }

    const dir = await this.#resolve(path)
    if (!dir?.dirLayers) return undefined
    const listing = await this.#list(path, dir.dirLayers)
    this.#remember(path, listing)
    return listing
  }

  async read(path: string, offset: number, length: number): Promise<Buffer> {
    const resolved = await this.#resolve(path)
    if (!resolved?.content) {
      throw new EdgestarError('EDGESTAR_FS_NOT_A_FILE', `no regular file at /${path}`)
    }

    const { layer, entry } = resolved.content
    const end = Math.min(entry.sizeBytes, offset + length)
    if (offset >= end) return Buffer.alloc(0)
    return this.#layers[layer].read(entry, offset, end - offset)
  }

  async readSlices(path: string, offset: number, length: number): Promise<LentBytes> {
    const resolved = await this.#resolve(path)
    if (!resolved?.content) {
      throw new EdgestarError('EDGESTAR_FS_NOT_A_FILE', `no regular file at /${path}`)
    }

    const { layer, entry } = resolved.content
    const end = Math.min(entry.sizeBytes, offset + length)
    if (offset >= end) return { parts: [], release: () => {} }
    const source = this.#layers[layer]
    if (source.readSlices) return source.readSlices(entry, offset, end - offset)
    const data = await source.read(entry, offset, end - offset)
    return { parts: [data], release: () => {} }
  }

  sliceIfReady(path: string, offset: number, length: number): LentBytes | undefined {
    const content = this.#nodes.get(path)?.content
    if (!content) return undefined
    const { layer, entry } = content
    const end = Math.min(entry.sizeBytes, offset + length)
    if (offset >= end) return { parts: [], release: () => {} }
    return this.#layers[layer].sliceIfReady?.(entry, offset, end - offset)
  }

  get hasXattrs(): boolean {
    return this.#layers.some((layer) => layer.hasXattrs ?? true)
  }

  async statfs(): Promise<ViewStats> {
    let sizeBytes = 0
    let entryCount = 0
    for (const layer of this.#layers) {
      sizeBytes += layer.contentBytes
      entryCount += layer.entryCount
    }
    return { sizeBytes, entryCount }
  }

  async close(): Promise<void> {
    this.#nodes.clear()
    this.#listings.clear()
    const onClose = this.#onClose
    this.#onClose = undefined
    await onClose?.()
  }

  async #resolve(path: string): Promise<Resolved | undefined> {
    const cached = this.#nodes.get(path)
    if (cached) {
      this.#nodes.delete(path)
      this.#nodes.set(path, cached)
      return cached
    }

    const resolved = path === '' ? await this.#resolveRoot() : await this.#resolveChild(path)
    if (resolved) this.#cacheNode(path, resolved)
    return resolved
  }

  async #resolveRoot(): Promise<Resolved> {
    const dirLayers: number[] = []
    let top: LayerEntry | undefined
    for (let i = this.#layers.length - 1; i >= 0; i--) {
      dirLayers.push(i)
      top ??= await this.#layers[i].entry('')
      if (await this.#layers[i].entry(OPAQUE_MARKER)) break
    }

    const node = toNode(top ?? impliedDir('', 0), ROOT_INO)
    node.ino = ROOT_INO
    node.nlink = await this.#dirLinkCount('', dirLayers)
    return { node, dirLayers }
  }

  async #resolveChild(path: string): Promise<Resolved | undefined> {
    const slash = path.lastIndexOf('/')
    const parentPath = slash < 0 ? '' : path.slice(0, slash)
    const base = path.slice(slash + 1)
    if (base.startsWith(WHITEOUT_PREFIX)) return undefined

    const parent = await this.#resolve(parentPath)
    if (!parent?.dirLayers) return undefined
    const whiteout = joinPath(parentPath, WHITEOUT_PREFIX + base)

    // Walk the parent's layers top-down: the first entry wins; a directory keeps
    // collecting lower directories until a whiteout, an opaque marker or a non-directory.
    let winner: Placed | undefined
    const dirLayers: number[] = []
    for (const i of parent.dirLayers) {
      const layer = this.#layers[i]
      const entry = await layer.entry(path)
      if (entry) {
        if (winner && (entry.type !== 'dir' || winner.entry.type !== 'dir')) break
        winner ??= { layer: i, entry }
        if (entry.type !== 'dir') break
        dirLayers.push(i)
        if (await layer.entry(joinPath(path, OPAQUE_MARKER))) break
      }
      if (await layer.entry(whiteout)) break
    }
    if (!winner) return undefined
    return this.#describe(path, winner, dirLayers)
  }

  async #describe(path: string, winner: Placed, dirLayers: number[]): Promise<Resolved> {
    const { entry } = winner
    if (entry.type === 'dir') {
      const node = toNode(entry, entry.id + ROOT_INO + 1)
      node.nlink = await this.#dirLinkCount(path, dirLayers)
      return { node, dirLayers }
    }

    const target = entry.type === 'hardlink' ? await this.#followHardlink(winner) : winner
    const node = toNode(target.entry, target.entry.id + ROOT_INO + 1)
    return target.entry.type === 'reg' ? { node, content: target } : { node }
  }

  async #followHardlink(link: Placed): Promise<Placed> {
    let entry = link.entry
    for (let hop = 0; hop < MAX_HARDLINK_HOPS && entry.type === 'hardlink'; hop++) {
      const target = await this.#layers[link.layer].entry(entry.linkName)
      if (!target) break
      entry = target
    }
    if (entry.type === 'hardlink') {
      throw new EdgestarError(
        'EDGESTAR_FS_BAD_HARDLINK',
        `hardlink ${link.entry.name} -> ${link.entry.linkName} has no target in its layer`,
      )
    }
    return { layer: link.layer, entry }
  }

  /** A directory's link count: 2 plus its visible subdirectories, like a local disk. */
  async #dirLinkCount(path: string, dirLayers: number[]): Promise<number> {
    const listing = this.#listings.get(path) ?? (await this.#list(path, dirLayers))
    this.#remember(path, listing)
    let count = 2
    for (const child of listing) if (child.node.type === 'dir') count++
    return count
  }

  async #list(path: string, dirLayers: number[]): Promise<DirEntry[]> {
    const visible = new Map<string, DirEntry>()
    const hidden = new Set<string>()
    const prefixLength = path === '' ? 0 : path.length + 1
    const resolvedChildren: [string, Resolved][] = []

    for (const i of dirLayers) {
      const children = await this.#layers[i].children(path)
      const hiddenHere: string[] = []
      for (const child of children) {
        const base = child.name.slice(prefixLength)
        if (base === OPAQUE_MARKER) continue
        if (base.startsWith(WHITEOUT_PREFIX)) {
          hiddenHere.push(base.slice(WHITEOUT_PREFIX.length))
          continue
        }
        if (visible.has(base) || hidden.has(base)) continue
        const resolved = await this.#childNode(i, child)
        visible.set(base, { name: base, node: resolved.node })
        resolvedChildren.push([joinPath(path, base), resolved])
      }
      // A layer's whiteouts hide only what lies below it, never its own entries.
      for (const name of hiddenHere) hidden.add(name)
    }

    // A listing is usually followed by a stat of each entry (ls -l, find): answer those
    // from memory. Directories are left out; their lookup also needs their lower layers.
    if (resolvedChildren.length <= this.#maxNodes / 4) {
      for (const [childPath, resolved] of resolvedChildren) {
        if (!resolved.dirLayers && resolved.node.type !== 'dir')
          this.#cacheNode(childPath, resolved)
      }
    }
    return [...visible.values()].sort((a, b) => compareNames(a.name, b.name))
  }

  /**
   * A listed entry resolved as a lookup would (for directories only the attributes, enough
   * for d_type and d_ino; READDIRPLUS leaves directories to a lookup of their own).
   */
  async #childNode(layer: number, entry: LayerEntry): Promise<Resolved> {
    const target =
      entry.type === 'hardlink' ? await this.#followHardlink({ layer, entry }) : { layer, entry }
    const node = toNode(target.entry, target.entry.id + ROOT_INO + 1)
    return target.entry.type === 'reg' ? { node, content: target } : { node }
  }

  #cacheNode(path: string, resolved: Resolved): void {
    this.#nodes.set(path, resolved)
    if (this.#nodes.size <= this.#maxNodes) return
    const oldest = this.#nodes.keys().next().value
    if (oldest !== undefined) this.#nodes.delete(oldest)
  }

  #remember(path: string, listing: DirEntry[]): void {
    if (this.#listings.has(path)) return
    this.#listings.set(path, listing)
    this.#listingEntries += listing.length
    while (this.#listingEntries > this.#maxListingEntries && this.#listings.size > 1) {
      const [oldest, dropped] = this.#listings.entries().next().value as [string, DirEntry[]]
      this.#listings.delete(oldest)
      this.#listingEntries -= dropped.length
    }
  }
}

function toNode(entry: LayerEntry, ino: number): ViewNode {
  const type = entry.type === 'hardlink' ? 'reg' : entry.type
  return {
    ino,
    type,
    mode: entry.mode & 0o7777,
    uid: entry.uid,
    gid: entry.gid,
    sizeBytes: sizeOf(entry),
    mtimeMs: entry.mtimeMs,
    nlink: type === 'dir' ? 2 : Math.max(1, entry.nlink),
    devMajor: entry.devMajor,
    devMinor: entry.devMinor,
    linkName: entry.type === 'symlink' ? entry.linkName : '',
    xattrs: entry.xattrs,
  }
}

function sizeOf(entry: LayerEntry): number {
  if (entry.type === 'reg') return entry.sizeBytes
  if (entry.type === 'symlink') return Buffer.byteLength(entry.linkName)
  return 0
}

function joinPath(dir: string, base: string): string {
  return dir === '' ? base : `${dir}/${base}`
}

/** Code-unit order: the same for every run and every source, so listings are stable. */
function compareNames(a: string, b: string): number {
  if (a === b) return 0
  return a < b ? -1 : 1
}
