/**
 * Writes a layer blob in the reference writer's layout (stargz-snapshotter
 * estargz.Writer, docs/estargz.md): tar headers accumulate in the current gzip member
 * or zstd frame; every chunk of a regular file starts a new one, so a chunk can be
 * fetched and decompressed on its own from its `offset`; the file's padding and the
 * following headers ride at the end of its last chunk's member. The TOC then goes in
 * its own member (gzip: as tar entry `stargz.index.json`, ending the tar) or skippable
 * frame (zstd:chunked), followed by the footer.
 *
 * Members are compressed by a worker pool while the next ones are formed; results are
 * written strictly in order and only a bounded number are in flight, so memory stays
 * at a few chunks whatever the layer size.
 */
import { createHash, type Hash } from 'node:crypto'
import { compress as zstdCompress } from 'zstd-napi'
import type { ConvertFormat, ConvertProgress, LayerWriteResult } from './convert-types.js'
import type { SourceEntry } from './tar-source.js'
import { TOC_DIGEST_ANNOTATION, TOC_TAR_NAME, UNCOMPRESSED_SIZE_ANNOTATION } from './types.js'
import { SegmentBuffers } from './writer-buffers.js'
import {
  gzipFooter,
  ZSTD_SKIPPABLE_HEADER_BYTES,
  zstdFooter,
  zstdSkippableFrame,
} from './writer-footer.js'
import { CompressorPool } from './writer-pool.js'
import {
  bareFileHeader,
  encodeTarHeader,
  TAR_END_BYTES,
  tarPaddingBytes,
} from './writer-tar-header.js'
import { type TocEntryDraft, tocJson } from './writer-toc.js'

/** Where compressed bytes go, in order. */
export interface BlobSink {
  write(data: Buffer): Promise<void>
}

/** Options of LayerWriter. */
export interface LayerWriterOptions {
  format: ConvertFormat
  chunkSizeBytes: number
  level: number
  /** Compression threads; 0 compresses inline. */
  workers: number
  /** Total content bytes expected, for progress only. */
  totalBytes?: number
  onProgress?: (progress: ConvertProgress) => void
}

/** zstd:chunked annotations (containers/storage names, as the reference sets them). */
export const ZSTD_MANIFEST_CHECKSUM_ANNOTATION = 'io.containers.zstd-chunked.manifest-checksum'
export const ZSTD_MANIFEST_POSITION_ANNOTATION = 'io.containers.zstd-chunked.manifest-position'

// The reference's landmark file holds this one byte (estargz build.go landmarkContents).
const LANDMARK_CONTENT = Buffer.from([0x0f])

interface QueuedSegment {
  compressed: Promise<Buffer>
  chunk: TocEntryDraft | undefined
}

/**
 * Streams entries into a layer blob. Call `add` for each entry in layer order (use
 * `addLandmark` where the landmark belongs), then `finish` once. Throws what the
 * entries' content readers and the sink throw, and COMPRESS_FAILED.
 */
export class LayerWriter {
  private readonly pool: CompressorPool
  private readonly toc: TocEntryDraft[] = []
  private readonly diffHash = createHash('sha256')
  private readonly blobHash = createHash('sha256')
  private readonly queue: QueuedSegment[] = []
  private readonly maxInFlight: number
  private readonly buffers: SegmentBuffers
  // The member being formed: its bytes are the first segmentBytes of segment.
  private segment: ArrayBuffer | undefined
  private segmentBytes = 0
  private segmentChunk: TocEntryDraft | undefined
  private uncompressedBytes = 0
  private writtenBytes = 0
  private pendingOut: Buffer[] = []
  private pendingOutBytes = 0
  private doneContentBytes = 0

  constructor(
    private readonly sink: BlobSink,
    private readonly options: LayerWriterOptions,
  ) {
    this.maxInFlight = Math.max(2, options.workers * 2)
    this.buffers = new SegmentBuffers(
      options.chunkSizeBytes + SEGMENT_HEADROOM_BYTES,
      this.maxInFlight + 2,
    )
    this.pool = new CompressorPool(options.format, options.level, options.workers, (buffer) =>
      this.buffers.put(buffer),
    )
  }

  /** Appends one entry: its header, and for a regular file its content chunk by chunk. */
  async add(entry: SourceEntry): Promise<void> {
    const draft = draftFor(entry)
    this.append(encodeTarHeader(entry))
    if (entry.type !== 'reg') {
      this.toc.push(draft)
      return
    }
    if (entry.sizeBytes === 0) {
      draft.digest = EMPTY_SHA256
      this.toc.push(draft)
      return
    }
    await this.appendContent(entry, draft)
  }

