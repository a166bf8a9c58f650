/**
 * Helpers of the converter tests: the reference `refgen` (built once, cached), a
 * listing of a source tree and of a converted layer in one comparable shape, and a
 * cache for expensive conversions keyed by their inputs.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { lstat, mkdir, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import {
  type ConvertOptions,
  type ConvertResult,
  cleanEntryName,
  convertLayer,
  FileReader,
  type LayerIndex,
  openLayer,
  readFileRange,
} from '../../src/estargz/index.js'

const run = promisify(execFile)

/** The cache directory tests share (scripts/test.sh exports it). */
export const CACHE_DIR = resolve(process.env.EDGESTAR_CACHE_DIR ?? '.cache')

/** One entry as both sides can describe it. */
export interface ComparableEntry {
  type: string
  mode: number
  uid: number
  gid: number
  size: number
  sha256?: string
  link?: string
  devMajor?: number
  devMinor?: number
  xattrs?: Record<string, string>
}

let refgen: Promise<string | undefined> | undefined

/**
 * Path of the reference `refgen`, built into CACHE_DIR/reference on first use; undefined
 * (with the reason on stderr) when the build fails, so interop tests can skip clearly.
 */
export function refgenPath(): Promise<string | undefined> {
  refgen ??= (async () => {
    const outDir = join(CACHE_DIR, 'reference')
    const binary = join(outDir, 'refgen')
    if (existsSync(binary)) return binary
    try {
      await run('bash', ['/work/shared/tools/reference/build.sh', outDir], { timeout: 600_000 })
      return existsSync(binary) ? binary : undefined
    } catch (err) {
      process.stderr.write(`refgen build failed: ${(err as Error).message}\n`)
      return undefined
    }
  })()
  return refgen
}

/** What `refgen verify` prints. */
export interface RefgenReport {
  ok: boolean
  format: string
  tocDigest: string
  diffID: string
  entries: number
  files: number
  errors: string[]
  differences: string[]
}

/** Runs `refgen verify -blob F -toc-digest D [-against DIR]` and parses its report. */
export async function refgenVerify(
  binary: string,
  blob: string,
  tocDigest: string,
  against?: string,
): Promise<RefgenReport> {
  const args = ['verify', '-blob', blob, '-toc-digest', tocDigest]
  if (against !== undefined) args.push('-against', against)
  const result = await run(binary, args, { maxBuffer: 64 << 20 }).catch(
    (err: { stdout?: string }) => ({ stdout: err.stdout ?? '{}' }),
  )
  return JSON.parse(result.stdout) as RefgenReport
}

/**
 * Lists a directory tree the way a layer should describe it: cleaned names (root ''),
 * hardlinks by inode (first name in walk order is the target), content sha256.
 */
export async function listTree(root: string): Promise<Map<string, ComparableEntry>> {
  const out = new Map<string, ComparableEntry>()
  const inodes = new Map<string, string>()
  const visit = async (path: string, name: string): Promise<void> => {
    const st = await lstat(path)
    if (st.isSocket()) return
    const entry: ComparableEntry = {
      type: st.isDirectory()
        ? 'dir'
        : st.isFile()
          ? 'reg'
          : st.isSymbolicLink()
            ? 'symlink'
            : st.isFIFO()
              ? 'fifo'
              : st.isCharacterDevice()
                ? 'char'
                : 'block',
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      size: st.isFile() ? st.size : 0,
    }
    if (entry.type === 'symlink') entry.link = await readlink(path)
    if (entry.type === 'char' || entry.type === 'block') {
      entry.devMajor = ((st.rdev >> 8) & 0xfff) | (Math.floor(st.rdev / 2 ** 32) & ~0xfff)
      entry.devMinor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)
    }
    if (entry.type === 'reg') {
      const key = `${st.dev}:${st.ino}`
      const first = inodes.get(key)
      if (st.nlink > 1 && first !== undefined) {
        out.set(name, { ...entry, type: 'hardlink', size: 0, link: first })
        return
      }
      inodes.set(key, name)
      entry.sha256 = createHash('sha256')
        .update(await readFile(path))
        .digest('hex')
    }
    out.set(name, entry)
    if (!st.isDirectory()) return
    const children = (await readdir(path, { encoding: 'buffer' })).sort(Buffer.compare)
    for (const child of children.map((c) => c.toString())) {
      await visit(join(path, child), name === '' ? child : `${name}/${child}`)
    }
  }
  await visit(root, '')
  return out
}

/**
 * Opens a converted blob with the project's reader (TOC digest checked), reads every
 * regular file through its chunks (each chunk verified) and lists it like listTree.
 */
