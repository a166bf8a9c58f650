import crypto from 'node:crypto'
import { syncBuiltinESMExports } from 'node:module'
import zlib from 'node:zlib'
import zstd from 'zstd-napi'
import zstdBinding from 'zstd-napi/binding.js'

/** What `countMainThreadDecoding` saw, and how to put the wrapped functions back. */
export interface DecodingCounter {
  /** Names of the functions called on this thread, in call order. */
  seen: string[]
  restore(): void
}

const ZLIB_DECODERS = ['gunzipSync', 'gunzip', 'inflateSync', 'inflate', 'unzipSync', 'unzip']
const ZLIB_STREAM_DECODERS = [zlib.Gunzip, zlib.Inflate, zlib.InflateRaw, zlib.Unzip]

/**
 * Records every call on this thread of the functions that inflate or hash layer bytes
 * (zlib's decoders, one-shot and streaming; sha256; zstd-napi's decoders, whose
 * streams and one-shot calls all make a DCtx) until `restore`. Worker threads load module
 * instances of their own, which this leaves alone: a call there is not counted.
 */
export function countMainThreadDecoding(): DecodingCounter {
  const seen: string[] = []
  const undo: (() => void)[] = []
  const wrap = (owner: object, name: string): void => {
    const target = owner as Record<string, unknown>
    const original = target[name] as (...args: unknown[]) => unknown
    target[name] = function (this: unknown, ...args: unknown[]) {
      seen.push(name)
      return original.apply(this, args)
    }
    undo.push(() => {
      target[name] = original
    })
  }
  for (const name of ZLIB_DECODERS) wrap(zlib, name)
  wrapZlibStreams(seen, undo)
  wrap(crypto, 'createHash')
  wrap(zstd.Decompressor.prototype, 'decompress')
  const DCtx = zstdBinding.DCtx
  zstdBinding.DCtx = class extends DCtx {
    constructor() {
      super()
      seen.push('DCtx')
    }
  }
  undo.push(() => {
    zstdBinding.DCtx = DCtx
  })

  // ESM imports of built-in modules see the wrapped functions only after this.
  syncBuiltinESMExports()
  return {
    seen,
    restore: () => {
      for (const step of undo.splice(0)) step()
      syncBuiltinESMExports()
    },
  }
}

// `createGunzip` and its kin cannot be reassigned; every zlib stream, theirs included,
// runs its input through the shared base prototype's `_transform`.
function wrapZlibStreams(seen: string[], undo: (() => void)[]): void {
  const base = Object.getPrototypeOf(Object.getPrototypeOf(zlib.Gunzip.prototype)) as {
    _transform: (...args: unknown[]) => unknown
  }
  const original = base._transform
  base._transform = function (this: unknown, ...args: unknown[]) {
    if (ZLIB_STREAM_DECODERS.some((kind) => this instanceof kind)) seen.push('zlib stream')
    return original.apply(this, args)
  }
  undo.push(() => {
    base._transform = original
  })
}
