/**
 * `edgestar convert` when something is wrong: each failure has its own code, names its
 * cause and says what to do; skipped entries reach `--json`.
 */
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { pack } from 'tar-stream'
import { FileReader, openLayer } from '../../src/estargz/index.js'

const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname

interface CliRun {
  code: number
  stdout: string
  stderr: string
}

function edgestar(args: string[], prefix: string[] = []): Promise<CliRun> {
  const [file, argv] =
    prefix.length > 0
      ? [prefix[0] as string, [...prefix.slice(1), process.execPath, CLI, ...args]]
      : [process.execPath, [CLI, ...args]]
  return new Promise((resolve) => {
    execFile(
      file,
      argv,
      { env: { ...process.env, EDGESTAR_LOG_LEVEL: 'warn' } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0
        resolve({ code, stdout, stderr })
      },
    )
  })
}

const isRoot = process.getuid?.() === 0
const hasSetpriv = existsSync('/usr/bin/setpriv')

let work: string
let tree: string
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'edgestar-convert-errors-'))
  await chmod(work, 0o755)
  tree = join(work, 'tree')
  await mkdir(join(tree, 'app'), { recursive: true })
  await writeFile(join(tree, 'app/main.py'), 'print("hi")\n')
})
after(async () => {
  await rm(work, { recursive: true, force: true })
})

describe('convert input problems', () => {
  test('an unreadable file or directory has its own code and a hint', {
    skip: !isRoot || !hasSetpriv ? 'needs root and setpriv to drop to uid 65534' : false,
  }, async () => {
    const asNobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']
    const outDir = join(work, 'nobody-out')
    await mkdir(outDir)
    await chmod(outDir, 0o777)
    for (const locked of ['file', 'dir']) {
      const input = join(work, `locked-${locked}`)
      await mkdir(join(input, 'ok'), { recursive: true })
      await writeFile(join(input, 'ok/a'), 'a')
      const path = join(input, 'secret')
      if (locked === 'file') await writeFile(path, 'secret')
      else await mkdir(path)
      await chmod(path, 0o000)
      const run = await edgestar(['convert', input, join(outDir, `${locked}.blob`)], asNobody)
      assert.equal(run.code, 1, run.stderr)
      assert.match(run.stderr, /EDGESTAR_CONVERT_INPUT_PERMISSION_DENIED/, run.stderr)
      assert.match(run.stderr, /secret/)
      assert.match(run.stderr, /hint: .*(permission|read)/i)
      assert.doesNotMatch(run.stderr, /EDGESTAR_INTERNAL/)
    }
  })

  test('a PAX mtime beyond year 9999 is clamped with a warning', async () => {
    const tarPath = join(work, 'far-future.tar')
    const p = pack()
    p.entry({ name: 'far', size: 3, mode: 0o644, pax: { mtime: '1000000000000000' } }, 'abc')
    p.finalize()
    const parts: Buffer[] = []
    for await (const chunk of p) parts.push(chunk as Buffer)
    await writeFile(tarPath, Buffer.concat(parts))

    const out = join(work, 'far.blob')
    const run = await edgestar(['convert', tarPath, out])
    assert.equal(run.code, 0, run.stderr)
    assert.match(run.stderr, /warning: .*far.*mtime/)
    const reader = await FileReader.open(out)
    try {
      const index = await openLayer(reader)
      const entry = index.entries.find((e) => e.name === 'far')
      assert.equal(entry?.modtime, '9999-12-31T23:59:59Z')
    } finally {
      await reader.close()
    }
  })

  test('a mistyped local path is not taken for a Docker Hub image', async () => {
    const cwd = process.cwd()
    const run = await edgestar(['convert', 'nothere', join(work, 'x')])
    assert.equal(run.code, 1)
    assert.match(
      run.stderr,
      /EDGESTAR_CONVERT_INPUT_UNREADABLE: no such file or directory: nothere/,
    )
    assert.match(run.stderr, /hint: .*docker\.io\/library\/nothere/)
    assert.doesNotMatch(run.stderr, /retried|registry-1|UNREACHABLE/i)
    assert.equal(process.cwd(), cwd)

    const nested = await edgestar(['convert', 'some/dir', join(work, 'x')])
    assert.match(nested.stderr, /no such file or directory: some\/dir/)
  })
})

describe('convert output problems', () => {
  test('no OUT and no --push says OUT is missing and shows usage', async () => {
    const run = await edgestar(['convert', tree])
    assert.equal(run.code, 1)
    assert.match(run.stderr, /missing OUT/)
    assert.match(run.stderr, /usage: edgestar convert/)
    assert.doesNotMatch(run.stderr, /invalid <out>/)
  })

  test('a missing output directory is named as the cause', async () => {
    const run = await edgestar(['convert', tree, join(work, 'no/such/dir/out.blob')])
    assert.equal(run.code, 1)
    assert.match(run.stderr, /EDGESTAR_CONVERT_OUTPUT_FAILED: .*out\.blob.*ENOENT/)
    assert.doesNotMatch(run.stderr, /\.tmp-/)
    assert.match(run.stderr, /hint: .*no\/such\/dir.*does not exist/)
  })

  test('an output that is a directory is refused before converting', async () => {
    const run = await edgestar(['convert', tree, work])
    assert.equal(run.code, 1)
    assert.match(run.stderr, /EDGESTAR_CONVERT_OUTPUT_FAILED: .*EISDIR/)
    assert.match(run.stderr, /hint: .*is a directory; give a file name/)
  })

  test('a full disk says ENOSPC and leaves no partial file', {
    skip: isRoot ? false : 'needs root to mount a small tmpfs',
  }, async () => {
    const small = join(work, 'small')
    await mkdir(small)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', small])
    try {
      const big = join(work, 'big')
      await mkdir(big)
      await writeFile(join(big, 'random.bin'), randomBytes(1 << 20))
      const run = await edgestar(['convert', big, join(small, 'out.blob'), '--level', '0'])
      assert.equal(run.code, 1)
      assert.match(run.stderr, /EDGESTAR_CONVERT_OUTPUT_FAILED: .*ENOSPC/)
      assert.match(run.stderr, /hint: .*(full|space)/)
      assert.deepEqual(execFileSync('ls', ['-A', small]).toString(), '')
    } finally {
      execFileSync('umount', [small])
    }
  })
})

describe('skipped entries', () => {
  test('a socket in the input is listed under skipped in --json', async () => {
    const input = join(work, 'with-socket')
    await mkdir(input)
    await writeFile(join(input, 'a'), 'a')
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(join(input, 'sock'), resolve))
    try {
      const run = await edgestar(['convert', input, join(work, 'sock.blob'), '--json'])
      assert.equal(run.code, 0, run.stderr)
      const result = JSON.parse(run.stdout) as { skipped: { path: string; reason: string }[] }
      assert.equal(result.skipped.length, 1)
      assert.equal(result.skipped[0]?.path, 'sock')
      assert.match(result.skipped[0]?.reason ?? '', /socket/)
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
