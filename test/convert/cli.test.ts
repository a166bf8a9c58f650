/**
 * `edgestar convert` as scripts use it: `--json` prints the layer descriptor, options
 * reach the converter, and errors print a code and exit non-zero.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { FileReader, openLayer } from '../../src/estargz/index.js'

const run = promisify(execFile)
const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname

interface CliRun {
  code: number
  stdout: string
  stderr: string
}

async function edgestar(...args: string[]): Promise<CliRun> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args])
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

let work: string
let tree: string
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'edgestar-convert-cli-'))
  tree = join(work, 'tree')
  await mkdir(join(tree, 'app'), { recursive: true })
  await writeFile(join(tree, 'app/main.py'), 'print("hi")\n')
  await writeFile(join(tree, 'app/data.bin'), Buffer.alloc(20_000, 3))
})
after(async () => {
  await rm(work, { recursive: true, force: true })
})

describe('edgestar convert', () => {
  test('--json prints digest, size, tocDigest, diffID, uncompressedSize of the blob', async () => {
    const out = join(work, 'layer.tar.zst')
    const { code, stdout } = await edgestar(
      'convert',
      tree,
      out,
      '--format',
      'zstd-chunked',
      '--chunk-size',
      '8KiB',
      '--level',
      '5',
      '--json',
    )
    assert.equal(code, 0)
    const result = JSON.parse(stdout) as Record<string, unknown>
    for (const key of ['digest', 'size', 'tocDigest', 'diffID', 'uncompressedSize'])
      assert.ok(key in result, `missing ${key}`)
    assert.equal(result.size, (await stat(out)).size)

    const reader = await FileReader.open(out)
    try {
      const index = await openLayer(reader, { tocDigest: result.tocDigest as string })
      assert.equal(index.format, 'zstd-chunked')
      assert.equal(index.chunksByName.get('app/data.bin')?.length, 3)
    } finally {
      await reader.close()
    }
  })

  test('--prioritize and --prioritize-from put files before the prefetch landmark', async () => {
    const list = join(work, 'prio.txt')
    await writeFile(list, '# hot files\n/app/data.bin\n\n')
    const out = join(work, 'prio.tar.gz')
    const { code, stdout } = await edgestar(
      'convert',
      tree,
      out,
      '--prioritize',
      'app/main.py',
      '--prioritize-from',
      list,
      '--json',
    )
    assert.equal(code, 0)
    const reader = await FileReader.open(out)
    try {
      const index = await openLayer(reader, { tocDigest: JSON.parse(stdout).tocDigest })
      const names = index.entries.filter((e) => e.type !== 'chunk').map((e) => e.name)
      assert.deepEqual(names.slice(0, 5), [
        '',
        'app',
        'app/main.py',
        'app/data.bin',
        '.prefetch.landmark',
      ])
    } finally {
      await reader.close()
    }
  })

  test('errors print their code and hint, and exit non-zero', async () => {
    const missing = await edgestar('convert', join(work, 'nope'), join(work, 'x'), '--json')
    assert.notEqual(missing.code, 0)
    assert.equal(JSON.parse(missing.stdout).error.code, 'EDGESTAR_CONVERT_INPUT_UNREADABLE')

    const badSize = await edgestar('convert', tree, join(work, 'x'), '--chunk-size', 'lots')
    assert.notEqual(badSize.code, 0)
    assert.match(badSize.stderr, /EDGESTAR_CONVERT_BAD_OPTION/)
    assert.match(badSize.stderr, /hint:/)
  })
})
