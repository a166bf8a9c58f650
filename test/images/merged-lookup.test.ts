import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { openServices, type Services, settingsFrom } from '../../src/cli/options.js'
import { EdgestarError } from '../../src/errors.js'
import { convertLayer } from '../../src/estargz/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import type { ImageRow } from '../../src/store/index.js'
import { pushTestImage, type TestLayer } from '../helpers/images.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'
import { runCli } from './cli.js'

const work = mkdtempSync(join(tmpdir(), 'edgestar-lookup-'))
let registry: RegistryServer
let client: RegistryClient
let services: Services
let image: ImageRow
let ref: string

/** A Debian-like tree: `bin` and `lib` are symlinks into `usr/`, plus tricky links. */
async function layerFrom(build: (root: string) => void, name: string): Promise<TestLayer> {
  const root = join(work, name)
  mkdirSync(root)
  build(root)
  const out = join(work, `${name}.tar.gz`)
  const result = await convertLayer(root, out, { level: 1 })
  return {
    blob: readFileSync(out),
    diffID: result.diffID,
    mediaType: result.mediaType,
    annotations: result.annotations,
  }
}

before(async () => {
  const lower = await layerFrom((root) => {
    mkdirSync(join(root, 'usr/bin'), { recursive: true })
    mkdirSync(join(root, 'usr/lib'), { recursive: true })
    mkdirSync(join(root, 'etc'))
    writeFileSync(join(root, 'usr/bin/dash'), 'dash binary')
    symlinkSync('dash', join(root, 'usr/bin/sh'))
    writeFileSync(join(root, 'usr/lib/os-release'), 'ID=debian\n')
    symlinkSync('usr/bin', join(root, 'bin'))
    symlinkSync('usr/lib', join(root, 'lib'))
    symlinkSync('../usr/lib/os-release', join(root, 'etc/os-release'))
    symlinkSync('/usr/lib', join(root, 'etc/abs-lib'))
    symlinkSync('../../../../../usr/lib', join(root, 'etc/escape'))
    symlinkSync('loop-b', join(root, 'etc/loop-a'))
    symlinkSync('loop-a', join(root, 'etc/loop-b'))
    symlinkSync('../etc/../lib/../bin', join(root, 'etc/chain'))
  }, 'lower')
  const upper = await layerFrom((root) => {
    mkdirSync(join(root, 'opt/real'), { recursive: true })
    writeFileSync(join(root, 'opt/real/file'), 'upper file')
    symlinkSync('/opt/real', join(root, 'opt/link'))
  }, 'upper')
  registry = await startRegistry()
  client = new RegistryClient()
  ref = `${registry.host}/h11/deb:v1`
  await pushTestImage(client, ref, [lower, upper])
  services = openServices(settingsFrom({ stateDir: join(work, 'state') }))
  services.scheduler.setBackgroundEnabled(false)
  image = await services.images.open(ref)
})

after(async () => {
  await services?.close()
  await client?.close()
  await registry?.stop()
  rmSync(work, { recursive: true, force: true })
})

function nameOf(path: string): string {
  return services.images.lookup(image, path).entry.name
}

function codeOf(path: string): string | undefined {
  try {
    services.images.lookup(image, path)
  } catch (err) {
    if (err instanceof EdgestarError) return err.code
    throw err
  }
  return undefined
}

describe('symlinks in every path component', () => {
  it('follows a symlinked directory in the middle of a path (Debian usrmerge)', () => {
    assert.equal(nameOf('/bin/dash'), 'usr/bin/dash')
    assert.equal(nameOf('/bin/sh'), 'usr/bin/dash')
    assert.equal(nameOf('lib/os-release'), 'usr/lib/os-release')
    assert.equal(nameOf('./lib/./os-release'), 'usr/lib/os-release')
  })

  it('follows relative and absolute targets, across layers', () => {
    assert.equal(nameOf('etc/os-release'), 'usr/lib/os-release')
    assert.equal(nameOf('etc/abs-lib/os-release'), 'usr/lib/os-release')
    assert.equal(nameOf('etc/chain/dash'), 'usr/bin/dash')
    assert.equal(nameOf('opt/link/file'), 'opt/real/file')
    assert.equal(nameOf('bin/../lib/os-release'), 'usr/lib/os-release')
  })

  it('never escapes the image root', () => {
    assert.equal(nameOf('etc/escape/os-release'), 'usr/lib/os-release')
    assert.equal(nameOf('../../../bin/sh'), 'usr/bin/dash')
  })

  it('refuses a symlink loop with a coded error', () => {
    assert.equal(codeOf('etc/loop-a'), 'EDGESTAR_IMAGES_SYMLINK_LOOP')
    assert.equal(codeOf('etc/loop-a/x'), 'EDGESTAR_IMAGES_SYMLINK_LOOP')
  })

  it('says a missing name is missing, and a file used as a directory is not one', () => {
    assert.equal(codeOf('bin/nothere'), 'EDGESTAR_IMAGES_NO_SUCH_FILE')
    assert.equal(codeOf('usr/lib/os-release/x'), 'EDGESTAR_IMAGES_NO_SUCH_FILE')
    assert.equal(codeOf('bin'), 'EDGESTAR_IMAGES_NOT_A_FILE')
  })

  it('cat through the CLI prints the file behind /bin/sh and hints at near names', async () => {
    const state = join(work, 'cli-state')
    const run = await runCli(['cat', ref, '/bin/sh', '--state-dir', state])
    assert.equal(run.code, 0, run.stderr)
    assert.equal(run.stdout.toString(), 'dash binary')

    const missing = await runCli(['cat', ref, '/bin/dahs', '--state-dir', state])
    assert.notEqual(missing.code, 0)
    assert.match(missing.stderr, /EDGESTAR_IMAGES_NO_SUCH_FILE/)
    assert.match(missing.stderr, /dash/)
  })
})
