import { EdgestarError } from '../errors.js'
import { isSha256Digest } from './digest.js'
import { cleanEntryName } from './entry-name.js'
import { ESTARGZ_ERRORS } from './error-codes.js'
import type { Footer } from './footer.js'
import {
  type ChunkExtent,
  type LandmarkState,
  NO_PREFETCH_LANDMARK,
  PREFETCH_LANDMARK,
  type TocEntry,
  type TocEntryType,
} from './types.js'

const ENTRY_TYPES: ReadonlySet<string> = new Set([
  'dir',
  'reg',
  'symlink',
  'hardlink',
  'char',
  'block',
  'fifo',
  'chunk',
])

// 2^50 bytes (1 PiB): beyond any real file, well inside exact double arithmetic.
const MAX_SANE_SIZE_BYTES = 2 ** 50
const MAX_SANE_ID = 2 ** 32 - 1
// Upper bounds on how far compressed bytes can inflate: deflate's 1032:1, and zstd's
// RLE blocks (a 3-byte header + 1 byte for up to 128 KiB). A chunk declaring more than
// its compressed range can hold is absurd. The slack covers tiny streams.
const MAX_INFLATE_RATIO = { gzip: 1032, zstd: 131072 / 4 } as const
const INFLATE_SLACK_BYTES = 1024
const BASE64_PATTERN = /^[A-Za-z0-9+/]*={0,2}$/

/** The validated content of a TOC. */
export interface ValidatedToc {
  entries: TocEntry[]
  chunks: ChunkExtent[]
  byName: Map<string, TocEntry>
  chunksByName: Map<string, ChunkExtent[]>
  landmark: LandmarkState
}

/**
 * Validates parsed TOC JSON against the footer's layout and returns the cleaned
 * entries and chunk extents.
 *
 * Duplicate rule: every non-chunk entry name must be unique after cleaning; a repeat is
 * refused with DUPLICATE_NAME (tar would let the later one win, but then the TOC and the
 * tar stream could disagree about what a path holds).
 *
 * Throws TOC_INVALID, ABSURD_SIZE, NAME_ESCAPE, DUPLICATE_NAME, HARDLINK_MISSING,
 * HARDLINK_CYCLE, HARDLINK_TO_DIR, CHUNK_GAP, CHUNK_OVERLAP, OFFSET_OUT_OF_RANGE.
 */
export function validateToc(json: unknown, footer: Footer): ValidatedToc {
  const rawEntries = topLevelEntries(json)
  const entries = rawEntries.map((raw, i) => parseEntry(raw, i))
  attachChunkEntries(entries)
  fillOwnerNames(entries)

  const byName = indexByName(entries)
  checkHardlinks(entries, byName)
  const { chunks, chunksByName } = buildChunks(entries, footer)

  const landmark: LandmarkState = byName.has(PREFETCH_LANDMARK)
    ? 'prefetch'
    : byName.has(NO_PREFETCH_LANDMARK)
      ? 'no-prefetch'
      : 'none'
  return { entries, chunks, byName, chunksByName, landmark }
}

function invalid(message: string): EdgestarError {
  return new EdgestarError(ESTARGZ_ERRORS.TOC_INVALID, message, {
    hint: 'the TOC does not follow the eStargz spec; rebuild the layer',
  })
}

function topLevelEntries(json: unknown): unknown[] {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw invalid('TOC JSON is not an object')
  const toc = json as Record<string, unknown>
  if (toc.version !== 1) throw invalid(`TOC version ${JSON.stringify(toc.version)} is not 1`)
  if (!Array.isArray(toc.entries)) throw invalid('TOC has no "entries" array')
  return toc.entries
}

