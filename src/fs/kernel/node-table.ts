import { ROOT_NODE_ID } from './protocol.js'

/** Extended attributes by name (raw values), as the view gives them. */
export type Xattrs = Readonly<Record<string, Buffer>>

interface NodeRecord {
  path: string
  lookups: number
  /** Unset when the node has none (most have none; the object is not kept then). */
  xattrs?: Xattrs
}

const NO_XATTRS: Xattrs = Object.freeze({})

/**
 * The node ids the kernel knows, each naming a path of the (immutable) view. The kernel
 * counts how often it was given an id (every LOOKUP answer and READDIRPLUS entry) and
 * forgets ids with the same counts; an id is dropped when its count reaches zero. The
 * root is id 1 and never dropped. A path keeps its id while the kernel holds it, so the
 * table stays as small as the kernel's inode cache. Each id also keeps its node's
 * extended attributes: the kernel caches none, and `ls -l` asks for two of every file.
 */
export class NodeTable {
  private readonly byId = new Map<number, NodeRecord>()
  private readonly byPath = new Map<string, number>()
  private nextId = ROOT_NODE_ID + 1

  /** The view path of `nodeId`, or undefined when the kernel already forgot it. */
  pathOf(nodeId: number): string | undefined {
    if (nodeId === ROOT_NODE_ID) return ''
    return this.byId.get(nodeId)?.path
  }

  /**
   * The extended attributes remembered with `nodeId`; undefined for the root (never
   * remembered) and for an id the kernel already forgot.
   */
  xattrsOf(nodeId: number): Xattrs | undefined {
    const record = this.byId.get(nodeId)
    return record && (record.xattrs ?? NO_XATTRS)
  }

  /**
   * The id for `path`, counting one more reference the kernel now holds. `xattrs` are
   * the node's (the view is immutable, so a known path keeps those it has).
   */
  remember(path: string, xattrs: Xattrs = NO_XATTRS): number {
    if (path === '') return ROOT_NODE_ID
    const known = this.byPath.get(path)
    if (known !== undefined) {
      this.byId.get(known)!.lookups++
      return known
    }
    const id = this.nextId++
    const hasXattrs = Object.keys(xattrs).length > 0
    this.byId.set(id, hasXattrs ? { path, lookups: 1, xattrs } : { path, lookups: 1 })
    this.byPath.set(path, id)
    return id
  }

  /** The kernel dropped `count` references to `nodeId`. */
  forget(nodeId: number, count: number): void {
    const record = this.byId.get(nodeId)
    if (!record) return
    record.lookups -= count
    if (record.lookups > 0) return
    this.byId.delete(nodeId)
    this.byPath.delete(record.path)
  }

  /** Ids currently held by the kernel (the root not counted). */
  get size(): number {
    return this.byId.size
  }
}

/** The path of `name` inside directory `parent` (`''` is the root). */
export function childPath(parent: string, name: string): string {
  return parent === '' ? name : `${parent}/${name}`
}

/** The directory holding `path` (`''` for the root's children and the root itself). */
export function parentPath(path: string): string {
  const slash = path.lastIndexOf('/')
  return slash < 0 ? '' : path.slice(0, slash)
}
