/**
 * A small LRU of recently read file windows (one chunk each), shared by the layers of a
 * view. The kernel reads a file 128 KiB at a time; serving the rest of a chunk from here
 * turns eight cache-file reads and index queries per MiB into one. Concurrent reads of
 * one window share a single load. Bounded by bytes.
 */
export class ReadWindowCache {
  readonly #maxBytes: number
  readonly #windows = new Map<string, Buffer>()
  readonly #loading = new Map<string, Promise<Buffer>>()
  #bytes = 0

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes
  }

  /** False when built with no room: callers then read directly. */
  get isEnabled(): boolean {
    return this.#maxBytes > 0
  }

  /** The window under `key`, loading it with `load` when absent. */
  async get(key: string, load: () => Promise<Buffer>): Promise<Buffer> {
    const hit = this.#windows.get(key)
    if (hit) {
      this.#windows.delete(key)
      this.#windows.set(key, hit)
      return hit
    }

    const pending = this.#loading.get(key)
    if (pending) return pending
    const loading = load().finally(() => this.#loading.delete(key))
    this.#loading.set(key, loading)
    const window = await loading
    this.#remember(key, window)
    return window
  }

  #remember(key: string, window: Buffer): void {
    if (window.length > this.#maxBytes || this.#windows.has(key)) return
    this.#windows.set(key, window)
    this.#bytes += window.length
    for (const [oldest, dropped] of this.#windows) {
      if (this.#bytes <= this.#maxBytes) break
      this.#windows.delete(oldest)
      this.#bytes -= dropped.length
    }
  }
}
