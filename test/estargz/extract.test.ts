import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { gzipSync } from 'node:zlib'
import { EXTRACT_ERRORS, extractLayer } from '../../src/cli/commands/extract.js'
import { isEdgestarError } from '../../src/errors.js'
import { cleanEntryName, ESTARGZ_ERRORS } from '../../src/estargz/index.js'
import { type FixtureFile, listFixtures } from '../helpers/fixtures.js'
import { paxEntry, smuggleBeforeToc, tarEntry } from './blob-builder.js'

const scratch = mkdtempSync(join(tmpdir(), 'edgestar-extract-'))
after(() => rmSync(scratch, { recursive: true, force: true }))
const isRoot = process.getuid?.() === 0
let counter = 0
const freshDir = (): string => join(scratch, `out-${counter++}`)

function readXattrs(path: string): Record<string, string> {
  const script =
    'import base64, json, os, sys\n' +
    'p = sys.argv[1]\n' +
    'names = [n for n in os.listxattr(p, follow_symlinks=False) if n.startswith("user.")]\n' +
    'get = lambda n: base64.b64encode(os.getxattr(p, n, follow_symlinks=False)).decode()\n' +
    'print(json.dumps({n: get(n) for n in names}))'
  return JSON.parse(execFileSync('python3', ['-c', script, path], { encoding: 'utf8' })) as Record<
    string,
    string
  >
}

function checkFile(root: string, file: FixtureFile): void {
  const name = cleanEntryName(file.name)
  const path = join(root, name)
  const stat = lstatSync(path)
  const kind = {
    reg: stat.isFile(),
    dir: stat.isDirectory(),
    symlink: stat.isSymbolicLink(),
    hardlink: stat.isFile() || stat.isSymbolicLink(),
    char: stat.isCharacterDevice(),
    block: stat.isBlockDevice(),
    fifo: stat.isFIFO(),
  }[file.type]
  assert.ok(kind, `${name} is a ${file.type}`)

  if (file.type === 'symlink') assert.equal(readlinkSync(path), file.linkName, `${name} target`)
  if (file.type === 'hardlink') {
    const target = lstatSync(join(root, cleanEntryName(file.linkName ?? '')))
    assert.equal(stat.ino, target.ino, `${name} shares its target's inode`)
    return
  }
  if (file.type !== 'symlink') assert.equal(stat.mode & 0o7777, file.mode & 0o7777, `${name} mode`)
  if (isRoot) {
    assert.equal(stat.uid, file.uid, `${name} uid`)
    assert.equal(stat.gid, file.gid, `${name} gid`)
  }
  assert.equal(Math.floor(stat.mtimeMs / 1000), file.mtime, `${name} mtime`)
  if (file.type === 'reg') {
    const sha = createHash('sha256').update(readFileSync(path)).digest('hex')
    assert.equal(sha, file.sha256, `${name} content`)
  }
  if ((file.type === 'char' || file.type === 'block') && isRoot) {
    assert.equal(Math.floor(stat.rdev / 256), file.devMajor, `${name} major`)
    assert.equal(stat.rdev % 256, file.devMinor, `${name} minor`)
  }
  if (file.xattrs && file.type !== 'symlink')
    assert.deepEqual(readXattrs(path), file.xattrs, `${name} xattrs`)
}

describe('extract writes every fixture as its sidecar says', () => {
  for (const fixture of listFixtures()) {
    it(`extracts ${fixture.index.blob}`, async (t) => {
      const dir = freshDir()
      const report = await extractLayer(fixture.path, dir, {
        diffID: fixture.index.diffID,
        ...(fixture.index.tocDigest ? { tocDigest: fixture.index.tocDigest } : {}),
      })
      assert.equal(report.diffID, fixture.index.diffID)
      const files = fixture.sidecar.files.filter(
        (f) => !f.estargzMeta && cleanEntryName(f.name) !== '',
      )
      for (const file of files) {
        if ((file.type === 'char' || file.type === 'block') && !isRoot) continue
        checkFile(dir, file)
      }
      for (const meta of fixture.sidecar.files.filter((f) => f.estargzMeta)) {
        assert.equal(existsSync(join(dir, meta.name)), false, `${meta.name} is not layer content`)
      }
      if (!isRoot) t.diagnostic('not root: owners and device nodes not checked')
    })
  }

  for (const [what, tar] of [
    ['a file the TOC does not list', tarEntry('smuggled', Buffer.from('evil'))],
    ['a symlink over a file the TOC lists', tarEntry('hello.txt', Buffer.alloc(0), '2', '/')],
  ] as const) {
    it(`refuses a stream holding ${what}, TOC digest intact`, async () => {
      const fixture = listFixtures('estargz').find((f) => f.name === 'tiny')!
      const blob = join(scratch, `smuggled-${counter++}.esgz`)
      writeFileSync(blob, smuggleBeforeToc(readFileSync(fixture.path), tar))
      await assert.rejects(
        extractLayer(blob, freshDir(), { tocDigest: fixture.index.tocDigest! }),
        (err) => isEdgestarError(err, ESTARGZ_ERRORS.TOC_INVALID),
      )
    })
  }

  it('refuses a TOC digest for a plain layer, which has no TOC to check', async () => {
    const dir = freshDir()
    const fixture = listFixtures('gzip').find((f) => f.name === 'tiny')!
    await assert.rejects(
      extractLayer(fixture.path, dir, { tocDigest: `sha256:${'0'.repeat(64)}` }),
      (err) => isEdgestarError(err, ESTARGZ_ERRORS.NO_TOC),
    )
    assert.equal(existsSync(dir), false)
  })

  it('refuses a wrong TOC digest before writing anything', async () => {
    const dir = freshDir()
    const fixture = listFixtures('estargz').find((f) => f.name === 'mixed')!
    await assert.rejects(
      extractLayer(fixture.path, dir, { tocDigest: `sha256:${'0'.repeat(64)}` }),
      (err) => isEdgestarError(err, ESTARGZ_ERRORS.TOC_DIGEST_MISMATCH),
    )
    assert.equal(existsSync(join(dir, 'etc')), false)
  })
})