  /** Appends `.prefetch.landmark` (after prioritized files) or `.no.prefetch.landmark`. */
  async addLandmark(name: string): Promise<void> {
    await this.add({
      ...bareFileHeader(name, LANDMARK_CONTENT.length),
      readContent: async function* () {
        yield LANDMARK_CONTENT
      },
    })
  }

  /** Writes the TOC and footer; returns digests and sizes. Call once, after every add. */
  async finish(): Promise<LayerWriteResult> {
    try {
      this.flushSegment()
      while (this.queue.length > 0) await this.drainOne()
      return this.options.format === 'estargz' ? await this.finishGzip() : await this.finishZstd()
    } finally {
      await this.pool.close()
    }
  }

  /** Stops the compression threads after a failure (finish does it on success). */
  async abort(): Promise<void> {
    await this.pool.close()
  }

  // Each chunk starts a new member; its bytes are hashed for chunkDigest, and for the
  // whole-file digest when there is more than one chunk (otherwise they are the same).
  private async appendContent(entry: SourceEntry, first: TocEntryDraft): Promise<void> {
    const chunkSize = this.options.chunkSizeBytes
    const fileHash: Hash | undefined =
      entry.sizeBytes > chunkSize ? createHash('sha256') : undefined
    let chunkOffset = 0
    let draft = first

    // Pieces are read straight into the segment buffer (one chunk each).
    const alloc = (sizeBytes: number): Buffer => {
      this.flushSegment()
      return this.reserve(sizeBytes)
    }
    for await (const piece of entry.readContent(chunkSize, alloc)) {
      this.flushSegment()
      await this.throttle()
      draft.chunkOffset = chunkOffset
      // The reference keeps chunkSize only on full-size chunks; 0 means "to the end".
      if (entry.sizeBytes - chunkOffset >= chunkSize) draft.chunkSize = chunkSize
      draft.chunkDigest = `sha256:${createHash('sha256').update(piece).digest('hex')}`
      this.segmentChunk = draft
      this.toc.push(draft)
      this.append(piece)
      fileHash?.update(piece)
      chunkOffset += piece.length
      this.reportProgress(piece.length)
      draft = { name: entry.name, type: 'chunk' }
    }

    if (chunkOffset !== entry.sizeBytes) throw new Error(`content of ${entry.name} ended early`)
    first.digest = fileHash ? `sha256:${fileHash.digest('hex')}` : first.chunkDigest
    this.append(Buffer.alloc(tarPaddingBytes(entry.sizeBytes)))
  }

  // Adds bytes to the current member; a piece already read into place (see reserve)
  // is only counted, not copied.
  private append(data: Buffer): void {
    if (data.length === 0) return
    const inPlace = data.buffer === this.segment && data.byteOffset === this.segmentBytes
    if (!inPlace) data.copy(this.reserve(data.length))
    this.segmentBytes += data.length
    this.diffHash.update(data)
    this.uncompressedBytes += data.length
  }

  // A view of the next `sizeBytes` of the segment buffer, growing it when needed.
  private reserve(sizeBytes: number): Buffer {
    const needed = this.segmentBytes + sizeBytes
    if (this.segment === undefined || this.segment.byteLength < needed) {
      const grown = this.buffers.get(Math.max(needed, 2 * (this.segment?.byteLength ?? 0)))
      if (this.segment !== undefined) {
        new Uint8Array(grown).set(new Uint8Array(this.segment, 0, this.segmentBytes))
        this.buffers.put(this.segment)
      }
      this.segment = grown
    }
    return Buffer.from(this.segment, this.segmentBytes, sizeBytes)
  }

  // Closes the current member: hands its bytes to the pool and queues the result.
  private flushSegment(): void {
    if (this.segment === undefined || this.segmentBytes === 0) return
    const compressed = this.pool.compress(this.segment, this.segmentBytes)
    compressed.catch(() => {}) // awaited in order by drainOne; avoid an unhandled rejection
    this.queue.push({ compressed, chunk: this.segmentChunk })
    this.segment = undefined
    this.segmentBytes = 0
    this.segmentChunk = undefined
  }

  private async throttle(): Promise<void> {
    while (this.queue.length >= this.maxInFlight) await this.drainOne()
  }

