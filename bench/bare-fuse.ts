/**
 * The ceiling of a fuse-native (libfuse2) mount on this machine: one read-only file of
 * `sizeBytes` served from a 1 MiB buffer in memory, with no store, cache file or view
 * behind it and the same kernel options as edgestar's mounts. `bench/fuse` reads it side
 * by side with the real mount, so the figures separate what FUSE itself costs here
 * (libfuse2 asks for at most 128 KiB per request) from what edgestar adds.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fuse, { type Callback } from 'fuse-native'
import { abortMount } from '../src/fs/index.js'

const PATTERN_BYTES = 1 << 20
const S_IFDIR = 0o040000
const S_IFREG = 0o100000

/** A mounted bare filesystem holding `FILE_NAME`. */
export interface BareFuseMount {
  readonly dir: string
  close(): Promise<void>
}

export const FILE_NAME = 'big.bin'

export async function mountBareFuse(sizeBytes: number): Promise<BareFuseMount> {
  const dir = await mkdtemp(join(tmpdir(), 'edgestar-bench-bare-'))
  const pattern = Buffer.alloc(PATTERN_BYTES, 0x5a)
  const now = new Date()
  const stat = (mode: number, size: number, nlink: number) => ({
    mode,
    size,
    nlink,
    uid: 0,
    gid: 0,
    mtime: now,
    atime: now,
    ctime: now,
  })

  const fuse = new Fuse(
    dir,
    {
      getattr(path: string, cb: Callback): void {
        if (path === '/') cb(0, stat(S_IFDIR | 0o755, 4096, 2))
        else if (path === `/${FILE_NAME}`) cb(0, stat(S_IFREG | 0o444, sizeBytes, 1))
        else cb(-2)
      },
      open(_path: string, _flags: number, cb: Callback): void {
        cb(0, 0)
      },
      read(_p: string, _fd: number, buf: Buffer, length: number, offset: number, cb: Callback) {
        const wanted = Math.max(0, Math.min(length, sizeBytes - offset))
        let done = 0
        while (done < wanted) {
          const from = (offset + done) % PATTERN_BYTES
          done += pattern.copy(buf, done, from, Math.min(PATTERN_BYTES, from + wanted - done))
        }
        cb(done)
      },
    },
    { fsname: 'edgestar-bench-bare,ro', kernelCache: true, attrTimeout: 3600, entryTimeout: 3600 },
  )
  await new Promise<void>((done, fail) => fuse.mount((err) => (err ? fail(err) : done())))

  return {
    dir,
    async close() {
      await new Promise<void>((done) => fuse.unmount(() => done()))
      await abortMount(dir).catch(() => {})
      await rm(dir, { recursive: true, force: true })
    },
  }
}
