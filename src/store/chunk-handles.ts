import { close, open, read } from 'node:fs'

interface Handle {
  fd: Promise<number>
  users: number
  isDropped: boolean
}

/**
 * A small LRU of read-only file descriptors of chunk objects, so a warm read is one
 * `pread` instead of open + read + close. All calls are asynchronous (libuv pool): this
 * runs on the FUSE event loop. A descriptor in use is never closed under its reader:
 * eviction and `drop` only mark it, and the last user closes it.
 */
export class ChunkHandles {
  readonly #maxOpen: number
  readonly #handles = new Map<string, Handle>()

  constructor(maxOpen: number) {
    this.#maxOpen = maxOpen
  }

  /**
   * Reads up to `length` bytes at `position` of the file at `path` (cached under `key`)
   * into `target` at `targetOffset`; resolves with the bytes read. Rejects with the
   * `open` error (ENOENT) when the file is gone.
   */
  async readInto(
    key: string,
    path: string,
    position: number,
    target: Buffer,
    targetOffset: number,
    length: number,
  ): Promise<number> {
    const handle = this.#acquire(key, path)
    try {
      const fd = await handle.fd
      let done = 0
      // A regular file returns short only at its end; loop for the odd partial pread.
      while (done < length) {
        const n = await preadAsync(fd, target, targetOffset + done, length - done, position + done)
        if (n === 0) break
        done += n
      }
      return done
    } finally {
      this.#release(handle)
    }
  }

  /** Forgets `key` (its file was removed or replaced); closes it once no read uses it. */
  drop(key: string): void {
    const handle = this.#handles.get(key)
    if (handle === undefined) return
    this.#handles.delete(key)
    handle.isDropped = true
    if (handle.users === 0) closeQuietly(handle)
  }

  /** Drops every descriptor (at store close). */
  dropAll(): void {
    for (const key of [...this.#handles.keys()]) this.drop(key)
  }

  #acquire(key: string, path: string): Handle {
    let handle = this.#handles.get(key)
    if (handle !== undefined) {
      // Most recently used last.
      this.#handles.delete(key)
      this.#handles.set(key, handle)
    } else {
      handle = { fd: openAsync(path), users: 0, isDropped: false }
      // A failed open is not kept: the next read tries again (and reports the error).
      const opened = handle
      opened.fd.catch(() => {
        if (this.#handles.get(key) === opened) this.#handles.delete(key)
        opened.isDropped = true
      })
      this.#handles.set(key, handle)
    }
    // Counted before evicting, so the handle being acquired is never the one closed.
    handle.users++
    this.#evictIdle()
    return handle
  }

  #release(handle: Handle): void {
    handle.users--
    if (handle.users > 0) return
    if (handle.isDropped) closeQuietly(handle)
    else this.#evictIdle()
  }

  // Closes least recently used idle descriptors beyond the limit; busy ones wait.
  #evictIdle(): void {
    if (this.#handles.size <= this.#maxOpen) return
    for (const [key, handle] of this.#handles) {
      if (this.#handles.size <= this.#maxOpen) return
      if (handle.users > 0) continue
      this.#handles.delete(key)
      handle.isDropped = true
      closeQuietly(handle)
    }
  }
}

function openAsync(path: string): Promise<number> {
  return new Promise((resolve, reject) =>
    open(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd))),
  )
}

function preadAsync(
  fd: number,
  target: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  return new Promise((resolve, reject) =>
    read(fd, target, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))),
  )
}

function closeQuietly(handle: Handle): void {
  handle.fd.then(
    (fd) => close(fd, () => {}),
    () => {},
  )
}
