/**
 * Layer order with prioritized files, as the reference converter sorts it (estargz
 * build.go sortEntries/moveRec): each prioritized path moves to the front after its
 * parent directories and, for a hardlink, its target; the rest keep input order.
 * Unlike the reference, a parent directory absent from the input does not make the
 * path "missing": layers often leave directories implicit.
 */
import { cleanEntryName, type SourceEntry } from './tar-source.js'

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