function parseEntry(raw: unknown, index: number): TocEntry {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw invalid(`TOC entry #${index} is not an object`)
  const r = raw as Record<string, unknown>
  const where = `TOC entry #${index}`

  const type = r.type
  if (typeof type !== 'string' || !ENTRY_TYPES.has(type))
    throw invalid(`${where} has unknown type ${JSON.stringify(type)}`)
  const rawName = optString(r, 'name', where) ?? ''
  const name = type === 'chunk' ? rawName : cleanEntryName(rawName)
  const at = `${where} (${JSON.stringify(name)})`

  const entry: TocEntry = {
    name,
    type: type as TocEntryType,
    size: size(r, 'size', at),
    mode: num(r, 'mode', at, MAX_SANE_ID),
    uid: num(r, 'uid', at, MAX_SANE_ID),
    gid: num(r, 'gid', at, MAX_SANE_ID),
    devMajor: num(r, 'devMajor', at, MAX_SANE_ID),
    devMinor: num(r, 'devMinor', at, MAX_SANE_ID),
    offset: size(r, 'offset', at),
    chunkOffset: size(r, 'chunkOffset', at),
    chunkSize: size(r, 'chunkSize', at),
    innerOffset: size(r, 'innerOffset', at),
  }
  copyOptionalStrings(entry, r, at)
  copyDigestsAndXattrs(entry, r, at)

  if (r.endOffset !== undefined) entry.endOffset = size(r, 'endOffset', at)
  if (r.chunkType === 'zeros') entry.chunkType = 'zeros'
  else if (r.chunkType !== undefined && r.chunkType !== '')
    throw invalid(`${at} has unknown chunkType ${JSON.stringify(r.chunkType)}`)

  if (entry.type === 'hardlink') {
    if (!entry.linkName) throw invalid(`${at} is a hardlink without linkName`)
    entry.linkName = cleanEntryName(entry.linkName, 'hardlink target')
  }
  if (entry.type === 'symlink' && entry.linkName === undefined)
    throw invalid(`${at} is a symlink without linkName`)
  if (entry.type !== 'reg' && entry.type !== 'chunk' && entry.size !== 0)
    throw invalid(`${at} is a ${entry.type} with a size`)
  if (name === '' && entry.type !== 'dir' && entry.type !== 'chunk')
    throw invalid(`${where} names the layer root but is a ${entry.type}`)
  return entry
}

function optString(r: Record<string, unknown>, key: string, where: string): string | undefined {
  const value = r[key]
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') throw invalid(`${where} has a non-string "${key}"`)
  return value
}

function num(r: Record<string, unknown>, key: string, where: string, max: number): number {
  const value = r[key]
  if (value === undefined || value === null) return 0
  if (typeof value !== 'number') throw invalid(`${where} has a non-number "${key}"`)
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.ABSURD_SIZE,
      `${where} has "${key}" ${value}, outside 0..${max}`,
      { hint: 'the TOC is corrupt or hostile; do not use this layer' },
    )
  }
  return value
}

function size(r: Record<string, unknown>, key: string, where: string): number {
  return num(r, key, where, MAX_SANE_SIZE_BYTES)
}

function copyOptionalStrings(entry: TocEntry, r: Record<string, unknown>, at: string): void {
  const modtime = optString(r, 'modtime', at)
  const linkName = optString(r, 'linkName', at)
  const userName = optString(r, 'userName', at)
  const groupName = optString(r, 'groupName', at)
  if (modtime !== undefined) entry.modtime = modtime
  if (linkName !== undefined && linkName !== '') entry.linkName = linkName
  if (userName !== undefined && userName !== '') entry.userName = userName
  if (groupName !== undefined && groupName !== '') entry.groupName = groupName
}

function copyDigestsAndXattrs(entry: TocEntry, r: Record<string, unknown>, at: string): void {
  for (const key of ['digest', 'chunkDigest'] as const) {
    const value = optString(r, key, at)
    if (value === undefined || value === '') continue
    if (!isSha256Digest(value))
      throw invalid(`${at} has a malformed ${key} ${JSON.stringify(value)}`)
    entry[key] = value
  }

  const xattrs = r.xattrs
  if (xattrs === undefined || xattrs === null) return
  if (typeof xattrs !== 'object' || Array.isArray(xattrs)) throw invalid(`${at} has bad xattrs`)
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(xattrs)) {
    if (typeof value !== 'string' || !BASE64_PATTERN.test(value) || value.length % 4 !== 0)
      throw invalid(`${at} has xattr ${JSON.stringify(key)} that is not base64`)
    out[key] = value
  }
  entry.xattrs = out
}

// A chunk entry continues the reg entry before it; it takes that entry's name, as the
// reference reader does.
function attachChunkEntries(entries: TocEntry[]): void {
  let current: TocEntry | undefined
  for (const [i, entry] of entries.entries()) {
    if (entry.type === 'reg') current = entry
    else if (entry.type !== 'chunk') current = undefined
    if (entry.type !== 'chunk') continue
    if (!current) throw invalid(`TOC entry #${i} is a chunk that follows no regular file`)
    entry.name = current.name
  }
}

// `userName`/`groupName` appear only on the first entry with a given uid/gid.
function fillOwnerNames(entries: TocEntry[]): void {
  const users = new Map<number, string>()
  const groups = new Map<number, string>()
  for (const entry of entries) {
    if (entry.type === 'chunk') continue
    if (entry.userName) users.set(entry.uid, entry.userName)
    else if (users.has(entry.uid)) entry.userName = users.get(entry.uid)
    if (entry.groupName) groups.set(entry.gid, entry.groupName)
    else if (groups.has(entry.gid)) entry.groupName = groups.get(entry.gid)
  }
}

