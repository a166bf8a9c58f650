import Database from 'better-sqlite3'

/**
 * Calls `count` with the SQL and the milliseconds of every better-sqlite3 statement step
 * this thread runs, on any connection: `run`, `get` and `all` whole, an iterator row by
 * row. Statements are the one door into SQLite (pragmas and the BEGIN/COMMIT of
 * transactions pass through them too); the store's threads load their own module copies
 * and are not seen, so what this times is SQLite on the event loop.
 */
export function timeMainThreadSql(count: (source: string, ms: number) => void): void {
  const probe = new Database(':memory:')
  const proto = Object.getPrototypeOf(probe.prepare('SELECT 1')) as Record<string, unknown>
  probe.close()
  for (const method of ['run', 'get', 'all']) {
    const original = proto[method] as (...args: unknown[]) => unknown
    proto[method] = function (this: { source: string }, ...args: unknown[]) {
      const started = performance.now()
      try {
        return original.apply(this, args)
      } finally {
        count(this.source, performance.now() - started)
      }
    }
  }
  const iterate = proto.iterate as (...args: unknown[]) => Iterator<unknown>
  proto.iterate = function (this: { source: string }, ...args: unknown[]) {
    const it = iterate.apply(this, args)
    const source = this.source
    const next = it.next.bind(it)
    it.next = () => {
      const started = performance.now()
      try {
        return next()
      } finally {
        count(source, performance.now() - started)
      }
    }
    return it
  }
}

/**
 * A Python reader for a mount: picks the files of at least 32 KiB under argv[1], in path
 * order, up to argv[2] bytes; reads them once (fetching them) and prints
 * `{"files", "bytes"}`; then reads them again and again, each with its page cache dropped,
 * until stdin closes (5 ms apart), and prints the milliseconds of each re-read as a JSON list.
 */
export const READER = `
import json, os, sys, threading, time
root, budget = sys.argv[1], int(sys.argv[2])
files = []
for d, _, names in os.walk(root):
    for n in sorted(names):
        p = os.path.join(d, n)
        if os.path.islink(p) or not os.path.isfile(p): continue
        s = os.path.getsize(p)
        if s >= 32768: files.append((p, s))
files.sort()
chosen, total = [], 0
for p, s in files:
    if total >= budget: break
    chosen.append(p); total += s
def read(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while os.read(fd, 1 << 20): pass
    finally:
        os.close(fd)
for p in chosen: read(p)
print(json.dumps({'files': len(chosen), 'bytes': total}), flush=True)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
times = []
while not stop.is_set():
    for p in chosen:
        t = time.perf_counter(); read(p); times.append((time.perf_counter() - t) * 1000)
        if stop.is_set(): break
        time.sleep(0.005)
print(json.dumps(times), flush=True)
`