describe('extract never writes outside its directory', () => {
  const outside = join(scratch, 'outside')
  const layer = (...entries: Buffer[]): string => {
    const path = join(scratch, `layer-${counter++}.tar.gz`)
    writeFileSync(path, gzipSync(Buffer.concat([...entries, Buffer.alloc(1024)])))
    return path
  }
  const reset = (): void => {
    rmSync(outside, { recursive: true, force: true })
    execFileSync('mkdir', ['-p', outside])
    writeFileSync(join(outside, 'keep'), 'original')
  }

  const cases: { name: string; entries: () => Buffer[]; code: string }[] = [
    {
      name: 'a file below a symlink to an absolute directory',
      entries: () => [
        tarEntry('evil', Buffer.alloc(0), '2', outside),
        tarEntry('evil/pwned', Buffer.from('x')),
      ],
      code: EXTRACT_ERRORS.UNSAFE_PATH,
    },
    {
      name: 'a file below a symlink that climbs with ..',
      entries: () => [
        tarEntry('up', Buffer.alloc(0), '2', '../../../../../..'),
        tarEntry('up/pwned', Buffer.from('x')),
      ],
      code: EXTRACT_ERRORS.UNSAFE_PATH,
    },
    {
      name: 'a hardlink to a file reached through a symlinked directory',
      entries: () => [
        tarEntry('evil', Buffer.alloc(0), '2', outside),
        tarEntry('h', Buffer.alloc(0), '1', 'evil/keep'),
      ],
      code: EXTRACT_ERRORS.UNSAFE_PATH,
    },
    {
      name: 'a name with ..',
      entries: () => [tarEntry('../pwned', Buffer.from('x'))],
      code: ESTARGZ_ERRORS.NAME_ESCAPE,
    },
    {
      name: 'a hardlink target with ..',
      entries: () => [tarEntry('h', Buffer.alloc(0), '1', '../outside/keep')],
      code: ESTARGZ_ERRORS.NAME_ESCAPE,
    },
  ]

  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      reset()
      await assert.rejects(extractLayer(layer(...c.entries()), freshDir()), (err) =>
        isEdgestarError(err, c.code),
      )
      assert.equal(existsSync(join(outside, 'pwned')), false)
      assert.equal(readFileSync(join(outside, 'keep'), 'utf8'), 'original')
    })
  }

  it('replaces a symlink with a later file of the same name instead of writing through it', async () => {
    reset()
    const dir = freshDir()
    await extractLayer(
      layer(
        tarEntry('f', Buffer.alloc(0), '2', join(outside, 'keep')),
        tarEntry('f', Buffer.from('new')),
      ),
      dir,
    )
    assert.equal(readFileSync(join(outside, 'keep'), 'utf8'), 'original')
    assert.equal(readFileSync(join(dir, 'f'), 'utf8'), 'new')
  })

  it('sets no mode or time through a directory a later entry replaced with a symlink', async () => {
    reset()
    const before = lstatSync(join(outside, 'keep'))
    const dir = freshDir()
    await extractLayer(
      layer(
        tarEntry('d', Buffer.alloc(0), '5', '', 0o755),
        tarEntry('d/keep', Buffer.from('x'), '0', '', 0o4777),
        tarEntry('d', Buffer.alloc(0), '2', outside),
      ),
      dir,
    )
    const after = lstatSync(join(outside, 'keep'))
    assert.equal(after.mode, before.mode, 'mode outside unchanged')
    assert.equal(after.mtimeMs, before.mtimeMs, 'mtime outside unchanged')
    assert.equal(readlinkSync(join(dir, 'd')), outside)
  })

  it('sets no mode through a file a later entry replaced with a symlink', async () => {
    reset()
    const before = lstatSync(join(outside, 'keep'))
    const dir = freshDir()
    await extractLayer(
      layer(
        tarEntry('f', Buffer.from('x'), '0', '', 0o4777),
        tarEntry('f', Buffer.alloc(0), '2', join(outside, 'keep')),
      ),
      dir,
    )
    assert.equal(lstatSync(join(outside, 'keep')).mode, before.mode)
  })

  it('lets a later entry win over a hardlink listed before its target', async () => {
    const dir = freshDir()
    await extractLayer(
      layer(
        tarEntry('h', Buffer.alloc(0), '1', 't'),
        tarEntry('h', Buffer.from('new')),
        tarEntry('t', Buffer.from('target')),
      ),
      dir,
    )
    assert.equal(readFileSync(join(dir, 'h'), 'utf8'), 'new')
    assert.equal(readFileSync(join(dir, 't'), 'utf8'), 'target')
  })

  it('creates a hardlink listed before its target and a hardlink to a symlink', async () => {
    const dir = freshDir()
    await extractLayer(
      layer(
        tarEntry('early', Buffer.alloc(0), '1', 'target'),
        tarEntry('target', Buffer.from('content')),
        tarEntry('s', Buffer.alloc(0), '2', 'target'),
        tarEntry('hs', Buffer.alloc(0), '1', 's'),
      ),
      dir,
    )
    assert.equal(lstatSync(join(dir, 'early')).ino, lstatSync(join(dir, 'target')).ino)
    assert.ok(lstatSync(join(dir, 'hs')).isSymbolicLink())
    assert.equal(readlinkSync(join(dir, 'hs')), 'target')
  })
})

