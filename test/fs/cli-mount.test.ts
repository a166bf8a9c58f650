import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { abortMount, findFuseMounts } from '../../src/fs/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import { pushTestImage } from '../helpers/images.js'
import { runChild } from '../helpers/mount.js'
import { startRegistry } from '../helpers/registry-server.js'

const CLI = join(process.cwd(), 'bin/edgestar')
const FIXTURE = join(
  process.env.EDGESTAR_FIXTURES_DIR ?? '/work/shared/fixtures/estargz',
  'mixed.estargz.tar.gz',
)

async function edgestar(args: string[]): Promise<{ code: number; json: Record<string, unknown> }> {
  const result = await runChild(CLI, [...args, '--json'])
  const line = result.stdout.trim().split('\n').pop() ?? '{}'
  return { code: result.code, json: JSON.parse(line) as Record<string, unknown> }
}

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return
    await sleep(50)
  }
  assert.fail('condition not reached in 10 s')
}

describe('edgestar mount and umount', () => {
  let dir: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'edgestar-cli-mnt-'))
  })

  after(async () => {
    await abortMount(dir).catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })

  it('mounts in the background and unmounts through the serving process', async () => {
    const mounted = await edgestar(['mount', '--layer', FIXTURE, dir, '--detach'])
    assert.equal(mounted.code, 0)
    const listing = await runChild('ls', [dir])
    assert.match(listing.stdout, /xattr\.txt/)

    const refused = await edgestar(['mount', '--layer', FIXTURE, dir])
    assert.equal((refused.json.error as { code: string }).code, 'EDGESTAR_FS_MOUNT_BUSY')

    const unmounted = await edgestar(['umount', dir])
    assert.equal(unmounted.json.how, 'signalled')
    assert.equal((await findFuseMounts(dir)).length, 0)
  })

  it('mounts again over a mount left by a killed process', async () => {
    const mounted = await edgestar(['mount', '--layer', FIXTURE, dir, '--detach'])
    process.kill(mounted.json.pid as number, 'SIGKILL')
    await until(async () => (await runChild('ls', [dir])).code !== 0)

    const again = await edgestar(['mount', '--layer', FIXTURE, dir, '--detach'])
    assert.equal(again.code, 0)
    assert.match((await runChild('ls', [dir])).stdout, /xattr\.txt/)
    assert.equal((await edgestar(['umount', dir])).json.how, 'signalled')
  })

  it('mounts an image by reference from the registry into a state directory', async () => {
    const server = await startRegistry()
    const stateDir = await mkdtemp(join(tmpdir(), 'edgestar-cli-state-'))
    try {
      const blob = await readFile(FIXTURE)
      const sidecar = JSON.parse(await readFile(FIXTURE.replace(/\.tar\.gz$/, '.json'), 'utf8'))
      const pusher = new RegistryClient({ dockerConfigPath: null })
      const ref = `${server.host}/fs/mixed:1`
      await pushTestImage(pusher, ref, [
        {
          blob,
          diffID: sidecar.diffID,
          mediaType: sidecar.mediaType,
          annotations: sidecar.annotations,
        },
      ])
      await pusher.close()

      const mounted = await edgestar(['mount', ref, dir, '--state-dir', stateDir, '--detach'])
      assert.equal(mounted.code, 0, JSON.stringify(mounted.json))
      const content = await runChild('cat', [join(dir, 'etc/config')])
      assert.equal(
        createHash('sha256').update(content.stdout).digest('hex'),
        sidecar.files.find((file: { name: string }) => file.name === 'etc/config').sha256,
      )
      assert.equal((await edgestar(['umount', dir])).json.how, 'signalled')
    } finally {
      await abortMount(dir).catch(() => {})
      await server.stop()
      await rm(stateDir, { recursive: true, force: true })
    }
  })

  it('unmounts cleanly and exits when the foreground process gets SIGTERM', async () => {
    const child = spawn(CLI, ['mount', '--layer', FIXTURE, dir], { stdio: 'ignore' })
    const exited = new Promise<number | null>((done) => child.on('exit', done))
    await until(async () => (await findFuseMounts(dir)).length > 0)

    child.kill('SIGTERM')
    assert.equal(await exited, 0)
    assert.equal((await findFuseMounts(dir)).length, 0)
  })
})
