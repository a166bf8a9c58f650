/**
 * A small LRU of recently read file windows (one chunk each), shared by the layers of a
 * view. The kernel reads a file 128 KiB at a time; serving the rest of a chunk from here
 * turns eight cache-file reads and index queries per MiB into one. Concurrent reads of
 * one window share a single load. Bounded by bytes.
 *
 * Window buffers are recycled: an evicted one is reused for a later load of the same size,
 * so a sequential read allocates nothing (fresh 1 MiB buffers made V8 collect garbage
 * every few milliseconds). Callers therefore never keep a window unless they `pin` it:
 * `get` hands it out to be copied or pinned before the caller's next await, and an evicted
 * buffer is reused only after the current turn of the event loop has finished and once
 * nobody holds a pin on it (a FUSE reply sends slices of a window without copying them).
 */
export class ReadWindowCache {
  readonly #maxBytes: number
  readonly #windows = new Map<string, Buffer>()
  readonly #loading = new Map<string, Promise<Buffer>>()
  readonly #free = new Map<number, Buffer[]>()
  // Only buffers this cache allocated are ever recycled (a load may answer with its own).
  readonly #owned = new WeakSet<ArrayBufferLike>()
  #cooling: Buffer[] = []
  readonly #pins = new Map<ArrayBufferLike, number>()
  // Evicted while pinned: recycled when the last pin goes.
  readonly #evictedPinned = new Map<ArrayBufferLike, Buffer>()
  #freeBytes = 0
  #bytes = 0

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes
  }

  /** Most bytes of windows kept. */
  get maxBytes(): number {
    return this.#maxBytes
  }

  /** False when built with no room: callers then read directly. */
  get isEnabled(): boolean {
    return this.#maxBytes > 0
  }

  /** The window under `key` when it is in memory now (marked most recently used). */
  peek(key: string): Buffer | undefined {
    const hit = this.#windows.get(key)
    if (hit === undefined) return undefined
    this.#windows.delete(key)
    this.#windows.set(key, hit)
    return hit
  }

  /**
   * The window under `key` (`size` bytes), loading it with `load` into a buffer of that
   * size when absent; `load` resolves with the filled part. Copy what you need from the
   * result before awaiting anything else.
   */
  async get(key: string, size: number, load: (into: Buffer) => Promise<Buffer>): Promise<Buffer> {
    const hit = this.peek(key)
    if (hit) return hit

    const pending = this.#loading.get(key)
    if (pending) return pending
    const buffer = this.#take(size)
    const loading = load(buffer).finally(() => this.#loading.delete(key))
    this.#loading.set(key, loading)
    let window: Buffer
    try {
      window = await loading
    } catch (err) {
      this.#recycle(buffer)
      throw err
    }
    if (window.buffer !== buffer.buffer) this.#recycle(buffer)
    this.#remember(key, window)
    return window
  }

  /** Keeps `window`'s memory from being reused until `unpin`. */
  pin(window: Buffer): void {
    this.#pins.set(window.buffer, (this.#pins.get(window.buffer) ?? 0) + 1)
  }

  unpin(window: Buffer): void {
    const left = (this.#pins.get(window.buffer) ?? 1) - 1
    if (left > 0) {
      this.#pins.set(window.buffer, left)
      return
    }
    this.#pins.delete(window.buffer)
    const evicted = this.#evictedPinned.get(window.buffer)
    if (evicted === undefined) return
    this.#evictedPinned.delete(window.buffer)
    this.#recycle(evicted)
  }

  // A recycled buffer of exactly `size` bytes, else a new one outside Node's small pool.
  #take(size: number): Buffer {
    const list = this.#free.get(size)
    const reused = list?.pop()
    if (reused !== undefined) {
      this.#freeBytes -= size
      return reused
    }
    const fresh = Buffer.allocUnsafeSlow(size)
    this.#owned.add(fresh.buffer)
    return fresh
  }

  #remember(key: string, window: Buffer): void {
    if (window.length > this.#maxBytes || this.#windows.has(key)) return
    this.#windows.set(key, window)
    this.#bytes += window.length
    for (const [oldest, dropped] of this.#windows) {
      if (this.#bytes <= this.#maxBytes) break
      this.#windows.delete(oldest)
      this.#bytes -= dropped.length
      this.#recycle(dropped)
    }
  }

  // Reusable once this turn of the event loop is over: a reader handed the window in this
  // turn has copied from it by then.
  #recycle(window: Buffer): void {
    if (!this.#owned.has(window.buffer)) return
    // A short load answers with part of its buffer: recycle the whole allocation.
    const whole = Buffer.from(window.buffer, 0, window.buffer.byteLength)
    if (this.#freeBytes + whole.length > this.#maxBytes / 2) return
    this.#cooling.push(whole)
    if (this.#cooling.length > 1) return
    setImmediate(() => {
      for (const buffer of this.#cooling) {
        if (this.#pins.has(buffer.buffer)) {
          this.#evictedPinned.set(buffer.buffer, buffer)
          continue
        }
        const list = this.#free.get(buffer.length) ?? []
        list.push(buffer)
        this.#free.set(buffer.length, list)
        this.#freeBytes += buffer.length
      }
      this.#cooling = []
    })
  }
}
