/**
 * TOC JSON as the reference writer marshals it (Go json.MarshalIndent with a tab, the
 * TOCEntry struct's field order, every field omitempty, xattr values base64, keys of
 * the xattr map sorted). Readers do not depend on the order; it keeps TOCs comparable.
 */
import type { SourceEntryType } from './tar-source.js'
import { compareBytes } from './writer-tar-header.js'

/** A TOC entry while the layer is written; offsets are filled in as members land. */
export interface TocEntryDraft {
  name: string
  type: SourceEntryType | 'chunk'
  size?: number
  mtimeSec?: number
  linkName?: string
  mode?: number
  uid?: number
  gid?: number
  userName?: string
  groupName?: string
  offset?: number
  devMajor?: number
  devMinor?: number
  xattrs?: ReadonlyMap<string, Buffer>
  digest?: string
  chunkOffset?: number
  chunkSize?: number
  chunkDigest?: string
}

/**
 * Serialises the TOC (version 1) to UTF-8 JSON bytes, entry by entry (what
 * JSON.stringify(toc, null, '\t') gives, without building the whole object first).
 */
export function tocJson(entries: TocEntryDraft[]): Buffer {
  const pieces: Buffer[] = [Buffer.from('{\n\t"version": 1,\n\t"entries": [')]
  let batch: string[] = []
  for (const [i, entry] of entries.entries()) {
    const text = JSON.stringify(toJsonEntry(entry), null, '\t').replace(/\n/g, '\n\t\t')
    batch.push(`${i === 0 ? '' : ','}\n\t\t${text}`)
    if (batch.length >= 1024) {
      pieces.push(Buffer.from(batch.join('')))
      batch = []
    }
  }
  pieces.push(Buffer.from(batch.join('')))
  pieces.push(Buffer.from(entries.length === 0 ? ']\n}' : '\n\t]\n}'))
  return Buffer.concat(pieces)
}

function toJsonEntry(draft: TocEntryDraft): Record<string, unknown> {
  const out: Record<string, unknown> = { name: draft.name, type: draft.type }
  put(out, 'size', draft.size)
  if (draft.mtimeSec) out.modtime = formatModtime(draft.mtimeSec)
  put(out, 'linkName', draft.linkName)
  put(out, 'mode', draft.mode)
  put(out, 'uid', draft.uid)
  put(out, 'gid', draft.gid)
  put(out, 'userName', draft.userName)
  put(out, 'groupName', draft.groupName)
  put(out, 'offset', draft.offset)
  put(out, 'devMajor', draft.devMajor)
  put(out, 'devMinor', draft.devMinor)
  if (draft.xattrs && draft.xattrs.size > 0) {
    const sorted = [...draft.xattrs].sort(([a], [b]) => compareBytes(a, b))
    out.xattrs = Object.fromEntries(sorted.map(([k, v]) => [k, v.toString('base64')]))
  }
  put(out, 'digest', draft.digest)
  put(out, 'chunkOffset', draft.chunkOffset)
  put(out, 'chunkSize', draft.chunkSize)
  put(out, 'chunkDigest', draft.chunkDigest)
  return out
}

// Go's omitempty: zero numbers and empty strings are left out.
function put(out: Record<string, unknown>, key: string, value: string | number | undefined): void {
  if (value === undefined || value === 0 || value === '') return
  out[key] = value
}

// RFC 3339 in UTC, whole seconds (Go: t.UTC().Round(time.Second).Format(time.RFC3339)).
function formatModtime(mtimeSec: number): string {
  return new Date(mtimeSec * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z')
}
