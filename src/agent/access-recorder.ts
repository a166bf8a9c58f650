import type { DirEntry, ImageView, ViewNode, ViewStats } from '../fs/index.js'

/**
 * An ImageView that passes everything through and remembers, in order, the first read of
 * every regular file: the workload's real prefetch set. The kernel page cache may hide
 * later reads of a file, never its first one, which is all the order needs.
 */
export class AccessRecorder implements ImageView {
  private readonly inner: ImageView
  private readonly firstReads = new Set<string>()

  constructor(inner: ImageView) {
    this.inner = inner
  }

  /** Paths of the files read so far, in the order of their first read. */
  get accessedPaths(): string[] {
    return [...this.firstReads]
  }

  lookup(path: string): Promise<ViewNode | undefined> {
    return this.inner.lookup(path)
  }

  readdir(path: string): Promise<DirEntry[] | undefined> {
    return this.inner.readdir(path)
  }

  read(path: string, offset: number, length: number): Promise<Buffer> {
    this.firstReads.add(path)
    return this.inner.read(path, offset, length)
  }

  statfs(): Promise<ViewStats> {
    return this.inner.statfs()
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}
