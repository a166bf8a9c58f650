/**
 * Converter benchmark: converts a ~200 MB real tree (the Debian test rootfs plus
 * generated large files) to eStargz and zstd:chunked with `edgestar convert`, then
 * reads each blob back in full with every chunk verified; the reference `refgen` does
 * the same work on the same tree in the same run, and the ratios are printed.
 *
 * Run: `bash bench/convert.sh` (builds, finds the rootfs, then runs this file).
 * Env: EDGESTAR_TEST_ROOTFS (the tree), EDGESTAR_CACHE_DIR (bench tree + reference).
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { lstat, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const CACHE_DIR = resolve(process.env.EDGESTAR_CACHE_DIR ?? '.cache')
const ROOTFS = process.env.EDGESTAR_TEST_ROOTFS ?? join(CACHE_DIR, 'rootfs-bookworm-py')
const CLI = new URL('../src/cli/main.js', import.meta.url).pathname
const TARGET_BYTES = 200 * 1_000_000
const MB = 1_000_000

interface Measured {
  seconds: number
  peakRssBytes: number
  stdout: string
}

/** Runs a command under GNU time to get its wall time and peak RSS. */
async function measure(command: string, args: string[]): Promise<Measured> {
  const started = process.hrtime.bigint()
  const { stdout, stderr } = await run(
    '/usr/bin/time',
    ['-f', 'PEAK_RSS_KB=%M', command, ...args],
    {
      maxBuffer: 256 << 20,
    },
  )
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const match = /PEAK_RSS_KB=(\d+)/.exec(stderr)
  return { seconds, peakRssBytes: Number(match?.[1] ?? 0) * 1024, stdout }
}

// Deterministic data: incompressible (sha256 counter stream) and text-like (compressible).
function generated(kind: 'random' | 'text', seed: string, sizeBytes: number): Buffer {
  const out = Buffer.alloc(sizeBytes)
  if (kind === 'random') {
    for (let at = 0, n = 0; at < sizeBytes; at += 32, n++)
      createHash('sha256').update(`${seed}:${n}`).digest().copy(out, at)
    return out
  }
  const words = ['edge', 'gateway', 'chunk', 'layer', 'sensor', 'fetch', 'lazy', 'mount', 'toc']
  let at = 0
  for (let n = 0; at < sizeBytes; n++) {
    const line = `${n} ${words[n % 9]} ${words[(n * 7) % 9]} value=${(n * 2654435761) % 100003}\n`
    at += out.write(line, at)
  }
  return out
}

async function treeBytes(root: string): Promise<{ bytes: number; entries: number }> {
  let bytes = 0
  let entries = 0
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path).catch(() => undefined)
    entries++
    if (st?.isFile()) bytes += st.size
    if (!st?.isDirectory()) return
    for (const child of await readdir(path)) await visit(join(path, child)).catch(() => {})
  }
  await visit(root)
  return { bytes, entries }
}

/** The bench tree: a copy of the rootfs plus generated files up to ~200 MB (cached). */
async function benchTree(): Promise<string> {
  const tree = join(CACHE_DIR, 'bench-convert-tree')
  if (existsSync(join(tree, '.complete'))) return tree
  await rm(tree, { recursive: true, force: true })
  await run('cp', ['-a', ROOTFS, tree])
  const { bytes } = await treeBytes(tree)
  const missing = Math.max(0, TARGET_BYTES - bytes)
  await mkdir(join(tree, 'opt/bench'), { recursive: true })
  const plan: [string, 'random' | 'text', number][] = [
    ['model.bin', 'random', Math.floor(missing * 0.4)],
    ['dataset.csv', 'text', Math.floor(missing * 0.4)],
    ['assets.pak', 'random', Math.floor(missing * 0.1)],
    ['log.txt', 'text', Math.floor(missing * 0.1)],
  ]
  for (const [name, kind, size] of plan)
    await writeFile(join(tree, 'opt/bench', name), generated(kind, name, size))
  await writeFile(join(tree, '.complete'), '')
  return tree
}

async function refgenPath(): Promise<string | undefined> {
  const outDir = join(CACHE_DIR, 'reference')
  if (!existsSync(join(outDir, 'refgen'))) {
    await run('bash', ['/work/shared/tools/reference/build.sh', outDir]).catch((err: Error) => {
      process.stderr.write(`bench: reference build failed, edgestar only: ${err.message}\n`)
    })
  }
  return existsSync(join(outDir, 'refgen')) ? join(outDir, 'refgen') : undefined
}

interface Row {
  what: string
  tool: string
  seconds: number
  mbPerSec: number
  peakRssMB: number
  blobMB?: number
}

