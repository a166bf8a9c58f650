import { close, read, writev } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { Logger } from '../../log.js'
import {
  bodyOf,
  encodeInit,
  encodeReplyHeader,
  InitFlag,
  Opcode,
  PROTOCOL_MAJOR,
  parseHeader,
  parseInit,
  type RequestHeader,
} from './protocol.js'

/** Linux errno values, negated as the kernel wants them in a reply. */
export const Errno = {
  ENOENT: -2,
  EINTR: -4,
  EIO: -5,
  EBADF: -9,
  ENOTDIR: -20,
  EISDIR: -21,
  EINVAL: -22,
  EROFS: -30,
  ERANGE: -34,
  ENOSYS: -38,
  ENODATA: -61,
} as const

/**
 * Reply body parts whose memory the handler wants back: `written` runs once the kernel
 * has copied them (or the reply was dropped), so the buffers can be reused.
 */
export interface LentReply {
  parts: readonly Buffer[]
  written(): void
}

/**
 * What a handler answers: reply body parts, a negative errno, or nothing at all (FORGET
 * gets no reply). A handler may answer synchronously: a read served from memory then
 * costs no promise turn.
 */
export type Answer = Buffer | readonly Buffer[] | LentReply | number | undefined
export type Handler = (header: RequestHeader, body: Buffer) => Answer | Promise<Answer>

export interface SessionOptions {
  /** Largest READ the kernel may send, in bytes (a multiple of the page size, ≤ 1 MiB). */
  maxReadBytes: number
  /** Ask for READDIRPLUS: a listing carries each entry's attributes (fewer LOOKUPs). */
  readdirPlus: boolean
  /** Answer EIO when an asynchronous handler has not answered within this many ms. */
  opTimeoutMs: number
  /** Concurrent reads on the device (each holds one libuv thread-pool thread). */
  readers: number
  /** Log every request at debug level. */
  trace: boolean
}

const PAGE_BYTES = 4096
// The kernel refuses a device read smaller than this (FUSE_MIN_READ_BUFFER is 8 KiB; a
// request also carries up to max_write bytes, which this read-only server keeps at 4 KiB).
const REQUEST_BUFFER_BYTES = 64 * 1024
const MAX_WRITE_BYTES = 4096
const MAX_BACKGROUND = 16
const CONGESTION_THRESHOLD = 12
/** How often the requester of an interrupted request is looked at again (see `interrupt`). */
const DYING_CHECK_MS = 500
/** SIGKILL's bit in /proc/PID/status pending-signal masks (a fatal signal is turned into it). */
const SIGKILL_BIT = 1n << 8n

/** An answer still to come, and how to end it early. */
interface PendingAnswer {
  requesterPid: number
  answerNow(errno: number): void
  dyingCheck?: NodeJS.Timeout
}

/**
 * One FUSE connection served from JavaScript straight over /dev/fuse, with no libfuse in
 * between: requests are read on libuv's thread pool, dispatched to `handlers` by opcode
 * and answered with one vectored write each. Speaking the protocol ourselves lets the
 * mount negotiate 1 MiB requests (`max_pages`); libfuse2 caps them at 128 KiB, which
 * held warm reads to about half of what the disk gives. INIT is handled here; any
 * opcode without a handler is answered ENOSYS, which tells the kernel not to ask again.
 */
export class FuseSession {
  private readonly ready: Promise<void>
  private markReady!: () => void
  private ended = false
  // The fd is closed only when no read or write on it is still queued: the number could
  // be reused at once, and a late read would then take another file's bytes for requests.
  private activeReaders = 0
  private closing = false
  private pendingWrites = 0
  private readonly endedPromise: Promise<void>
  private markEnded!: () => void
  private readonly pending = new Map<bigint, PendingAnswer>()

  constructor(
    private readonly fd: number,
    private readonly handlers: Partial<Record<number, Handler>>,
    private readonly options: SessionOptions,
    private readonly log: Logger,
  ) {
    this.ready = new Promise((resolve) => {
      this.markReady = resolve
    })
    this.endedPromise = new Promise((resolve) => {
      this.markEnded = resolve
    })
  }

