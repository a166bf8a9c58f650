import type { LayerEntry } from './image-view.js'

/** A directory the TOC leaves implicit, presented the way tar would create it. */
export function impliedDir(name: string, id: number): LayerEntry {
  return {
    id,
    name,
    type: 'dir',
    mode: 0o755,
    uid: 0,
    gid: 0,
    sizeBytes: 0,
    mtimeMs: 0,
    linkName: '',
    devMajor: 0,
    devMinor: 0,
    xattrs: {},
    nlink: 1,
  }
}

/** The directory part of a normalised name (`''` for a name at the root). */
export function parentOf(name: string): string {
  const slash = name.lastIndexOf('/')
  return slash < 0 ? '' : name.slice(0, slash)
}

/** TOC xattrs (base64 values) as raw bytes. */
export function decodeXattrs(
  xattrs: Record<string, string> | null | undefined,
): Record<string, Buffer> {
  const decoded: Record<string, Buffer> = {}
  for (const [key, value] of Object.entries(xattrs ?? {}))
    decoded[key] = Buffer.from(value, 'base64')
  return decoded
}

/** A TOC `modtime` (RFC 3339) in milliseconds; 0 when absent or unreadable. */
export function modtimeMs(modtime: string | null | undefined): number {
  const ms = modtime ? Date.parse(modtime) : 0
  return Number.isFinite(ms) ? ms : 0
}
