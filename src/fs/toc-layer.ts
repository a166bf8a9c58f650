import { isFormatMetaEntry, type TocEntry } from '../estargz/index.js'
import type { LayerEntry, LayerSource, NodeType } from './image-view.js'
import { decodeXattrs, impliedDir, modtimeMs, parentOf } from './layer-entry.js'

/** Reads `length` bytes of file `name` of one layer from `offset` (clipped at its end). */
export type ReadFileFn = (name: string, offset: number, length: number) => Promise<Buffer>

/** The TOC entry fields a `TocLayer` needs (H1's `TocEntry` fits). */
export type TocLikeEntry = Pick<
  TocEntry,
  'name' | 'type' | 'size' | 'mode' | 'uid' | 'gid' | 'devMajor' | 'devMinor'
> &
  Partial<Pick<TocEntry, 'modtime' | 'linkName' | 'xattrs'>>

/**
 * A `LayerSource` over one layer's TOC entries held in memory: for local blobs, tests
 * and small layers. (The store-backed source keeps entries in SQLite instead.)
 * Entry ids run from `idBase`; give each layer of an image a disjoint range.
 */
export class TocLayer implements LayerSource {
  readonly contentBytes: number
  readonly entryCount: number
  readonly hasXattrs: boolean
  readonly #byName = new Map<string, LayerEntry>()
  readonly #children = new Map<string, LayerEntry[]>()
  readonly #readFile: ReadFileFn
  #nextId: number

  constructor(entries: Iterable<TocLikeEntry>, readFile: ReadFileFn, idBase = 0) {
    this.#readFile = readFile
    this.#nextId = idBase
    let contentBytes = 0

    // Index every entry first: a parent directory may come after its children in the TOC.
    for (const toc of entries) {
      if (toc.type === 'chunk' || isFormatMetaEntry(toc.name)) continue
      if (this.#byName.has(toc.name)) continue
      const entry = toLayerEntry(toc, this.#nextId++)
      this.#byName.set(entry.name, entry)
      if (entry.type === 'reg') contentBytes += entry.sizeBytes
    }
    for (const entry of [...this.#byName.values()]) this.#link(entry)
    this.#countHardlinks()

    this.contentBytes = contentBytes
    this.entryCount = this.#byName.size
    this.hasXattrs = [...this.#byName.values()].some((e) => Object.keys(e.xattrs).length > 0)
    for (const list of this.#children.values()) list.sort((a, b) => (a.name < b.name ? -1 : 1))
  }

  /** The highest id used plus one: where the next layer's ids may start. */
  get nextId(): number {
    return this.#nextId
  }

  async entry(name: string): Promise<LayerEntry | undefined> {
    return this.#byName.get(name)
  }

  async children(dirName: string): Promise<LayerEntry[]> {
    return this.#children.get(dirName) ?? []
  }

  async read(entry: LayerEntry, offset: number, length: number): Promise<Buffer> {
    if (entry.sizeBytes === 0 || length === 0) return Buffer.alloc(0)
    return this.#readFile(entry.name, offset, length)
  }

  #link(entry: LayerEntry): void {
    if (entry.name === '') return
    const parent = parentOf(entry.name)
    let siblings = this.#children.get(parent)
    if (!siblings) {
      siblings = []
      this.#children.set(parent, siblings)
    }
    siblings.push(entry)

    // Tar streams may omit parent directories; present them the way tar would create them.
    if (parent !== '' && !this.#byName.has(parent)) {
      const implied = impliedDir(parent, this.#nextId++)
      this.#byName.set(parent, implied)
      this.#link(implied)
    }
  }

  #countHardlinks(): void {
    for (const entry of this.#byName.values()) {
      if (entry.type !== 'hardlink') continue
      const target = this.#byName.get(entry.linkName)
      if (target) target.nlink++
    }
  }
}

function toLayerEntry(toc: TocLikeEntry, id: number): LayerEntry {
  return {
    id,
    name: toc.name,
    type: toc.type as NodeType | 'hardlink',
    mode: toc.mode & 0o7777,
    uid: toc.uid,
    gid: toc.gid,
    sizeBytes: toc.type === 'reg' ? toc.size : 0,
    mtimeMs: modtimeMs(toc.modtime),
    linkName: toc.linkName ?? '',
    devMajor: toc.devMajor,
    devMinor: toc.devMinor,
    xattrs: decodeXattrs(toc.xattrs),
    nlink: 1,
  }
}
