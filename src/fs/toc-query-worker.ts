/**
 * Worker thread that answers the FUSE view's TOC queries from the SQLite store, so the
 * synchronous better-sqlite3 calls never run on the event loop that serves FUSE.
 * Opens the database read-only (WAL lets it read while the store writes).
 * Protocol: `{ id, op, args }` in, `{ id, result }` or `{ id, error }` out.
 */
import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'
import { isFormatMetaEntry } from '../estargz/index.js'

/** A TOC row as the worker sends it (xattrs still as the stored JSON text). */
export interface WorkerTocRow {
  ord: number
  name: string
  type: string
  size: number
  modtime: string | null
  linkName: string | null
  mode: number
  uid: number
  gid: number
  devMajor: number | null
  devMinor: number | null
  xattrs: string | null
}

/** What the worker learns about a layer once, when the view opens. */
export interface LayerSummary {
  entryCount: number
  contentBytes: number
  /** Hardlink target name → number of hardlinks to it. */
  hardlinks: [string, number][]
  /** Directories the TOC leaves implicit (parents of entries, without an entry). */
  impliedDirs: string[]
  /** Entries with at least one extended attribute. */
  xattrEntries: number
}

/** The chunk of a file that holds a given offset. */
export interface ChunkSpan {
  chunkOffset: number
  chunkSize: number
  /** True when the chunk is in the cache (reading it fetches nothing). */
  isPresent: boolean
}

/** Data a worker is started with. */
export interface TocWorkerData {
  dbPath: string
}

const db = new Database((workerData as TocWorkerData).dbPath, {
  readonly: true,
  fileMustExist: true,
})
db.pragma('busy_timeout = 10000')

const COLUMNS = `ord, name, type, size, modtime, link_name AS linkName, mode, uid, gid,
  dev_major AS devMajor, dev_minor AS devMinor, xattrs`
const byName = db.prepare(`SELECT ${COLUMNS} FROM toc_entries WHERE layer_digest = ? AND name = ?`)
const byParent = db.prepare(
  `SELECT ${COLUMNS} FROM toc_entries WHERE layer_digest = ? AND parent = ? AND name != ''
   ORDER BY base`,
)
const totals = db.prepare(
  `SELECT count(*) AS entryCount, coalesce(sum(CASE WHEN type = 'reg' THEN size END), 0) AS contentBytes,
     count(xattrs) AS xattrEntries
   FROM toc_entries WHERE layer_digest = ?`,
)
const hardlinkCounts = db.prepare(
  `SELECT link_name, count(*) FROM toc_entries WHERE layer_digest = ? AND type = 'hardlink'
   GROUP BY link_name`,
)
const orphanParents = db.prepare(
  `SELECT DISTINCT t.parent FROM toc_entries t WHERE t.layer_digest = ? AND t.parent != ''
   AND NOT EXISTS (SELECT 1 FROM toc_entries d WHERE d.layer_digest = t.layer_digest AND d.name = t.parent)`,
)

// A file's chunks with whether each is cached.
const SPANS = `SELECT lc.chunk_offset AS chunkOffset, lc.chunk_size AS chunkSize,
     coalesce(c.state = 'present', 0) AS isPresent
   FROM layer_chunks lc
   JOIN layer_units u ON u.layer_digest = lc.layer_digest AND u.offset = lc.unit_offset
   LEFT JOIN chunks c ON c.key = u.chunk_key
   WHERE lc.layer_digest = ? AND lc.entry_name = ?`
const chunkAt = db.prepare(
  `${SPANS} AND lc.chunk_offset <= ? ORDER BY lc.chunk_offset DESC LIMIT 1`,
)

const chunksAfter = db.prepare(`${SPANS} AND lc.chunk_offset > ? ORDER BY lc.chunk_offset LIMIT ?`)

type RawSpan = Omit<ChunkSpan, 'isPresent'> & { isPresent: number }
const toSpan = (span: RawSpan): ChunkSpan => ({ ...span, isPresent: span.isPresent === 1 })

const ops: Record<string, (...args: never[]) => unknown> = {
  chunkSpans: (layer: string, name: string, offset: number, limit: number) => {
    const first = chunkAt.get(layer, name, offset) as RawSpan | undefined
    if (first === undefined) return []
    const rest = chunksAfter.all(layer, name, first.chunkOffset, limit - 1) as RawSpan[]
    return [first, ...rest].map(toSpan)
  },
  chunkSpan: (layer: string, name: string, offset: number) => {
    const span = chunkAt.get(layer, name, offset) as
      | (Omit<ChunkSpan, 'isPresent'> & { isPresent: number })
      | undefined
    return span && { ...span, isPresent: span.isPresent === 1 }
  },
  entry: (layer: string, name: string) => visible(byName.get(layer, name) as WorkerTocRow),
  children: (layer: string, dir: string) =>
    (byParent.all(layer, dir) as WorkerTocRow[]).filter((row) => visible(row) !== undefined),
  summary: (layer: string): LayerSummary => {
    const { entryCount, contentBytes, xattrEntries } = totals.get(layer) as LayerSummary
    const hardlinks = hardlinkCounts.raw().all(layer) as [string, number][]
    const implied = new Set<string>()
    for (const parent of orphanParents.pluck().all(layer) as string[]) {
      for (let dir = parent; dir !== ''; dir = dir.slice(0, Math.max(0, dir.lastIndexOf('/')))) {
        if (implied.has(dir) || byName.get(layer, dir)) break
        implied.add(dir)
      }
    }
    return { entryCount, contentBytes, hardlinks, impliedDirs: [...implied], xattrEntries }
  },
}

/** Hides the format's own entries (landmarks, the TOC) at the layer root. */
function visible(row: WorkerTocRow | undefined): WorkerTocRow | undefined {
  if (row === undefined || row.type === 'chunk') return undefined
  return isFormatMetaEntry(row.name) ? undefined : row
}

parentPort?.on('message', (message: { id: number; op: string; args: never[] }) => {
  try {
    const op = ops[message.op]
    if (!op) throw new Error(`unknown TOC query ${message.op}`)
    parentPort?.postMessage({ id: message.id, result: op(...message.args) })
  } catch (err) {
    parentPort?.postMessage({ id: message.id, error: String(err) })
  }
})
