/**
 * Recycled segment buffers for the writer: a segment is built in one ArrayBuffer, sent
 * to a compression worker (transferred, not copied) and handed back afterwards, so a
 * conversion reuses a handful of chunk-sized buffers instead of leaving one behind per
 * chunk for the garbage collector (which let resident memory balloon between GCs).
 */
export class SegmentBuffers {
  private readonly free: ArrayBuffer[] = []

  /**
   * @param standardBytes size of a normal buffer (one chunk plus room for headers)
   * @param maxFree how many returned buffers to keep for reuse
   */
  constructor(
    private readonly standardBytes: number,
    private readonly maxFree: number,
  ) {}

  /** A buffer of at least `minBytes`, reused when one is free. */
  get(minBytes: number): ArrayBuffer {
    const index = this.free.findIndex((b) => b.byteLength >= minBytes)
    if (index >= 0) return this.free.splice(index, 1)[0] as ArrayBuffer
    return new ArrayBuffer(Math.max(minBytes, this.standardBytes))
  }

  /** Returns a buffer for reuse (dropped when enough are kept, or when it is odd-sized). */
  put(buffer: ArrayBuffer): void {
    if (this.free.length >= this.maxFree || buffer.byteLength !== this.standardBytes) return
    this.free.push(buffer)
  }
}
