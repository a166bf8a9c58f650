/**
 * How long the event loop that serves a mount is blocked while the image is pulled: the
 * Debian rootfs image (one 62 MiB eStargz layer, built by `bench/fuse.sh`) is mounted from a
 * loopback registry in a fresh state directory, a child process reads files of it through
 * the mount once (those of at least 32 KiB in path order until 20 MiB are passed, about
 * 25 MB; fetched on demand), then keeps re-reading them, 5 ms apart (page cache dropped per
 * file with posix_fadvise, so every read reaches FUSE), while this process pulls the rest
 * of the image with no cap. Printed per round, as JSON lines:
 * - the pull: seconds and background MB/s;
 * - the event-loop delay (`monitorEventLoopDelay`, 1 ms resolution, which is subtracted):
 *   p50, p99, max;
 * - time the loop spent inside better-sqlite3 calls (every statement run, get, all and
 *   iterate step on this thread, transactions' BEGIN and COMMIT included): calls, total,
 *   longest; and the longest of the COMMITs alone;
 * - messages this thread posted to worker threads (`postMessage` calls and their time);
 * - the process's resident memory once the pull is done;
 * - the child's re-reads (whole files through the mount): p50, p99, max ms per file.
 *
 * Run: `bash bench/loop-block.sh [OTHER_CHECKOUT]` (with another checkout, built first, its
 * rounds alternate with this one's). Env: BENCH_ROUNDS (default 3), EDGESTAR_CACHE_DIR.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { Worker } from 'node:worker_threads'
import { RegistryClient } from '../src/registry/index.js'
import { pushTestImage, type TestLayer } from '../test/helpers/images.js'
import { mountImageFromRegistry } from '../test/helpers/mount.js'
import { startRegistry } from '../test/helpers/registry-server.js'
import { READER, timeMainThreadSql } from './loop-probes.js'

const CACHE_DIR = resolve(process.env.EDGESTAR_CACHE_DIR ?? '.cache')
/** The child reads files until it has passed this many bytes. */
const READ_SET_BYTES = 20 << 20

/** Time spent in better-sqlite3 calls on this thread. */
interface SqliteTime {
  calls: number
  totalMs: number
  maxMs: number
  maxCommitMs: number
  maxSql: string
}

const sqlite: SqliteTime = { calls: 0, totalMs: 0, maxMs: 0, maxCommitMs: 0, maxSql: '' }
/** Messages this thread posted to worker threads, and the time posting took. */
const posted = { messages: 0, totalMs: 0 }
/** Calls and milliseconds per statement (its first 60 characters). */
const bySql = new Map<string, { calls: number; totalMs: number; maxMs: number }>()
let isCounting = false

// Totals and the slowest statement, per statement too (its first 60 characters).
function instrumentSqlite(): void {
  const count = (source: string, ms: number): void => {
    if (!isCounting) return
    const key = source.replace(/\s+/g, ' ').slice(0, 60)
    const entry = bySql.get(key) ?? { calls: 0, totalMs: 0, maxMs: 0 }
    entry.calls++
    entry.totalMs += ms
    entry.maxMs = Math.max(entry.maxMs, ms)
    bySql.set(key, entry)
    sqlite.calls++
    sqlite.totalMs += ms
    if (ms > sqlite.maxMs) {
      sqlite.maxMs = ms
      sqlite.maxSql = source.replace(/\s+/g, ' ').slice(0, 60)
    }
    if (/^COMMIT/i.test(source)) sqlite.maxCommitMs = Math.max(sqlite.maxCommitMs, ms)
  }
  timeMainThreadSql(count)
}

function instrumentPostMessage(): void {
  const original = Worker.prototype.postMessage
  Worker.prototype.postMessage = function (
    this: Worker,
    ...args: Parameters<Worker['postMessage']>
  ) {
    const started = performance.now()
    try {
      return original.apply(this, args)
    } finally {
      if (isCounting) {
        posted.messages++
        posted.totalMs += performance.now() - started
      }
    }
  }
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!
}

const round = (ms: number): number => Math.round(ms * 100) / 100