function indexByName(entries: TocEntry[]): Map<string, TocEntry> {
  const byName = new Map<string, TocEntry>()
  for (const entry of entries) {
    if (entry.type === 'chunk') continue
    if (byName.has(entry.name)) {
      throw new EdgestarError(
        ESTARGZ_ERRORS.DUPLICATE_NAME,
        `TOC lists ${JSON.stringify(entry.name)} more than once`,
        { hint: 'rebuild the layer from a tar without repeated paths' },
      )
    }
    byName.set(entry.name, entry)
  }
  return byName
}

// Resolves every hardlink to the entry holding its content, refusing missing targets,
// cycles and directories. Each entry is walked once (resolved chains are remembered),
// so a hostile TOC of long chains stays linear.
function checkHardlinks(entries: TocEntry[], byName: Map<string, TocEntry>): void {
  const resolved = new Map<string, TocEntry>()
  for (const entry of entries) {
    if (entry.type !== 'hardlink' || resolved.has(entry.name)) continue
    const chain: TocEntry[] = []
    const onChain = new Set<string>()
    let target: TocEntry = entry
    while (target.type === 'hardlink' && !resolved.has(target.name)) {
      chain.push(target)
      onChain.add(target.name)
      const next = byName.get(target.linkName!)
      if (!next) throw hardlinkError('HARDLINK_MISSING', target, `names missing ${target.linkName}`)
      if (onChain.has(next.name))
        throw hardlinkError('HARDLINK_CYCLE', target, 'is part of a cycle')
      target = next
    }
    const final = resolved.get(target.name) ?? target
    if (final.type === 'dir')
      throw hardlinkError('HARDLINK_TO_DIR', entry, `names directory ${final.name}`)
    for (const link of chain) resolved.set(link.name, final)
  }
  hardlinkTargets.set(byName, resolved)
}

// Final targets per validated name map, so resolveHardlink is one lookup.
const hardlinkTargets = new WeakMap<ReadonlyMap<string, TocEntry>, Map<string, TocEntry>>()

function hardlinkError(
  code: 'HARDLINK_MISSING' | 'HARDLINK_CYCLE' | 'HARDLINK_TO_DIR',
  entry: TocEntry,
  what: string,
): EdgestarError {
  return new EdgestarError(ESTARGZ_ERRORS[code], `hardlink ${JSON.stringify(entry.name)} ${what}`, {
    hint: 'the layer is malformed; rebuild it from a clean tree',
  })
}

/**
 * Resolves a name through hardlinks to the entry that holds the content (a regular
 * file, symlink or special file); undefined when the name is missing or the chain
 * does not end. For a LayerIndex's `byName` this is one lookup.
 */
export function resolveHardlink(
  byName: ReadonlyMap<string, TocEntry>,
  name: string,
): TocEntry | undefined {
  const entry = byName.get(name)
  if (entry?.type !== 'hardlink') return entry
  const known = hardlinkTargets.get(byName)?.get(name)
  if (known) return known

  // A map validateToc did not build: walk, bounded by the map size against cycles.
  let target: TocEntry | undefined = entry
  for (let hops = 0; target?.type === 'hardlink' && hops <= byName.size; hops++)
    target = byName.get(target.linkName!)
  return target?.type === 'hardlink' ? undefined : target
}

function buildChunks(
  entries: TocEntry[],
  footer: Footer,
): { chunks: ChunkExtent[]; chunksByName: Map<string, ChunkExtent[]> } {
  const groups = groupFileChunks(entries)
  const streamEnds = streamEndOffsets(groups, footer)
  const chunks: ChunkExtent[] = []
  const chunksByName = new Map<string, ChunkExtent[]>()

  for (const [file, parts] of groups) {
    checkCoverage(file, parts)
    const extents = parts.map((part) => toExtent(file, part, streamEnds, footer))
    chunks.push(...extents)
    chunksByName.set(file.name, extents)
  }
  return { chunks, chunksByName }
}

