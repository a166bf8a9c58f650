/**
 * The ceiling of edgestar's FUSE transport on this machine: one read-only file of
 * `sizeBytes` served from a 1 MiB buffer in memory by the same `FuseSession` and mount
 * options as a real mount (1 MiB requests, 1 MiB read-ahead), with no store, cache file or
 * view behind it. `bench/fuse` reads it side by side with the real mount, so the figures
 * separate what FUSE itself costs here from what edgestar adds.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { abortMount } from '../src/fs/index.js'
import { mountDevice, setReadAhead } from '../src/fs/kernel/kernel-mount.js'
import {
  type Attr,
  cString,
  encodeAttr,
  encodeEntry,
  encodeOpen,
  FOPEN_KEEP_CACHE,
  Opcode,
  parseRead,
} from '../src/fs/kernel/protocol.js'
import { Errno, FuseSession, type Handler } from '../src/fs/kernel/session.js'
import { moduleLogger } from '../src/log.js'

const PATTERN_BYTES = 1 << 20
const MAX_READ_BYTES = 1 << 20
const READ_AHEAD_KIB = 1024
const ROOT_ID = 1
const FILE_ID = 2
const VALID = { entrySec: 3600, attrSec: 3600 }

/** A mounted bare filesystem holding `FILE_NAME`. */
export interface BareFuseMount {
  readonly dir: string
  close(): Promise<void>
}

export const FILE_NAME = 'big.bin'

export async function mountBareFuse(sizeBytes: number): Promise<BareFuseMount> {
  const dir = await mkdtemp(join(tmpdir(), 'edgestar-bench-bare-'))
  const device = await mountDevice(dir, {
    source: 'edgestar-bench-bare',
    subtype: 'edgestar-bare',
    allowOther: false,
  })
  const session = new FuseSession(
    device.fd,
    bareHandlers(sizeBytes),
    {
      maxReadBytes: MAX_READ_BYTES,
      readdirPlus: false,
      opTimeoutMs: 60_000,
      readers: 2,
      trace: false,
    },
    moduleLogger('bench'),
  )
  await session.start()
  await setReadAhead(dir, READ_AHEAD_KIB)

  return {
    dir,
    async close() {
      await abortMount(dir).catch(() => 0)
      await session.done
      await rm(dir, { recursive: true, force: true })
    },
  }
}

function bareHandlers(sizeBytes: number): Partial<Record<number, Handler>> {
  const pattern = Buffer.alloc(PATTERN_BYTES, 0x5a)
  const attrOf = (id: number): Attr => ({
    ino: id,
    sizeBytes: id === ROOT_ID ? 4096 : sizeBytes,
    blocks: 0,
    mtimeMs: Date.now(),
    mode: id === ROOT_ID ? 0o040755 : 0o100444,
    nlink: id === ROOT_ID ? 2 : 1,
    uid: 0,
    gid: 0,
    rdev: 0,
    blksize: 4096,
  })

  return {
    [Opcode.LOOKUP]: (header, body) =>
      header.nodeId === ROOT_ID && cString(body) === FILE_NAME
        ? encodeEntry(FILE_ID, attrOf(FILE_ID), VALID)
        : Errno.ENOENT,
    [Opcode.GETATTR]: (header) => encodeAttr(attrOf(header.nodeId), VALID.attrSec),
    [Opcode.OPEN]: () => encodeOpen(0, FOPEN_KEEP_CACHE),
    [Opcode.READ]: (_header, body) => {
      const { offset, size } = parseRead(body)
      const wanted = Math.max(0, Math.min(size, sizeBytes - offset))
      const parts: Buffer[] = []
      for (let done = 0; done < wanted; ) {
        const from = (offset + done) % PATTERN_BYTES
        const part = pattern.subarray(from, Math.min(PATTERN_BYTES, from + wanted - done))
        parts.push(part)
        done += part.length
      }
      return parts
    },
    [Opcode.RELEASE]: () => [],
    [Opcode.FORGET]: () => undefined,
  }
}
