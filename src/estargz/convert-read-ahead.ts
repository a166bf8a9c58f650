/**
 * Read-ahead for many small files: their content is read a window ahead of the writer,
 * so file opens and reads overlap (on the thread pool) instead of running one by one.
 * A layer of small files otherwise spends most of its time waiting on each open.
 */
import type { SourceEntry } from './tar-source.js'

/** Entries read ahead at once, and the largest file read ahead (bigger ones stream). */
export const READ_AHEAD_ENTRIES = 32
export const READ_AHEAD_MAX_FILE_BYTES = 256 * 1024

interface Slot {
  entry: SourceEntry
  content?: Promise<Buffer>
}

/**
 * Yields `entries` in order; each small regular file comes with its content already
 * read (at most READ_AHEAD_ENTRIES × READ_AHEAD_MAX_FILE_BYTES held at once). A read
 * error surfaces when its entry is reached.
 */
export async function* withReadAhead(entries: SourceEntry[]): AsyncIterable<SourceEntry> {
  const window: Slot[] = []
  let next = 0
  while (next < entries.length || window.length > 0) {
    while (window.length < READ_AHEAD_ENTRIES && next < entries.length)
      window.push(startSlot(entries[next++] as SourceEntry))
    const slot = window.shift() as Slot
    if (slot.content === undefined) {
      yield slot.entry
      continue
    }
    const data = await slot.content
    yield { ...slot.entry, readContent: (pieceBytes) => pieces(data, pieceBytes) }
  }
}

function startSlot(entry: SourceEntry): Slot {
  const isSmall = entry.sizeBytes > 0 && entry.sizeBytes <= READ_AHEAD_MAX_FILE_BYTES
  if (!isSmall) return { entry }
  const content = collect(entry)
  content.catch(() => {}) // awaited when the entry is reached
  return { entry, content }
}

async function collect(entry: SourceEntry): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const piece of entry.readContent(entry.sizeBytes)) parts.push(piece)
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)
}

async function* pieces(data: Buffer, pieceBytes: number): AsyncIterable<Buffer> {
  for (let at = 0; at < data.length; at += pieceBytes) yield data.subarray(at, at + pieceBytes)
}