// Pairs each regular file with content with its chunk entries (the reg entry itself is
// the first chunk), resolving a chunkSize of 0 to "up to the end of the file".
function groupFileChunks(entries: TocEntry[]): Map<TocEntry, TocEntry[]> {
  const groups = new Map<TocEntry, TocEntry[]>()
  let file: TocEntry | undefined
  for (const entry of entries) {
    if (entry.type === 'reg') {
      file = entry
      if (entry.size > 0) groups.set(entry, [entry])
      continue
    }
    if (entry.type !== 'chunk') continue
    const parts = groups.get(file!)
    if (!parts) throw invalid(`TOC has a chunk for empty file ${JSON.stringify(file!.name)}`)
    parts.push(entry)
  }

  for (const [file, parts] of groups) {
    for (const part of parts) {
      if (part.chunkSize === 0) part.chunkSize = Math.max(0, file.size - part.chunkOffset)
    }
  }
  return groups
}

function checkCoverage(file: TocEntry, parts: TocEntry[]): void {
  let covered = 0
  for (const part of parts) {
    if (part.chunkOffset > covered) throw coverageError('CHUNK_GAP', file, covered, part)
    if (part.chunkOffset < covered || part.chunkSize === 0)
      throw coverageError('CHUNK_OVERLAP', file, covered, part)
    covered += part.chunkSize
  }
  if (covered < file.size) throw coverageError('CHUNK_GAP', file, covered)
  if (covered > file.size) throw coverageError('CHUNK_OVERLAP', file, covered)
}

function coverageError(
  code: 'CHUNK_GAP' | 'CHUNK_OVERLAP',
  file: TocEntry,
  covered: number,
  part?: TocEntry,
): EdgestarError {
  const detail = part
    ? `chunk at ${part.chunkOffset} (+${part.chunkSize}) follows bytes 0..${covered}`
    : `chunks cover ${covered} of ${file.size} bytes`
  const what = code === 'CHUNK_GAP' ? 'leave a gap' : 'overlap'
  return new EdgestarError(
    ESTARGZ_ERRORS[code],
    `chunks of ${JSON.stringify(file.name)} ${what}: ${detail}`,
    { hint: 'the TOC is corrupt; rebuild the layer' },
  )
}

// Each compressed chunk stream runs up to the next distinct stream start or, for the
// last one, up to the TOC (spec: chunks are read up to the next offset).
function streamEndOffsets(groups: Map<TocEntry, TocEntry[]>, footer: Footer): Map<number, number> {
  const starts = new Set<number>()
  for (const parts of groups.values()) {
    for (const part of parts) {
      if (part.chunkType === 'zeros') continue
      if (part.offset >= footer.dataEndOffset) {
        throw new EdgestarError(
          ESTARGZ_ERRORS.OFFSET_OUT_OF_RANGE,
          `chunk of ${JSON.stringify(part.name)} starts at blob offset ${part.offset}, ` +
            `past the data that ends at ${footer.dataEndOffset}`,
          { hint: 'the TOC is corrupt or hostile; do not use this layer' },
        )
      }
      starts.add(part.offset)
    }
  }

  const sorted = [...starts].sort((a, b) => a - b)
  const ends = new Map<number, number>()
  for (const [i, start] of sorted.entries()) ends.set(start, sorted[i + 1] ?? footer.dataEndOffset)
  return ends
}

function toExtent(
  file: TocEntry,
  part: TocEntry,
  streamEnds: Map<number, number>,
  footer: Footer,
): ChunkExtent {
  const extent: ChunkExtent = {
    entryName: file.name,
    chunkOffset: part.chunkOffset,
    chunkSize: part.chunkSize,
    compressedOffset: part.offset,
    compressedSize: 0,
    innerOffset: part.innerOffset,
  }
  if (part.chunkDigest) extent.chunkDigest = part.chunkDigest
  if (part.chunkType === 'zeros') {
    extent.isZeros = true
    return extent
  }

  const end = part.endOffset ?? streamEnds.get(part.offset)!
  if (end <= part.offset || end > footer.dataEndOffset) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.OFFSET_OUT_OF_RANGE,
      `chunk of ${JSON.stringify(file.name)} ends at blob offset ${end}, ` +
        `outside ${part.offset}..${footer.dataEndOffset}`,
      { hint: 'the TOC is corrupt or hostile; do not use this layer' },
    )
  }
  extent.compressedSize = end - part.offset

  const ceiling =
    extent.compressedSize * MAX_INFLATE_RATIO[footer.compression] + INFLATE_SLACK_BYTES
  if (part.innerOffset + part.chunkSize > ceiling) {
    throw new EdgestarError(
      ESTARGZ_ERRORS.ABSURD_SIZE,
      `chunk of ${JSON.stringify(file.name)} declares ${part.chunkSize} bytes but its ` +
        `${extent.compressedSize} compressed bytes cannot hold that many`,
      { hint: 'the TOC is corrupt or hostile; do not use this layer' },
    )
  }
  return extent
}