function printTable(rows: Row[]): void {
  const header = ['step', 'tool', 'time s', 'MB/s', 'peak RSS MB', 'blob MB']
  const lines = rows.map((r) => [
    r.what,
    r.tool,
    r.seconds.toFixed(2),
    r.mbPerSec.toFixed(1),
    r.peakRssMB.toFixed(0),
    r.blobMB === undefined ? '' : r.blobMB.toFixed(1),
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)))
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')
  console.log(fmt(header))
  for (const line of lines) console.log(fmt(line))
}

async function main(): Promise<void> {
  const tree = await benchTree()
  const { bytes, entries } = await treeBytes(tree)
  const refgen = await refgenPath()
  const out = await mkdtemp(join(tmpdir(), 'edgestar-bench-'))
  const cpus = availableParallelism()
  console.log(
    `bench tree: ${tree} (${(bytes / MB).toFixed(1)} MB in ${entries} entries), ${cpus} CPUs`,
  )
  const rows: Row[] = []
  const ratios: string[] = []

  try {
    for (const [format, refFormat, ext] of [
      ['estargz', 'estargz', 'tar.gz'],
      ['zstd-chunked', 'zstdchunked', 'tar.zst'],
    ] as const) {
      // edgestar: convert, then a full verified read (every chunk and the diffID).
      const blob = join(out, `edgestar.${ext}`)
      const conv = await measure(process.execPath, [
        CLI,
        'convert',
        tree,
        blob,
        '--format',
        format,
        '--json',
      ])
      const result = JSON.parse(conv.stdout) as {
        size: number
        tocDigest: string
        diffID: string
        uncompressedSize: number
      }
      rows.push(row(`convert ${format}`, 'edgestar', conv, bytes, result.size))
      const read = await measure(process.execPath, [
        CLI,
        'verify',
        blob,
        '--toc-digest',
        result.tocDigest,
        '--diff-id',
        result.diffID,
        '--json',
      ])
      rows.push(row(`verified read ${format}`, 'edgestar', read, result.uncompressedSize))
      if (refgen === undefined) continue

      // reference: Build the same tree (its tool also writes a sidecar), then verify.
      const refConv = await measure(refgen, [
        '-in',
        tree,
        '-out',
        out,
        '-name',
        'ref',
        '-formats',
        refFormat,
        '-parts',
        String(cpus),
        '-mtime',
        '-1',
      ])
      const refBlob = join(out, `ref.${refFormat}.${ext}`)
      const refSize = (await stat(refBlob)).size
      rows.push(row(`convert ${format}`, 'refgen', refConv, bytes, refSize))
      const refRead = await measure(refgen, ['verify', '-blob', refBlob])
      rows.push(row(`verified read ${format}`, 'refgen', refRead, result.uncompressedSize))
      ratios.push(
        `${format}: convert ${(refConv.seconds / conv.seconds).toFixed(2)}x, ` +
          `verified read ${(refRead.seconds / read.seconds).toFixed(2)}x, ` +
          `blob size ${(result.size / refSize).toFixed(3)}`,
      )
      await rm(refBlob, { force: true })
    }
  } finally {
    await rm(out, { recursive: true, force: true })
  }

  printTable(rows)
  if (ratios.length > 0) {
    console.log(
      '\nedgestar vs refgen (throughput ratio, >1 = edgestar faster; blob size edgestar/refgen):',
    )
    for (const line of ratios) console.log(`  ${line}`)
  }
  await memoryCheck()
}

// Memory must not grow with layer size: one 1 GiB file (sparse, so it costs no disk)
// converts in about the memory of a small tree.
async function memoryCheck(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'edgestar-bench-mem-'))
  try {
    await mkdir(join(dir, 'tree'))
    await run('truncate', ['-s', '1G', join(dir, 'tree/big.img')])
    await writeFile(join(dir, 'tree/one.txt'), 'one\n')
    const args = ['convert', join(dir, 'tree'), join(dir, 'out.zst'), '--format', 'zstd-chunked']
    const big = await measure(process.execPath, [CLI, ...args, '--json'])
    await rm(join(dir, 'tree/big.img'))
    const small = await measure(process.execPath, [CLI, ...args, '--json'])
    console.log(
      `\nmemory: peak RSS ${(big.peakRssBytes / MB).toFixed(0)} MB converting a 1 GiB file, ` +
        `${(small.peakRssBytes / MB).toFixed(0)} MB converting a 4-byte file`,
    )
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

function row(what: string, tool: string, m: Measured, bytes: number, blobBytes?: number): Row {
  return {
    what,
    tool,
    seconds: m.seconds,
    mbPerSec: bytes / MB / m.seconds,
    peakRssMB: m.peakRssBytes / MB,
    blobMB: blobBytes === undefined ? undefined : blobBytes / MB,
  }
}

await main()