  // Writes the oldest queued member; a chunk's offset is where its member starts.
  private async drainOne(): Promise<void> {
    const head = this.queue.shift()
    if (head === undefined) return
    const out = await head.compressed
    if (head.chunk) head.chunk.offset = this.writtenBytes
    await this.writeOut(out)
  }

  // Small members are gathered into one write: a layer of many small files would
  // otherwise cost one write call per file.
  private async writeOut(data: Buffer): Promise<void> {
    this.blobHash.update(data)
    this.writtenBytes += data.length
    this.pendingOut.push(data)
    this.pendingOutBytes += data.length
    if (this.pendingOutBytes >= WRITE_BATCH_BYTES) await this.flushOut()
  }

  private async flushOut(): Promise<void> {
    if (this.pendingOutBytes === 0) return
    const batch = this.pendingOut.length === 1 ? this.pendingOut[0] : undefined
    const data = batch ?? Buffer.concat(this.pendingOut, this.pendingOutBytes)
    this.pendingOut = []
    this.pendingOutBytes = 0
    await this.sink.write(data)
  }

  // gzip: the TOC is a tar entry in its own member, then the tar's end, then the footer.
  private async finishGzip(): Promise<LayerWriteResult> {
    const json = tocJson(this.toc)
    const tocOffset = this.writtenBytes
    this.append(encodeTarHeader(bareFileHeader(TOC_TAR_NAME, json.length)))
    this.append(json)
    this.append(Buffer.alloc(tarPaddingBytes(json.length) + TAR_END_BYTES))
    this.flushSegment()
    await this.drainOne()
    await this.writeOut(gzipFooter(tocOffset))
    await this.flushOut()

    const tocDigest = sha256(json)
    return this.result(tocDigest, tocOffset, {})
  }

  // zstd:chunked: the TOC JSON, zstd-compressed, in a skippable frame, then the footer
  // (itself a skippable frame). The decompressed stream has no TOC and no tar end.
  private async finishZstd(): Promise<LayerWriteResult> {
    const json = tocJson(this.toc)
    const compressedToc = zstdCompress(json, { compressionLevel: this.options.level })
    const tocOffset = this.writtenBytes + ZSTD_SKIPPABLE_HEADER_BYTES
    await this.writeOut(zstdSkippableFrame(compressedToc))
    await this.writeOut(zstdFooter(tocOffset, compressedToc.length, json.length))
    await this.flushOut()

    const position = `${tocOffset}:${compressedToc.length}:${json.length}:1`
    return this.result(sha256(json), tocOffset, {
      [ZSTD_MANIFEST_CHECKSUM_ANNOTATION]: sha256(compressedToc),
      [ZSTD_MANIFEST_POSITION_ANNOTATION]: position,
    })
  }

  private result(
    tocDigest: string,
    tocOffset: number,
    extra: Record<string, string>,
  ): LayerWriteResult {
    return {
      digest: `sha256:${this.blobHash.digest('hex')}`,
      size: this.writtenBytes,
      tocDigest,
      diffID: `sha256:${this.diffHash.digest('hex')}`,
      uncompressedSize: this.uncompressedBytes,
      tocOffset,
      tocEntries: this.toc.length,
      annotations: {
        [TOC_DIGEST_ANNOTATION]: tocDigest,
        [UNCOMPRESSED_SIZE_ANNOTATION]: String(this.uncompressedBytes),
        ...extra,
      },
    }
  }

  private reportProgress(contentBytes: number): void {
    this.doneContentBytes += contentBytes
    this.options.onProgress?.({
      doneBytes: this.doneContentBytes,
      totalBytes: this.options.totalBytes ?? 0,
      writtenBytes: this.writtenBytes,
    })
  }
}

// Compressed bytes gathered before one write to the sink.
const WRITE_BATCH_BYTES = 1 << 20

// Room after a chunk for its padding and the headers of the entries that follow it.
const SEGMENT_HEADROOM_BYTES = 64 * 1024

const EMPTY_SHA256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

function draftFor(entry: SourceEntry): TocEntryDraft {
  return {
    name: entry.name,
    type: entry.type,
    size: entry.type === 'reg' ? entry.sizeBytes : 0,
    mtimeSec: entry.mtimeSec,
    linkName: entry.linkName,
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    userName: entry.userName,
    groupName: entry.groupName,
    devMajor: entry.devMajor,
    devMinor: entry.devMinor,
    xattrs: entry.xattrs,
  }
}
