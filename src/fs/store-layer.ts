import type { LayerEntry, LayerSource, LentBytes, NodeType } from './image-view.js'
import { decodeXattrs, impliedDir, modtimeMs, parentOf } from './layer-entry.js'
import type { ReadWindowCache } from './read-window-cache.js'
import type { TocQueryClient } from './toc-query-client.js'
import type { ChunkSpan, LayerSummary, WorkerTocRow } from './toc-query-worker.js'

/**
 * Reads `length` bytes of file `name` of layer `layerDigest` from `offset`, from the chunk
 * cache or by awaiting the fetch scheduler (the image service's lazy read). With `into`
 * (at least `length` bytes) the bytes are written there and a view of it is returned.
 */
export type LayerReadFn = (
  layerDigest: string,
  name: string,
  offset: number,
  length: number,
  into?: Buffer,
) => Promise<Buffer>

/** Chunks up to this size are read whole into the window cache. */
const MAX_WINDOW_BYTES = 4 << 20
/**
 * Bytes of cached chunks read ahead of a sequential reader (one cache-file read in flight
 * per chunk; at least one chunk). Six 1 MiB chunks left almost no read waiting on disk
 * where three left a hundred waits per 256 MiB.
 */
const READ_AHEAD_BYTES = 6 << 20
/** Files whose present chunk spans are remembered (skips an index query per read). */
const RECENT_SPANS = 64
/** Chunk spans asked for at once: the one being read and those a sequential reader wants next. */
const SPANS_PER_QUERY = 16
/** Spans remembered per file. */
const MAX_SPANS_PER_FILE = 64

/**
 * Entry ids per layer: 2^24, so 255 layers keep every inode number below 2^32. The FUSE
 * protocol carries 64 bits, but a 32-bit kernel (armv7) folds larger ones into its 32-bit
 * inode numbers, where two entries may collide, and 32-bit programs built without large
 * file support fail stat() with EOVERFLOW on them.
 */
export const IDS_PER_LAYER = 1 << 24

/**
 * A `LayerSource` over the TOC rows the store recorded for one layer: lookups and listings
 * come from SQLite through the query worker, file bytes from `read`. Only a per-layer
 * summary (hardlink targets, implied directories) stays in the heap.
 */
export class StoreLayer implements LayerSource {
  readonly contentBytes: number
  readonly entryCount: number
  readonly hasXattrs: boolean
  readonly #digest: string
  readonly #queries: TocQueryClient
  readonly #read: LayerReadFn
  readonly #windows: ReadWindowCache
  readonly #spans = new Map<string, ChunkSpan[]>()
  readonly #spanQueries = new Map<string, Promise<ChunkSpan[]>>()
  readonly #aheadUntil = new Map<string, number>()
  readonly #idBase: number
  readonly #hardlinks: Map<string, number>
  readonly #impliedDirs: Map<string, number>
  readonly #impliedByParent = new Map<string, string[]>()

  private constructor(
    digest: string,
    position: number,
    queries: TocQueryClient,
    read: LayerReadFn,
    windows: ReadWindowCache,
    summary: LayerSummary,
  ) {
    this.#digest = digest
    this.#queries = queries
    this.#read = read
    this.#windows = windows
    this.#idBase = position * IDS_PER_LAYER
    this.contentBytes = summary.contentBytes
    this.hasXattrs = summary.xattrEntries > 0
    this.entryCount = summary.entryCount + summary.impliedDirs.length
    this.#hardlinks = new Map(summary.hardlinks)
    this.#impliedDirs = new Map(summary.impliedDirs.map((name, i) => [name, IDS_PER_LAYER - 1 - i]))
    for (const name of summary.impliedDirs) {
      const parent = parentOf(name)
      const list = this.#impliedByParent.get(parent) ?? []
      list.push(name)
      this.#impliedByParent.set(parent, list)
    }
  }

  /**
   * Opens layer `digest`, the `position`-th from the bottom of its image; `windows` is
   * shared by the layers of one view.
   */
  static async open(
    digest: string,
    position: number,
    queries: TocQueryClient,
    read: LayerReadFn,
    windows: ReadWindowCache,
  ): Promise<StoreLayer> {
    const summary = await queries.summary(digest)
    return new StoreLayer(digest, position, queries, read, windows, summary)
  }

