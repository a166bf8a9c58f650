/**
 * Pulls exact byte counts out of an async stream of buffers, so a parser can read
 * fixed-size records without holding more than one record plus one input piece.
 */
export class ByteSource {
  private readonly input: AsyncIterator<Buffer>
  private pending: Buffer[] = []
  private pendingBytes = 0
  private isDone = false

  constructor(input: AsyncIterable<Buffer>) {
    this.input = input[Symbol.asyncIterator]()
  }

  /** Buffers until `n` bytes are available or input ends; returns how many there are. */
  async fill(n: number): Promise<number> {
    while (this.pendingBytes < n && !this.isDone) {
      const next = await this.input.next()
      if (next.done) {
        this.isDone = true
        break
      }
      if (next.value.length === 0) continue
      this.pending.push(next.value)
      this.pendingBytes += next.value.length
    }
    return Math.min(n, this.pendingBytes)
  }

  /** Takes up to `n` already-buffered bytes. */
  take(n: number): Buffer {
    const want = Math.min(n, this.pendingBytes)
    const first = this.pending[0]
    if (first && first.length >= want) {
      this.consume(want)
      return first.subarray(0, want)
    }
    const out = Buffer.concat(this.pending, this.pendingBytes).subarray(0, want)
    this.pending = [Buffer.concat(this.pending, this.pendingBytes)]
    this.consume(want)
    return out
  }

  /** Yields the next `n` bytes in pieces; stops early when input ends. */
  async *stream(n: number): AsyncGenerator<Buffer> {
    let left = n
    while (left > 0) {
      if ((await this.fill(1)) === 0) return
      const first = this.pending[0]!
      const piece = this.take(Math.min(left, first.length))
      left -= piece.length
      yield piece
    }
  }

  /** Discards the next `n` bytes; returns how many were there. */
  async skip(n: number): Promise<number> {
    let skipped = 0
    for await (const piece of this.stream(n)) skipped += piece.length
    return skipped
  }

  /** Reads the rest of the input and discards it. */
  async drain(): Promise<void> {
    this.pending = []
    this.pendingBytes = 0
    while (!this.isDone) {
      const next = await this.input.next()
      if (next.done) this.isDone = true
    }
  }

  private consume(n: number): void {
    let left = n
    while (left > 0) {
      const first = this.pending[0]!
      if (first.length <= left) {
        this.pending.shift()
        left -= first.length
      } else {
        this.pending[0] = first.subarray(left)
        left = 0
      }
    }
    this.pendingBytes -= n
  }
}
