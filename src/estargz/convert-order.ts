/**
 * Layer order with prioritized files, as the reference converter sorts it (estargz
 * build.go sortEntries/moveRec): each prioritized path moves to the front after its
 * parent directories and, for a hardlink, its target; the rest keep input order.
 * Unlike the reference, a parent directory absent from the input does not make the
 * path "missing": layers often leave directories implicit.
 */
import { EdgestarError } from '../errors.js'
import { CONVERT_ERRORS } from './convert-errors.js'
import { cleanEntryName, type SkippedEntry, type SourceEntry } from './tar-source.js'
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, TOC_TAR_NAME } from './types.js'

const FORMAT_NAMES = new Set([PREFETCH_LANDMARK, NO_PREFETCH_LANDMARK, TOC_TAR_NAME])

// The TOC's modtime is RFC 3339 with a four-digit year (0001-01-01 to 9999-12-31).
const MIN_MTIME_SEC = -62_135_596_800
const MAX_MTIME_SEC = 253_402_300_799

/**
 * The input entries a layer can carry: names the format adds itself (landmarks, the
 * TOC) are dropped, as the reference converter drops them, with `warn` and a row in
 * `skipped`; an mtime outside years 1 to 9999 (a PAX mtime can say anything) is
 * clamped into that range, with `warn`. Throws HARDLINK_MISSING for a hardlink whose
 * target is not in the input: a reader would refuse the layer.
 */
export function layerEntries(
  entries: SourceEntry[],
  warn: (message: string) => void,
  skipped: SkippedEntry[] = [],
): SourceEntry[] {
  const kept = entries.flatMap((entry) => {
    if (FORMAT_NAMES.has(cleanEntryName(entry.name))) {
      const reason = 'the converter writes that entry itself'
      skipped.push({ path: entry.name, reason })
      warn(`dropped "${entry.name}": ${reason}`)
      return []
    }
    return [clampMtime(entry, warn)]
  })
  const names = new Set(kept.map((entry) => cleanEntryName(entry.name)))
  for (const entry of kept) {
    if (entry.type !== 'hardlink' || names.has(cleanEntryName(entry.linkName))) continue
    throw new EdgestarError(
      CONVERT_ERRORS.HARDLINK_MISSING,
      `hardlink "${entry.name}" points at "${entry.linkName}", which is not in the input`,
      { hint: 'the input is incomplete; produce it again with the link target included' },
    )
  }
  return kept
}

function clampMtime(entry: SourceEntry, warn: (message: string) => void): SourceEntry {
  const mtimeSec = Number.isFinite(entry.mtimeSec)
    ? Math.min(Math.max(entry.mtimeSec, MIN_MTIME_SEC), MAX_MTIME_SEC)
    : 0
  if (mtimeSec === entry.mtimeSec) return entry
  warn(
    `"${entry.name}" has mtime ${entry.mtimeSec}, outside years 1 to 9999; ` +
      `written as ${new Date(mtimeSec * 1000).toISOString()}`,
  )
  return { ...entry, mtimeSec }
}

const MAX_DEPTH = 4096

/** Entries split around the landmark, plus prioritized paths that were not found. */
export interface LayerOrder {
  prioritized: SourceEntry[]
  rest: SourceEntry[]
  missed: string[]
}

/** Orders `entries` (input order) so that `prioritizedPaths` come first. */
export function orderEntries(entries: SourceEntry[], prioritizedPaths: string[]): LayerOrder {
  const byName = new Map<string, SourceEntry>()
  for (const entry of entries) byName.set(cleanEntryName(entry.name), entry)
  const moved = new Set<SourceEntry>()
  const prioritized: SourceEntry[] = []
  const missed: string[] = []

  // depth bounds parent chains and hardlink cycles (a reader rejects those; we just stop).
  const move = (name: string, depth: number): boolean => {
    if (depth > MAX_DEPTH) return false
    const entry = byName.get(name)
    if (entry !== undefined && moved.has(entry)) return true
    if (name !== '') {
      const slash = name.lastIndexOf('/')
      move(slash < 0 ? '' : name.slice(0, slash), depth + 1)
    }
    if (entry === undefined) return false
    if (entry.type === 'hardlink' && !move(cleanEntryName(entry.linkName), depth + 1)) return false
    if (moved.has(entry)) return true
    moved.add(entry)
    prioritized.push(entry)
    return true
  }

  for (const path of prioritizedPaths) {
    const name = cleanEntryName(path)
    if (name === '' || !move(name, 0)) missed.push(path)
  }
  return { prioritized, rest: entries.filter((e) => !moved.has(e)), missed }
}