describe('extract keeps unusual but valid metadata', () => {
  it('sets an mtime from before 1970', async () => {
    const path = join(scratch, `old-${counter++}.tar.gz`)
    const entries = [paxEntry({ mtime: '-86401' }), tarEntry('old', Buffer.from('x'))]
    writeFileSync(path, gzipSync(Buffer.concat([...entries, Buffer.alloc(1024)])))
    const dir = freshDir()
    await extractLayer(path, dir)
    assert.equal(lstatSync(join(dir, 'old')).mtimeMs, -86401000)
  })
})

describe('extract reports where it cannot write', () => {
  const tiny = (): string => listFixtures('estargz').find((f) => f.name === 'tiny')!.path

  it('refuses a DIR that is a file, with its own code', async () => {
    const file = join(scratch, `file-${counter++}`)
    writeFileSync(file, 'x')
    await assert.rejects(extractLayer(tiny(), file), (err) =>
      isEdgestarError(err, EXTRACT_ERRORS.WRITE_FAILED),
    )
    await assert.rejects(extractLayer(tiny(), join(file, 'sub')), (err) =>
      isEdgestarError(err, EXTRACT_ERRORS.WRITE_FAILED),
    )
  })

  it('does not create DIR when the blob is missing', async () => {
    const dir = freshDir()
    await assert.rejects(extractLayer(join(scratch, 'no-such-blob'), dir), (err) =>
      isEdgestarError(err, ESTARGZ_ERRORS.READ_FAILED),
    )
    assert.equal(existsSync(dir), false)
  })

  it('reports a full disk with its own code', {
    skip: !isRoot && 'needs root to mount tmpfs',
  }, async () => {
    const small = join(scratch, `small-${counter++}`)
    execFileSync('mkdir', ['-p', small])
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', small])
    try {
      const large = listFixtures('estargz').find((f) => f.name === 'large')!.path
      await assert.rejects(extractLayer(large, join(small, 'out')), (err) => {
        assert.ok(isEdgestarError(err, EXTRACT_ERRORS.WRITE_FAILED), String(err))
        assert.match((err as Error).message, /ENOSPC|no space/)
        return true
      })
    } finally {
      execFileSync('umount', ['-l', small])
    }
  })
})

describe('extract writes runs of zeros as holes', () => {
  it('keeps a mostly-zero file sparse, with the right size and content', async () => {
    const size = 32 * 1024 * 1024
    const content = Buffer.alloc(size)
    content.write('head', 0)
    content.write('middle', size / 2 + 1)
    content.write('tail', size - 4)
    const path = join(scratch, `sparse-${counter++}.tar.gz`)
    writeFileSync(path, gzipSync(Buffer.concat([tarEntry('zeros', content), Buffer.alloc(1024)])))
    const dir = freshDir()
    await extractLayer(path, dir)
    const stat = lstatSync(join(dir, 'zeros'))
    assert.equal(stat.size, size)
    assert.ok(stat.blocks * 512 < 1024 * 1024, `${stat.blocks * 512} bytes allocated`)
    assert.ok(readFileSync(join(dir, 'zeros')).equals(content))
  })

  it('keeps the size of a file ending in zeros', async () => {
    const content = Buffer.concat([Buffer.from('data'), Buffer.alloc(100_000)])
    const path = join(scratch, `sparse-${counter++}.tar.gz`)
    writeFileSync(path, gzipSync(Buffer.concat([tarEntry('z', content), Buffer.alloc(1024)])))
    const dir = freshDir()
    await extractLayer(path, dir)
    assert.ok(readFileSync(join(dir, 'z')).equals(content))
  })
})