  /** Starts reading requests; resolves once the kernel's INIT has been answered. */
  start(): Promise<void> {
    for (let i = 0; i < this.options.readers; i++) this.readLoop()
    this.activeReaders = this.options.readers
    return this.ready
  }

  /** Resolves when the connection is gone (unmounted or aborted) and the fd closed. */
  get done(): Promise<void> {
    return this.endedPromise
  }

  private readLoop(): void {
    const buffer = Buffer.allocUnsafe(REQUEST_BUFFER_BYTES)
    const next = (): void => {
      read(this.fd, buffer, 0, buffer.length, null, (err, bytes) => {
        if (err) {
          this.onReadError(err, next)
          return
        }
        // Copied so the buffer can take the next request while a handler awaits.
        const request = Buffer.from(buffer.subarray(0, bytes))
        next()
        this.dispatch(request)
      })
    }
    next()
  }

  private onReadError(err: NodeJS.ErrnoException, retry: () => void): void {
    // EINTR/EAGAIN: a signal or an interrupted request; ENOENT: the request was aborted
    // before it reached us. ENODEV: unmounted or aborted, the session is over.
    if (!this.ended && ['EINTR', 'EAGAIN', 'ENOENT'].includes(err.code ?? '')) {
      retry()
      return
    }
    if (err.code !== 'ENODEV') this.log.warn({ err }, 'fuse device read failed')
    this.activeReaders--
    this.end()
  }

  private end(): void {
    this.ended = true
    if (this.activeReaders > 0 || this.pendingWrites > 0 || this.closing) return
    this.closing = true
    close(this.fd, () => this.markEnded())
  }

  private dispatch(request: Buffer): void {
    const header = parseHeader(request)
    const body = bodyOf(request)
    if (this.options.trace) this.log.debug({ op: header.opcode, node: header.nodeId }, 'fuse op')

    if (header.opcode === Opcode.INIT) {
      this.init(header, body)
      return
    }
    if (header.opcode === Opcode.INTERRUPT) {
      this.interrupt(body.readBigUInt64LE(0))
      return
    }
    const handler = this.handlers[header.opcode]
    if (!handler) {
      this.reply(header.unique, Errno.ENOSYS)
      return
    }

    let answer: Answer | Promise<Answer>
    try {
      answer = handler(header, body)
    } catch (err) {
      this.log.debug({ op: header.opcode, err }, 'fuse op failed')
      this.reply(header.unique, Errno.EIO)
      return
    }
    if (answer instanceof Promise) this.answerLater(header, answer)
    else if (answer !== undefined) this.reply(header.unique, answer)
  }

  private answerLater(header: RequestHeader, pending: Promise<Answer>): void {
    let answered = false
    const answerEarly = (errno: number): void => {
      if (answered) return
      answered = true
      this.forgetPending(header.unique)
      this.reply(header.unique, errno)
    }
    const timer = setTimeout(() => {
      this.log.warn({ op: header.opcode, timeoutMs: this.options.opTimeoutMs }, 'fuse op timed out')
      answerEarly(Errno.EIO)
    }, this.options.opTimeoutMs)
    timer.unref()
    this.pending.set(header.unique, { requesterPid: header.pid, answerNow: answerEarly })

    const finish = (answer: Answer): void => {
      clearTimeout(timer)
      // Answered early already: memory lent for the late answer goes back.
      if (answered && answer !== undefined && isLent(answer)) answer.written()
      if (answered) return
      answered = true
      this.forgetPending(header.unique)
      if (answer !== undefined) this.reply(header.unique, answer)
    }
    pending.then(finish, (err: unknown) => {
      this.log.debug({ op: header.opcode, err }, 'fuse op failed')
      finish(Errno.EIO)
    })
  }

  private forgetPending(unique: bigint): void {
    clearInterval(this.pending.get(unique)?.dyingCheck)
    this.pending.delete(unique)
  }

