// Types for the parts of fuse-native 2.2.6 (CommonJS, no bundled types) that src/fs uses.
declare module 'fuse-native' {
  type Callback = (code: number, ...values: unknown[]) => void

  interface FuseOptions {
    debug?: boolean
    force?: boolean
    mkdir?: boolean
    allowOther?: boolean
    defaultPermissions?: boolean
    kernelCache?: boolean
    autoCache?: boolean
    entryTimeout?: number
    attrTimeout?: number
    maxRead?: number
    fsname?: string
    subtype?: string
    /** Milliseconds before fuse-native answers an op with ETIMEDOUT; false for none. */
    timeout?: number | false | Record<string, number | false>
  }

  class Fuse {
    constructor(mountpoint: string, ops: Record<string, unknown>, options?: FuseOptions)
    mount(cb: (err: Error | null) => void): void
    unmount(cb: (err: Error | null) => void): void
    static unmount(mountpoint: string, cb: (err: Error | null) => void): void
    static ENOENT: number
    static EIO: number
    static EROFS: number
    static ENOTDIR: number
    static EISDIR: number
    static ENODATA: number
    static EINVAL: number
  }

  export default Fuse
  export type { Callback, FuseOptions }
}