  async entry(name: string): Promise<LayerEntry | undefined> {
    const row = await this.#queries.entry(this.#digest, name)
    if (row) return this.#toEntry(row)
    const impliedId = this.#impliedDirs.get(name)
    return impliedId === undefined ? undefined : impliedDir(name, this.#idBase + impliedId)
  }

  async children(dirName: string): Promise<LayerEntry[]> {
    const rows = await this.#queries.children(this.#digest, dirName)
    const entries = rows.map((row) => this.#toEntry(row))
    for (const name of this.#impliedByParent.get(dirName) ?? []) {
      entries.push(impliedDir(name, this.#idBase + (this.#impliedDirs.get(name) ?? 0)))
    }
    return entries
  }

  /** `readSlices` copied into a new buffer. */
  async read(entry: LayerEntry, offset: number, length: number): Promise<Buffer> {
    const wanted = Math.max(0, Math.min(length, entry.sizeBytes - offset))
    const target = Buffer.allocUnsafe(wanted)
    const n = copyOut(await this.readSlices(entry, offset, wanted), target)
    return n === wanted ? target : target.subarray(0, n)
  }

  /**
   * The bytes at `offset` as slices of the window cache, pinned until `release`: each
   * chunk the range touches is read whole once (it is the unit the scheduler fetches
   * anyway) and later reads inside it come from memory without a copy. A request may span
   * chunks (the kernel asks for up to 1 MiB from wherever its read-ahead window starts).
   * When the next chunks of the file are already cached they are read ahead, so a
   * sequential reader keeps several cache-file reads in flight; a missing one is never
   * fetched ahead. Chunks too big for a window are read into a buffer of their own.
   */
  async readSlices(entry: LayerEntry, offset: number, length: number): Promise<LentBytes> {
    const end = Math.min(offset + length, entry.sizeBytes)
    const lent = new WindowLoan(this.#windows)
    try {
      for (let at = offset; at < end; ) {
        const span = this.#windows.isEnabled ? await this.#spanAt(entry.name, at) : undefined
        if (!span || span.chunkSize > MAX_WINDOW_BYTES) {
          const rest = Buffer.allocUnsafe(end - at)
          lent.parts.push(rest.subarray(0, await this.#readDirect(entry, at, end - at, rest)))
          break
        }
        if (at === offset)
          this.#keepReadingAhead(entry, span.chunkOffset + span.chunkSize, span.chunkSize)

        // Pinned before anything else is awaited: the window cache recycles evicted buffers.
        const window = await this.#window(entry.name, span)
        const taken = lent.take(window, at - span.chunkOffset, end - at)
        if (taken === 0) break
        at += taken
      }
    } catch (err) {
      lent.release()
      throw err
    }
    return lent
  }

  async #readDirect(
    entry: LayerEntry,
    offset: number,
    length: number,
    target: Buffer,
  ): Promise<number> {
    const data = await this.#read(this.#digest, entry.name, offset, length, target)
    // A read function may ignore `target` and answer with its own buffer.
    if (data.buffer !== target.buffer || data.byteOffset !== target.byteOffset) data.copy(target)
    return data.length
  }

  /**
   * The part of `readSlices` that needs no await: a read whose chunks are all in memory.
   * Undefined when one is not (the caller then awaits `readSlices`).
   */
  sliceIfReady(entry: LayerEntry, offset: number, length: number): LentBytes | undefined {
    const end = Math.min(offset + length, entry.sizeBytes)
    if (!this.#windows.isEnabled || offset >= end) return undefined
    const spans = this.#spans.get(entry.name)

    const lent = new WindowLoan(this.#windows)
    for (let at = offset; at < end; ) {
      const span = findSpan(spans, at)
      const window = span && this.#windows.peek(this.#windowKey(entry.name, span))
      const taken = span && window ? lent.take(window, at - span.chunkOffset, end - at) : 0
      if (taken === 0) {
        lent.release()
        return undefined
      }
      if (at === offset)
        this.#keepReadingAhead(entry, span!.chunkOffset + span!.chunkSize, span!.chunkSize)
      at += taken
    }
    return lent
  }

  // Keeps READ_AHEAD_BYTES of chunks in flight beyond the one being read (at most half
  // the window cache, so read-ahead never evicts what it read). A reader that
  // starts over or jumps starts a new read-ahead from where it is (a mark left past the
  // window by an earlier pass would otherwise stop read-ahead for good).
  #keepReadingAhead(entry: LayerEntry, end: number, chunkSize: number): void {
    const aheadBytes = Math.min(READ_AHEAD_BYTES, this.#windows.maxBytes / 2)
    const window = Math.max(1, Math.floor(aheadBytes / chunkSize)) * chunkSize
    const mark = this.#aheadUntil.get(entry.name) ?? end
    const aheadUntil = mark < end || mark > end + window ? end : mark
    const wanted = Math.min(end + window, entry.sizeBytes)
    if (aheadUntil >= wanted) return
    remember(this.#aheadUntil, entry.name, wanted)
    void this.#readAhead(entry, aheadUntil, Math.ceil((wanted - aheadUntil) / chunkSize))
  }

  // The chunk holding `offset`, from the spans remembered for the file (a sequential
  // reader finds them there) or one query for it and the next SPANS_PER_QUERY - 1. A
  // query already under way for the file is awaited first: the reads at a chunk boundary
  // arrive together and would otherwise each ask.
  async #spanAt(name: string, offset: number): Promise<ChunkSpan | undefined> {
    const known = findSpan(this.#spans.get(name), offset)
    if (known) return known
    const pending = this.#spanQueries.get(name)
    if (pending) {
      await pending.catch(() => undefined)
      const found = findSpan(this.#spans.get(name), offset)
      if (found) return found
    }

    const query = this.#queries.chunkSpans(this.#digest, name, offset, SPANS_PER_QUERY)
    this.#spanQueries.set(name, query)
    try {
      const spans = await query
      const present = spans.filter((span) => span.isPresent)
      if (present.length > 0)
        remember(this.#spans, name, mergeSpans(this.#spans.get(name), present))
      return spans[0]
    } finally {
      if (this.#spanQueries.get(name) === query) this.#spanQueries.delete(name)
    }
  }

  #window(name: string, span: ChunkSpan): Promise<Buffer> {
    return this.#windows.get(this.#windowKey(name, span), span.chunkSize, (into) =>
      this.#read(this.#digest, name, span.chunkOffset, span.chunkSize, into),
    )
  }

  #windowKey(name: string, span: ChunkSpan): string {
    return `${this.#digest}\0${name}\0${span.chunkOffset}`
  }

  async #readAhead(entry: LayerEntry, offset: number, chunks: number): Promise<void> {
    try {
      const spans: ChunkSpan[] = []
      for (let at = offset; spans.length < chunks && at < entry.sizeBytes; ) {
        const span = await this.#spanAt(entry.name, at)
        if (!span?.isPresent || span.chunkOffset !== at || span.chunkSize > MAX_WINDOW_BYTES) break
        spans.push(span)
        at += span.chunkSize
      }
      await Promise.all(spans.map((span) => this.#window(entry.name, span)))
    } catch {
      // Read-ahead is a guess; the real read reports any failure.
    }
  }

  #toEntry(row: WorkerTocRow): LayerEntry {
    return {
      id: this.#idBase + row.ord,
      name: row.name,
      type: row.type as NodeType | 'hardlink',
      mode: row.mode & 0o7777,
      uid: row.uid,
      gid: row.gid,
      sizeBytes: row.type === 'reg' ? row.size : 0,
      mtimeMs: modtimeMs(row.modtime),
      linkName: row.linkName ?? '',
      devMajor: row.devMajor ?? 0,
      devMinor: row.devMinor ?? 0,
      xattrs: decodeXattrs(row.xattrs ? (JSON.parse(row.xattrs) as Record<string, string>) : null),
      nlink: 1 + (this.#hardlinks.get(row.name) ?? 0),
    }
  }
}

/**
 * `known` and `fresh` in file order without duplicates, keeping the MAX_SPANS_PER_FILE
 * nearest the fresh ones: read-ahead asks ahead of the reader, and replacing the list
 * would drop the chunks the reader is still in.
 */
function mergeSpans(known: ChunkSpan[] | undefined, fresh: ChunkSpan[]): ChunkSpan[] {
  const byOffset = new Map<number, ChunkSpan>()
  for (const span of [...(known ?? []), ...fresh]) byOffset.set(span.chunkOffset, span)
  let spans = [...byOffset.values()]
  if (spans.length > MAX_SPANS_PER_FILE) {
    const at = fresh[0]!.chunkOffset
    spans = spans
      .sort((a, b) => Math.abs(a.chunkOffset - at) - Math.abs(b.chunkOffset - at))
      .slice(0, MAX_SPANS_PER_FILE)
  }
  return spans.sort((a, b) => a.chunkOffset - b.chunkOffset)
}

/** The span in `spans` (ordered by offset) that holds `offset`. */
function findSpan(spans: ChunkSpan[] | undefined, offset: number): ChunkSpan | undefined {
  if (spans === undefined) return undefined
  for (const span of spans) {
    if (offset < span.chunkOffset) return undefined
    if (offset < span.chunkOffset + span.chunkSize) return span
  }
  return undefined
}

/** Slices of windows, each pinned until `release`. */
class WindowLoan implements LentBytes {
  readonly parts: Buffer[] = []
  readonly #pinned: Buffer[] = []
  #released = false

  constructor(private readonly windows: ReadWindowCache) {}

  /** Takes up to `length` bytes of `window` from `from`; returns how many. */
  take(window: Buffer, from: number, length: number): number {
    const to = Math.min(window.length, from + length)
    if (to <= from) return 0
    this.windows.pin(window)
    this.#pinned.push(window)
    this.parts.push(window.subarray(from, to))
    return to - from
  }

  release = (): void => {
    if (this.#released) return
    this.#released = true
    for (const window of this.#pinned) this.windows.unpin(window)
  }
}

/** Copies `lent` into `target` and releases it; returns the bytes copied. */
function copyOut(lent: LentBytes, target: Buffer): number {
  let copied = 0
  for (const part of lent.parts) copied += part.copy(target, copied)
  lent.release()
  return copied
}

/** Sets `key` in a small most-recently-used map of at most RECENT_SPANS files. */
function remember<T>(map: Map<string, T>, key: string, value: T): void {
  map.delete(key)
  map.set(key, value)
  if (map.size <= RECENT_SPANS) return
  const oldest = map.keys().next().value
  if (oldest !== undefined) map.delete(oldest)
}