  /**
   * The kernel interrupts a request when its requester gets a signal. A process being
   * killed cannot exit before its request is answered (it sits in D state), so a dying
   * requester is answered EINTR at once and the work behind the answer goes on (a fetch
   * others may want). Any other signal is left alone: a read of a regular file that
   * returned EINTR would surprise most programs. The first signal may be a harmless one
   * and the kernel interrupts a request only once, so the requester is looked at again
   * until the answer comes. An interrupt for a request already answered is ignored.
   */
  private interrupt(unique: bigint): void {
    const entry = this.pending.get(unique)
    if (entry === undefined || entry.dyingCheck !== undefined) return
    // 0: a requester in a PID namespace this server cannot see into.
    if (entry.requesterPid === 0) return
    const check = (): void => {
      void isDying(entry.requesterPid).then((dying) => {
        if (dying && this.pending.get(unique) === entry) entry.answerNow(Errno.EINTR)
      })
    }
    entry.dyingCheck = setInterval(check, DYING_CHECK_MS)
    entry.dyingCheck.unref()
    check()
  }

  private init(header: RequestHeader, body: Buffer): void {
    const kernel = parseInit(body)
    if (kernel.major !== PROTOCOL_MAJOR) {
      this.log.error({ kernelMajor: kernel.major }, 'fuse protocol version not supported')
      this.reply(header.unique, Errno.EIO)
      return
    }

    const wanted =
      InitFlag.ASYNC_READ |
      InitFlag.MAX_PAGES |
      InitFlag.PARALLEL_DIROPS |
      InitFlag.CACHE_SYMLINKS |
      (this.options.readdirPlus ? InitFlag.DO_READDIRPLUS : 0)
    const reply = encodeInit({
      maxReadahead: Math.min(kernel.maxReadahead, this.options.maxReadBytes),
      flags: kernel.flags & wanted,
      maxBackground: MAX_BACKGROUND,
      congestionThreshold: CONGESTION_THRESHOLD,
      maxWrite: MAX_WRITE_BYTES,
      maxPages: Math.floor(this.options.maxReadBytes / PAGE_BYTES),
    })
    this.reply(header.unique, reply)
    this.log.debug({ kernelMinor: kernel.minor, flags: (kernel.flags & wanted) >>> 0 }, 'fuse init')
    this.markReady()
  }

  private reply(unique: bigint, answer: Exclude<Answer, undefined>): void {
    const lent = isLent(answer) ? answer : undefined
    if (this.ended) {
      lent?.written()
      return
    }
    let parts = partsOf(answer)
    let error = typeof answer === 'number' ? answer : 0
    if (!parts.every((part) => Buffer.isBuffer(part))) {
      // A handler bug: answered EIO rather than thrown here, where it would end the
      // process (and an exiting process waits on its blocked device reads).
      this.log.error({ unique: String(unique) }, 'fuse handler answered with no buffer')
      parts = []
      error = Errno.EIO
    }
    let bodyBytes = 0
    for (const part of parts) bodyBytes += part.length

    this.pendingWrites++
    writev(this.fd, [encodeReplyHeader(unique, error, bodyBytes), ...parts], (err) => {
      this.pendingWrites--
      lent?.written()
      // ENOENT: the request was interrupted and the kernel no longer waits for it.
      if (err && err.code !== 'ENOENT' && err.code !== 'ENODEV')
        this.log.warn({ err }, 'fuse reply failed')
      if (this.ended) this.end()
    })
  }
}

// True when thread `pid` is gone or has SIGKILL pending (what a fatal signal becomes).
async function isDying(pid: number): Promise<boolean> {
  let status: string
  try {
    status = await readFile(`/proc/${pid}/status`, 'utf8')
  } catch {
    return true
  }
  for (const field of ['SigPnd', 'ShdPnd']) {
    const hex = new RegExp(`^${field}:\\s*([0-9a-f]+)$`, 'm').exec(status)?.[1]
    if (hex !== undefined && (BigInt(`0x${hex}`) & SIGKILL_BIT) !== 0n) return true
  }
  return /^State:\s*[XZ]/m.test(status)
}

function isLent(answer: Answer): answer is LentReply {
  return typeof answer === 'object' && !Buffer.isBuffer(answer) && 'written' in answer
}

function partsOf(answer: Exclude<Answer, undefined>): readonly Buffer[] {
  if (typeof answer === 'number') return []
  if (Buffer.isBuffer(answer)) return [answer]
  const parts = isLent(answer) ? answer.parts : answer
  return Array.isArray(parts) ? parts : [parts as unknown as Buffer]
}
