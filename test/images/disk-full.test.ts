import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { convertLayer } from '../../src/estargz/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import { FREE_SPACE_MARGIN_BYTES } from '../../src/store/chunk-packs.js'
import { presentObjectCount } from '../helpers/cache-objects.js'
import { pushTestImage } from '../helpers/images.js'
import { runChild } from '../helpers/mount.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'

const CLI = join(process.cwd(), 'bin/edgestar')
const MIB = 1024 * 1024

describe('pulling onto a file system with too little room for the image', () => {
  let work: string
  let registry: RegistryServer
  let chunks: string
  let ref: string

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'edgestar-disk-full-'))
    registry = await startRegistry()
    const tree = join(work, 'tree')
    await mkdir(tree)
    // 24 MiB of incompressible files; the chunk cache gets room for about 8.
    for (let i = 0; i < 24; i++) await writeFile(join(tree, `f${i}`), randomBytes(MIB))
    const blobPath = join(work, 'layer.estargz')
    const layer = await convertLayer(tree, blobPath, { chunkSizeBytes: MIB, level: 1 })
    ref = `${registry.host}/full/app:1`
    const pusher = new RegistryClient({ dockerConfigPath: null })
    await pushTestImage(pusher, ref, [{ blob: await readFile(blobPath), ...layer }])
    await pusher.close()

    chunks = join(work, 'state', 'chunks')
    await mkdir(chunks, { recursive: true })
    const size = FREE_SPACE_MARGIN_BYTES + 8 * MIB
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'edgestar-test-full', chunks])
  })

  after(async () => {
    if (chunks) execFileSync('umount', ['-l', chunks])
    await registry?.stop()
    if (work) await rm(work, { recursive: true, force: true })
  })

  it('fails with EDGESTAR_STORE_DISK_FULL, keeps what it stored, and never calls the link down', async () => {
    const state = join(work, 'state')
    const pull = await runChild(CLI, ['pull', ref, '--state-dir', state, '--json'], {
      env: { ...process.env, EDGESTAR_LOG_LEVEL: 'warn' },
    })
    assert.notEqual(pull.code, 0)
    const result = JSON.parse(pull.stdout.trim().split('\n').at(-1)!)
    assert.equal(result.error.code, 'EDGESTAR_STORE_DISK_FULL', pull.stdout)
    assert.match(result.error.hint, /cache limit/)
    assert.doesNotMatch(pull.stderr, /link state changed/, 'a full disk is not a link failure')

    const stored = presentObjectCount(state)
    assert.ok(stored > 0 && stored < 24, `${stored} chunks stored`)

    // With room again, the pull fetches the rest and verifies the layer.
    execFileSync('mount', ['-o', `remount,size=${FREE_SPACE_MARGIN_BYTES + 64 * MIB}`, chunks])
    const again = await runChild(CLI, ['pull', ref, '--state-dir', state, '--json'])
    assert.equal(again.code, 0, again.stderr)
    const done = JSON.parse(again.stdout.trim().split('\n').at(-1)!)
    assert.equal(done.verifiedLayers, 1)
    assert.ok(done.bytesFetched < done.totalBytes, 'what the first pull stored is kept')
  })
})