async function runRound(ref: string): Promise<Record<string, unknown>> {
  const stateDir = await mkdtemp(join(tmpdir(), 'edgestar-bench-loop-'))
  const stack = await mountImageFromRegistry(stateDir, ref)
  const child = spawn('python3', ['-c', READER, stack.mount.dir, String(READ_SET_BYTES)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  try {
    let out = ''
    child.stdout.on('data', (data: Buffer) => {
      out += data.toString()
    })
    const lines = async (n: number): Promise<string[]> => {
      while (out.split('\n').length <= n) {
        if (child.exitCode !== null) throw new Error(`reader exited with ${child.exitCode}`)
        await new Promise((done) => setTimeout(done, 20))
      }
      return out.split('\n')
    }
    const readSet = JSON.parse((await lines(1))[0]!) as { files: number; bytes: number }
    console.error(`read set fetched: ${readSet.files} files, ${readSet.bytes} bytes`)

    const delay = monitorEventLoopDelay({ resolution: 1 })
    Object.assign(sqlite, { calls: 0, totalMs: 0, maxMs: 0, maxCommitMs: 0, maxSql: '' })
    bySql.clear()
    Object.assign(posted, { messages: 0, totalMs: 0 })
    const before = stack.scheduler.stats().backgroundBytes
    isCounting = true
    delay.enable()
    const started = performance.now()
    const progress = setInterval(() => {
      const s = stack.scheduler.stats()
      console.error(`pulling: ${s.backgroundBytes - before} bytes, ${s.units} units`)
    }, 10_000)
    await stack.images
      .pull(stack.image, { priority: 'background' })
      .finally(() => clearInterval(progress))
    const pullMs = performance.now() - started
    delay.disable()
    isCounting = false
    const pulledBytes = stack.scheduler.stats().backgroundBytes - before

    child.stdin.end()
    const reads = JSON.parse((await lines(2))[1]!) as number[]
    return {
      pullSec: round(pullMs / 1000),
      pullMBps: round(pulledBytes / 1e6 / (pullMs / 1000)),
      loopDelayMs: {
        p50: round(delay.percentile(50) / 1e6 - 1),
        p99: round(delay.percentile(99) / 1e6 - 1),
        max: round(delay.max / 1e6 - 1),
      },
      sqliteOnLoop: {
        calls: sqlite.calls,
        totalMs: round(sqlite.totalMs),
        maxMs: round(sqlite.maxMs),
        maxCommitMs: round(sqlite.maxCommitMs),
        longest: sqlite.maxSql,
        top: [...bySql]
          .sort((a, b) => b[1].totalMs - a[1].totalMs)
          .slice(0, 8)
          .map(([sql, t]) => ({
            sql,
            calls: t.calls,
            totalMs: round(t.totalMs),
            maxMs: round(t.maxMs),
          })),
      },
      postMessage: { messages: posted.messages, totalMs: round(posted.totalMs) },
      rssMiB: round(process.memoryUsage().rss / 2 ** 20),
      reReadMsPerFile: {
        files: readSet.files,
        reads: reads.length,
        p50: round(percentile(reads, 50)),
        p99: round(percentile(reads, 99)),
        max: round(Math.max(0, ...reads)),
      },
    }
  } finally {
    child.kill()
    await stack.close()
    await rm(stateDir, { recursive: true, force: true })
  }
}

instrumentSqlite()
instrumentPostMessage()
const blobPath = join(CACHE_DIR, 'bench-fuse', 'rootfs.estargz')
const layer = JSON.parse(await readFile(`${blobPath}.json`, 'utf8')) as TestLayer
const server = await startRegistry()
try {
  const ref = `${server.host}/bench/rootfs:v1`
  const pusher = new RegistryClient({ dockerConfigPath: null })
  await pushTestImage(pusher, ref, [{ ...layer, blob: await readFile(blobPath) }])
  await pusher.close()
  const result = await runRound(ref)
  const line = JSON.stringify({ checkout: resolve('.'), ...result })
  console.log(line)
  if (process.env.BENCH_OUT) await writeFile(process.env.BENCH_OUT, `${line}\n`, { flag: 'a' })
} finally {
  await server.stop()
}