export async function listLayer(
  blob: string,
  tocDigest: string,
): Promise<{ index: LayerIndex; entries: Map<string, ComparableEntry> }> {
  const reader = await FileReader.open(blob)
  try {
    const index = await openLayer(reader, { tocDigest })
    const entries = new Map<string, ComparableEntry>()
    for (const e of index.entries) {
      if (e.type === 'chunk') continue
      const name = cleanEntryName(e.name)
      if (name === '.prefetch.landmark' || name === '.no.prefetch.landmark') continue
      const entry: ComparableEntry = {
        type: e.type,
        mode: e.mode & 0o7777,
        uid: e.uid,
        gid: e.gid,
        size: e.type === 'reg' ? e.size : 0,
      }
      if (e.type === 'symlink' || e.type === 'hardlink') entry.link = e.linkName
      if (e.type === 'char' || e.type === 'block') {
        entry.devMajor = e.devMajor
        entry.devMinor = e.devMinor
      }
      if (e.type === 'reg') {
        const data = await readFileRange(reader, index, name)
        entry.sha256 = createHash('sha256').update(data).digest('hex')
      }
      entries.set(name, entry)
    }
    return { index, entries }
  } finally {
    await reader.close()
  }
}

/** Every difference between two listings, as readable lines (empty when equal). */
export function diffListings(
  expected: Map<string, ComparableEntry>,
  actual: Map<string, ComparableEntry>,
): string[] {
  const problems: string[] = []
  for (const [name, want] of expected) {
    const got = actual.get(name)
    if (got === undefined) problems.push(`${name}: missing from the layer`)
    else if (JSON.stringify(got) !== JSON.stringify(want))
      problems.push(`${name}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`)
  }
  for (const name of actual.keys())
    if (!expected.has(name)) problems.push(`${name}: only in the layer`)
  return problems
}

/** A cheap fingerprint of a tree: names, types, sizes and mtimes of every entry. */
export async function treeFingerprint(root: string): Promise<string> {
  const hash = createHash('sha256')
  const visit = async (path: string, name: string): Promise<void> => {
    const st = await lstat(path)
    hash.update(`${name}\0${st.mode}\0${st.size}\0${st.mtimeMs}\0${st.uid}:${st.gid}\n`)
    if (!st.isDirectory()) return
    const children = (await readdir(path)).sort()
    for (const child of children) await visit(join(path, child), `${name}/${child}`)
  }
  await visit(root, '')
  return hash.digest('hex')
}

// The converter's own compiled code is part of the cache key: a change re-converts.
async function converterFingerprint(): Promise<string> {
  const dir = new URL('../../src/estargz/', import.meta.url)
  const names = (await readdir(dir)).filter(
    (n) => /^(convert|writer|tar-source)/.test(n) && n.endsWith('.js'),
  )
  const hash = createHash('sha256')
  for (const name of names.sort()) hash.update(await readFile(new URL(name, dir)))
  return hash.digest('hex')
}

/**
 * Converts `input` once per distinct (tree, options, converter build) and caches the
 * blob and its result under CACHE_DIR/convert; later runs reuse both.
 */
export function cachedConvert(
  input: string,
  options: ConvertOptions,
): Promise<{ blob: string; result: ConvertResult; cached: boolean }> {
  const memoKey = JSON.stringify([input, options])
  let pending = converted.get(memoKey)
  if (pending === undefined) {
    pending = convertOnce(input, options)
    converted.set(memoKey, pending)
  }
  return pending
}

const converted = new Map<
  string,
  Promise<{ blob: string; result: ConvertResult; cached: boolean }>
>()

async function convertOnce(
  input: string,
  options: ConvertOptions,
): Promise<{ blob: string; result: ConvertResult; cached: boolean }> {
  const inputKey = createHash('sha256')
    .update(await treeFingerprint(input))
    .update(JSON.stringify(options))
    .digest('hex')
    .slice(0, 16)
  const key = `${inputKey}-${(await converterFingerprint()).slice(0, 16)}`
  const dir = join(CACHE_DIR, 'convert')
  await mkdir(dir, { recursive: true })
  const blob = join(dir, `${key}.blob`)
  const sidecar = join(dir, `${key}.json`)
  if (existsSync(sidecar) && existsSync(blob)) {
    const result = JSON.parse(await readFile(sidecar, 'utf8')) as ConvertResult
    return { blob, result, cached: true }
  }

  // A changed converter makes the same input's older blobs useless: drop them.
  for (const name of await readdir(dir))
    if (name.startsWith(`${inputKey}-`) || !name.includes('-'))
      await rm(join(dir, name), { force: true })
  const result = await convertLayer(input, blob, options)
  await writeFile(sidecar, JSON.stringify(result))
  return { blob, result, cached: false }
}
