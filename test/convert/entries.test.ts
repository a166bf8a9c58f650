/**
 * Small converter cases built in code: every entry type with owners, modes and xattrs;
 * prioritized files and landmarks; chunk splitting; tar, tar.gz and tar.zst inputs.
 * Each layer is read back with edgestar's reader and, when it builds, the reference.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  chmod,
  chown,
  link,
  mkdir,
  mkdtemp,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { gunzipSync, gzipSync } from 'node:zlib'
import { compress as zstdCompress } from 'zstd-napi'
import { isEdgestarError } from '../../src/errors.js'
import {
  CONVERT_ERRORS,
  type ConvertFormat,
  type ConvertOptions,
  convertLayer,
  decodeChunk,
  FileReader,
  openLayer,
  readFileRange,
  type TocEntry,
} from '../../src/estargz/index.js'
import { diffListings, listLayer, listTree, refgenPath, refgenVerify } from './support.js'

const run = promisify(execFile)
const isRoot = process.getuid?.() === 0
const FORMATS: ConvertFormat[] = ['estargz', 'zstd-chunked']

let work: string

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'edgestar-convert-test-'))
})

after(async () => {
  await rm(work, { recursive: true, force: true })
})

async function convert(input: string, name: string, options: ConvertOptions = {}) {
  const blob = join(work, name)
  const result = await convertLayer(input, blob, { workers: 1, ...options })
  return { blob, result }
}

async function tocOf(blob: string, tocDigest: string): Promise<TocEntry[]> {
  const reader = await FileReader.open(blob)
  try {
    return (await openLayer(reader, { tocDigest })).entries
  } finally {
    await reader.close()
  }
}

// A tree with every entry type, special modes, owners and xattrs.
async function buildMixedTree(root: string): Promise<void> {
  await mkdir(join(root, 'bin'), { recursive: true })
  await mkdir(join(root, 'dev'))
  await mkdir(join(root, 'tmp'))
  await mkdir(join(root, `deep/${'d'.repeat(60)}/${'e'.repeat(60)}/f`), {
    recursive: true,
  })
  await writeFile(join(root, 'bin/tool'), '#!/bin/sh\necho tool\n')
  await writeFile(join(root, 'empty'), '')
  await writeFile(join(root, 'ünïcødé 文件 🚀.txt'), 'unicode\n')
  await writeFile(
    join(root, `deep/${'d'.repeat(60)}/${'e'.repeat(60)}/f/${'n'.repeat(200)}`),
    'deep\n',
  )
  await writeFile(join(root, 'suid'), 'x')
  await chmod(join(root, 'suid'), 0o4755)
  await chmod(join(root, 'tmp'), 0o1777)
  await writeFile(join(root, 'secret'), 'no one')
  await chmod(join(root, 'secret'), 0o000)
  await link(join(root, 'bin/tool'), join(root, 'bin/tool-hardlink'))
  await symlink('tool', join(root, 'bin/rel-link'))
  await symlink('/etc/passwd', join(root, 'abs-link'))
  await symlink('does/not/exist', join(root, 'dangling'))
  await run('mkfifo', [join(root, 'dev/fifo')])
  if (!isRoot) return
  await run('mknod', [join(root, 'dev/null'), 'c', '1', '3'])
  await run('mknod', [join(root, 'dev/loop9'), 'b', '7', '9'])
  await chown(join(root, 'bin/tool'), 1000, 1000)
  await chown(join(root, 'secret'), 100000, 65534)
  await run('setfattr', ['-n', 'user.text', '-v', 'hello', join(root, 'bin/tool')])
  await run('setfattr', ['-n', 'user.binary', '-v', '0x00ff0a80', join(root, 'empty')])
  await run('setfattr', ['-n', 'user.on-dir', '-v', 'd', join(root, 'bin')])
}

describe('converting a directory with every entry type', () => {
  let tree: string
  before(async () => {
    tree = join(work, 'mixed')
    await mkdir(tree)
    await buildMixedTree(tree)
  })

  for (const format of FORMATS) {
    test(`${format}: types, modes, owners, sizes, contents, links and devices survive`, async () => {
      const { blob, result } = await convert(tree, `mixed.${format}`, { format })
      const { entries } = await listLayer(blob, result.tocDigest)
      assert.deepEqual(diffListings(await listTree(tree), entries), [])
      assert.equal(entries.get('bin/tool-hardlink')?.type, 'hardlink')
      assert.equal(entries.get('bin/tool-hardlink')?.link, 'bin/tool')
    })

    test(`${format}: xattrs (text, binary, on a directory) are in the TOC`, {
      skip: !isRoot && 'needs root for setfattr/chown',
    }, async () => {
      const { blob, result } = await convert(tree, `mixed-x.${format}`, { format })
      const toc = await tocOf(blob, result.tocDigest)
      const byName = new Map(toc.map((e) => [e.name, e]))
      assert.deepEqual(byName.get('bin/tool')?.xattrs, {
        'user.text': Buffer.from('hello').toString('base64'),
      })
      assert.deepEqual(byName.get('empty')?.xattrs, {
        'user.binary': Buffer.from([0, 0xff, 0x0a, 0x80]).toString('base64'),
      })
      assert.deepEqual(byName.get('bin')?.xattrs, {
        'user.on-dir': Buffer.from('d').toString('base64'),
      })
    })

    test(`${format}: the reference implementation reads it and finds the tree`, async (t) => {
      const refgen = await refgenPath()
      if (refgen === undefined) return t.skip('reference refgen did not build; interop not checked')
      const { blob, result } = await convert(tree, `mixed-ref.${format}`, { format })
      const report = await refgenVerify(refgen, blob, result.tocDigest, tree)
      assert.deepEqual([...report.errors, ...report.differences], [])
      assert.equal(report.ok, true)
      assert.equal(report.diffID, result.diffID)
    })
  }
})

describe('prioritized files and landmarks', () => {
  let tree: string
  before(async () => {
    tree = join(work, 'prio')
    await mkdir(join(tree, 'usr/bin'), { recursive: true })
    await mkdir(join(tree, 'etc'))
    await writeFile(join(tree, 'usr/bin/app'), 'app')
    await writeFile(join(tree, 'etc/a.conf'), 'conf')
    await link(join(tree, 'etc/a.conf'), join(tree, 'etc/z-link'))
    await writeFile(join(tree, 'late'), 'late')
  })

  test('without prioritized files the layer starts with .no.prefetch.landmark', async () => {
    const { blob, result } = await convert(tree, 'noprio.estargz')
    const toc = await tocOf(blob, result.tocDigest)
    assert.equal(toc[0]?.name, '.no.prefetch.landmark')
    assert.equal(toc.filter((e) => e.name.endsWith('prefetch.landmark')).length, 1)
  })

  for (const format of FORMATS) {
    const title = 'prioritized files, parents and hardlink targets lead, then .prefetch.landmark'
    test(`${format}: ${title}`, async () => {
      const { blob, result } = await convert(tree, `prio.${format}`, {
        format,
        prioritizedPaths: ['/usr/bin/app', './etc/z-link'],
      })
      const toc = await tocOf(blob, result.tocDigest)
      const names = toc.filter((e) => e.type !== 'chunk').map((e) => e.name)
      const landmark = names.indexOf('.prefetch.landmark')
      assert.deepEqual(names.slice(0, landmark), [
        '',
        'usr',
        'usr/bin',
        'usr/bin/app',
        'etc',
        'etc/a.conf',
        'etc/z-link',
      ])
      assert.deepEqual(names.slice(landmark + 1), ['late'])
      assert.equal(result.missedPrioritized.length, 0)

      const refgen = await refgenPath()
      if (refgen === undefined) return
      const report = await refgenVerify(refgen, blob, result.tocDigest, tree)
      assert.deepEqual([...report.errors, ...report.differences], [])
    })
  }

  test('landmark and TOC names in a directory are dropped with a warning, not doubled', async () => {
    const src = join(work, 'fake-meta')
    await mkdir(src)
    await writeFile(join(src, '.no.prefetch.landmark'), 'x')
    await writeFile(join(src, 'stargz.index.json'), '{}')
    await writeFile(join(src, 'real'), 'real')
    const warnings: string[] = []
    const { blob, result } = await convert(src, 'fake-meta.estargz', {
      onWarning: (message) => warnings.push(message),
    })
    const names = (await tocOf(blob, result.tocDigest)).map((e) => e.name)
    assert.deepEqual(names, ['.no.prefetch.landmark', '', 'real'])
    assert.equal(warnings.length, 2)
  })

  test('a prioritized path missing from the input is an error unless allowed', async () => {
    await assert.rejects(
      convert(tree, 'missing.estargz', { prioritizedPaths: ['usr/bin/app', 'nope'] }),
      (err) => isEdgestarError(err, CONVERT_ERRORS.PRIORITIZED_MISSING),
    )
    const { result } = await convert(tree, 'missing-ok.estargz', {
      prioritizedPaths: ['nope'],
      allowMissingPrioritized: true,
    })
    assert.deepEqual(result.missedPrioritized, ['nope'])
  })
})

describe('chunk splitting', () => {
  const chunkSizeBytes = 64 * 1024
  let tree: string
  let big: Buffer
  before(async () => {
    tree = join(work, 'chunks')
    await mkdir(tree)
    big = Buffer.alloc(3 * chunkSizeBytes + 1234)
    for (let i = 0; i < big.length; i += 32)
      createHash('sha256').update(String(i)).digest().copy(big, i)
    await writeFile(join(tree, 'big'), big)
    await writeFile(join(tree, 'exact'), Buffer.alloc(chunkSizeBytes, 7))
  })

  for (const format of FORMATS) {
    test(`${format}: a large file becomes chunks of --chunk-size that decode on their own`, async () => {
      const { blob, result } = await convert(tree, `chunks.${format}`, { format, chunkSizeBytes })
      const reader = await FileReader.open(blob)
      try {
        const index = await openLayer(reader, { tocDigest: result.tocDigest })
        const chunks = index.chunksByName.get('big') ?? []
        assert.deepEqual(
          chunks.map((c) => c.chunkOffset),
          [0, 1, 2, 3].map((i) => i * chunkSizeBytes),
        )
        assert.deepEqual(
          chunks.map((c) => c.chunkSize),
          [chunkSizeBytes, chunkSizeBytes, chunkSizeBytes, 1234],
        )
        for (const chunk of chunks) {
          const compressed = await reader.readAt(chunk.compressedOffset, chunk.compressedSize)
          const data = decodeChunk(index.compression, compressed, chunk)
          assert.ok(
            data.equals(big.subarray(chunk.chunkOffset, chunk.chunkOffset + chunk.chunkSize)),
          )
        }
        const across = await readFileRange(reader, index, 'big', {
          offset: chunkSizeBytes - 10,
          length: 20,
        })
        assert.ok(across.equals(big.subarray(chunkSizeBytes - 10, chunkSizeBytes + 10)))
        assert.equal(index.chunksByName.get('exact')?.length, 1)
      } finally {
        await reader.close()
      }
      const refgen = await refgenPath()
      if (refgen === undefined) return
      const report = await refgenVerify(refgen, blob, result.tocDigest, tree)
      assert.deepEqual([...report.errors, ...report.differences], [])
    })
  }

  test('the TOC keeps chunkSize on full chunks only, as the reference writes it', async () => {
    const { blob, result } = await convert(tree, 'chunks-raw.estargz', { chunkSizeBytes })
    const raw = await readRawTocJson(blob, result.tocOffset, result.size)
    const big = raw.entries.filter((e) => e.name === 'big')
    assert.deepEqual(
      big.map((e) => e.chunkSize),
      [chunkSizeBytes, chunkSizeBytes, chunkSizeBytes, undefined],
    )
    assert.deepEqual(
      big.map((e) => e.type),
      ['reg', 'chunk', 'chunk', 'chunk'],
    )
    assert.equal(raw.entries.find((e) => e.name === 'exact')?.chunkSize, chunkSizeBytes)
  })
})

// The gzip TOC member holds a tar: a 512-byte header, then the JSON.
async function readRawTocJson(blob: string, tocOffset: number, size: number) {
  const bytes = await readFile(blob)
  const tar = gunzipSync(bytes.subarray(tocOffset, size - 51))
  const length = Number.parseInt(tar.toString('latin1', 124, 136).replace(/\0/g, ''), 8)
  return JSON.parse(tar.toString('utf8', 512, 512 + length)) as {
    entries: { name: string; type: string; chunkSize?: number }[]
  }
}

describe('tar inputs', () => {
  let tree: string
  let tarPath: string
  before(async () => {
    tree = join(work, 'tarsrc')
    await mkdir(tree)
    await buildMixedTree(tree)
    tarPath = join(work, 'input.tar')
    await run('tar', [
      '--sort=name',
      '--xattrs',
      '--xattrs-include=user.*',
      '-cf',
      tarPath,
      '-C',
      tree,
      '.',
    ])
    const plain = await readFile(tarPath)
    await writeFile(`${tarPath}.gz`, gzipSync(plain))
    await writeFile(`${tarPath}.zst`, zstdCompress(plain))
  })

  test('a GNU tar converts to a layer that matches the tree', async () => {
    const { blob, result } = await convert(tarPath, 'fromtar.estargz')
    const { entries } = await listLayer(blob, result.tocDigest)
    assert.deepEqual(diffListings(await listTree(tree), entries), [])
  })

  test('tar, tar.gz and tar.zst inputs give the same TOC and diffID', async () => {
    const plain = await convert(tarPath, 'same-plain.zst', { format: 'zstd-chunked' })
    const gz = await convert(`${tarPath}.gz`, 'same-gz.zst', { format: 'zstd-chunked' })
    const zst = await convert(`${tarPath}.zst`, 'same-zst.zst', { format: 'zstd-chunked' })
    assert.equal(gz.result.tocDigest, plain.result.tocDigest)
    assert.equal(zst.result.tocDigest, plain.result.tocDigest)
    assert.equal(gz.result.diffID, plain.result.diffID)
    assert.equal(zst.result.diffID, plain.result.diffID)
  })

  test('converting an eStargz blob again drops its old TOC and landmark', async () => {
    const first = await convert(tree, 'again-1.estargz')
    const second = await convert(first.blob, 'again-2.estargz')
    assert.equal(second.result.tocDigest, first.result.tocDigest)
    assert.equal(second.result.diffID, first.result.diffID)
  })

  test('a hardlink to an entry the tar lacks is refused with HARDLINK_MISSING', async () => {
    const src = join(work, 'linksrc')
    await mkdir(src)
    await writeFile(join(src, 'target'), 'data')
    await link(join(src, 'target'), join(src, 'link'))
    const broken = join(work, 'broken-link.tar')
    await run('tar', ['--sort=name', '-cf', broken, '-C', src, 'target', 'link'])
    await run('tar', ['--delete', '-f', broken, 'target'])
    await assert.rejects(convert(broken, 'broken-link.estargz'), (err) =>
      isEdgestarError(err, CONVERT_ERRORS.HARDLINK_MISSING),
    )
  })

  test('a file that is not a tar is refused with INPUT_UNSUPPORTED', async () => {
    const junk = join(work, 'junk.bin')
    await writeFile(junk, Buffer.alloc(1024, 0x41))
    await assert.rejects(convert(junk, 'junk.estargz'), (err) =>
      isEdgestarError(err, CONVERT_ERRORS.INPUT_UNSUPPORTED),
    )
  })

  test('a truncated tar is refused with TAR_CORRUPT and leaves no output', async () => {
    const cut = join(work, 'cut.tar')
    const plain = await readFile(tarPath)
    await writeFile(cut, plain.subarray(0, Math.floor(plain.length / 2) + 100))
    await assert.rejects(convert(cut, 'cut.estargz'), (err) =>
      isEdgestarError(err, CONVERT_ERRORS.TAR_CORRUPT),
    )
    await assert.rejects(readFile(join(work, 'cut.estargz')))
  })
})

describe('options', () => {
  test('an output inside the input tree is refused with BAD_OPTION', async () => {
    const tree = join(work, 'self')
    await mkdir(tree)
    await assert.rejects(convertLayer(tree, join(tree, 'layer.tar.gz')), (err) =>
      isEdgestarError(err, CONVERT_ERRORS.BAD_OPTION),
    )
  })

  test('bad chunk size, level and format are refused with BAD_OPTION', async () => {
    for (const options of [
      { chunkSizeBytes: 10 },
      { level: 10 },
      { format: 'zstd-chunked' as const, level: 0 },
      { format: 'lz4' as ConvertFormat },
    ]) {
      await assert.rejects(convertLayer(work, join(work, 'bad.out'), options), (err) =>
        isEdgestarError(err, CONVERT_ERRORS.BAD_OPTION),
      )
    }
  })
})
