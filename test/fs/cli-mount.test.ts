import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { convertLayer } from '../../src/estargz/index.js'
import { abortMount, findFuseMounts } from '../../src/fs/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import { presentObjectCount, slotAccounting } from '../helpers/cache-objects.js'
import { pushTestImage } from '../helpers/images.js'
import { runChild } from '../helpers/mount.js'
import { startRegistry } from '../helpers/registry-server.js'

const CLI = join(process.cwd(), 'bin/edgestar')
const FIXTURE = join(
  process.env.EDGESTAR_FIXTURES_DIR ?? '/work/shared/fixtures/estargz',
  'mixed.estargz.tar.gz',
)

/** Logs of background mounts (in the temp dir, named after the mount point), removed at the end. */
const backgroundLogs = new Set<string>()

async function edgestar(args: string[]): Promise<{ code: number; json: Record<string, unknown> }> {
  const result = await runChild(CLI, [...args, '--json'])
  const line = result.stdout.trim().split('\n').pop() ?? '{}'
  const json = JSON.parse(line) as Record<string, unknown>
  if (typeof json.logFile === 'string') backgroundLogs.add(json.logFile)
  return { code: result.code, json }
}

after(async () => {
  for (const log of backgroundLogs) await rm(log, { force: true })
})

/** An eStargz layer of `count` incompressible 64 KiB files: one chunk, one write each. */
async function manyChunkLayer(workDir: string, count: number) {
  const tree = join(workDir, 'tree')
  await mkdir(join(tree, 'data'), { recursive: true })
  for (let i = 0; i < count; i++)
    await writeFile(join(tree, 'data', `f${i}`), randomBytes(64 * 1024))
  const blobPath = join(workDir, 'layer.estargz')
  const result = await convertLayer(tree, blobPath, { chunkSizeBytes: 64 * 1024, level: 1 })
  return {
    blob: await readFile(blobPath),
    diffID: result.diffID,
    mediaType: result.mediaType,
    annotations: result.annotations,
  }
}

/** An eStargz layer holding `version.txt` with `text`, built in `workDir`. */
async function versionLayer(workDir: string, text: string) {
  const tree = join(workDir, `tree-${text}`)
  await mkdir(tree, { recursive: true })
  await writeFile(join(tree, 'version.txt'), text)
  const blobPath = join(workDir, `layer-${text}.estargz`)
  const result = await convertLayer(tree, blobPath, { level: 1 })
  return {
    blob: await readFile(blobPath),
    diffID: result.diffID,
    mediaType: result.mediaType,
    annotations: result.annotations,
  }
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

    // The background process's own error comes back, not a generic one.
    const refusedDetached = await edgestar(['mount', '--layer', FIXTURE, dir, '--detach'])
    const error = refusedDetached.json.error as { code: string; hint: string }
    assert.equal(error.code, 'EDGESTAR_FS_MOUNT_BUSY')
    assert.match(error.hint, /edgestar umount .*background mount log: \/.*\.log/)

    const unmounted = await edgestar(['umount', dir])
    assert.equal(unmounted.json.how, 'signalled')
    assert.equal(unmounted.json.servingExited, true)
    assert.equal((await findFuseMounts(dir)).length, 0)
  })

  it('refuses to unmount a mount in use, and aborts it with --force', async () => {
    const mounted = await edgestar(['mount', '--layer', FIXTURE, dir, '--detach'])
    assert.equal(mounted.code, 0)
    // A process with its working directory inside keeps the mount busy, as for umount(8).
    const holder = spawn('sleep', ['60'], { cwd: dir, stdio: 'ignore' })
    try {
      const refused = await edgestar(['umount', dir])
      assert.equal(refused.code, 1)
      const error = refused.json.error as { code: string; hint: string }
      assert.equal(error.code, 'EDGESTAR_FS_MOUNT_IN_USE')
      assert.match(error.hint, /fuser -vm .*--force/)
      assert.match((await runChild('ls', [dir])).stdout, /xattr\.txt/, 'still served')

      const forced = await edgestar(['umount', dir, '--force'])
      assert.equal(forced.code, 0)
      assert.equal(forced.json.how, 'aborted')
      assert.equal((await findFuseMounts(dir)).length, 0)
    } finally {
      holder.kill('SIGKILL')
    }
  })

  it('names a missing mount point, in the foreground and with --detach', async () => {
    const missing = join(dir, 'no-such-dir')
    for (const extra of [[], ['--detach']]) {
      const result = await edgestar(['mount', '--layer', FIXTURE, missing, ...extra])
      assert.equal(result.code, 1)
      const error = result.json.error as { code: string; hint: string }
      assert.equal(error.code, 'EDGESTAR_FS_NO_MOUNTPOINT')
      assert.match(error.hint, /mkdir -p/)
    }
  })

  it('mounts, tunes and unmounts a mount point reached through symlinks', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'edgestar-cli-link-'))
    try {
      // Both a symlinked parent and a symlinked last component, as /var -> /data/var.
      await mkdir(join(parent, 'real', 'mnt'), { recursive: true })
      await symlink('real', join(parent, 'var'))
      await symlink('mnt', join(parent, 'real', 'link'))
      const viaLinks = join(parent, 'var', 'link')

      const mounted = await edgestar(['mount', '--layer', FIXTURE, viaLinks, '--detach'])
      assert.equal(mounted.code, 0, JSON.stringify(mounted.json))
      const [info] = await findFuseMounts(viaLinks)
      assert.equal(info?.mountpoint, join(parent, 'real', 'mnt'))
      const readAhead = await readFile(`/sys/class/bdi/0:${info!.connectionId}/read_ahead_kb`)
      assert.equal(Number(readAhead), 1024)

      assert.equal((await edgestar(['umount', viaLinks])).json.how, 'signalled')
      assert.deepEqual(await findFuseMounts(viaLinks), [])
    } finally {
      await abortMount(join(parent, 'real', 'mnt')).catch(() => {})
      await rm(parent, { recursive: true, force: true })
    }
  })

  it('gives mount points with the same last component their own log files', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'edgestar-cli-logs-'))
    try {
      const logs: string[] = []
      for (const name of ['a', 'b']) {
        const mnt = join(parent, name, 'mnt')
        await mkdir(mnt, { recursive: true })
        const mounted = await edgestar(['mount', '--layer', FIXTURE, mnt, '--detach'])
        assert.equal(mounted.code, 0, JSON.stringify(mounted.json))
        logs.push(mounted.json.logFile as string)
        assert.equal((await edgestar(['umount', mnt])).json.how, 'signalled')
      }
      assert.notEqual(logs[0], logs[1])
      assert.match(logs[0]!, /edgestar-mount-mnt-/)
      await Promise.all(logs.map((log) => rm(log, { force: true })))
    } finally {
      await rm(parent, { recursive: true, force: true })
    }
  })

  it('tells a user who may not open /dev/fuse to run as root', {
    skip: process.getuid?.() !== 0 ? 'needs root to switch to nobody' : false,
  }, async () => {
    const open = await mkdtemp(join(tmpdir(), 'edgestar-cli-nobody-'))
    try {
      await chmod(open, 0o777)
      const result = await runChild('runuser', [
        '-u',
        'nobody',
        '--',
        CLI,
        'mount',
        '--layer',
        FIXTURE,
        open,
        '--json',
      ])
      const body = JSON.parse(result.stdout.trim().split('\n').pop() ?? '{}')
      assert.equal(body.error.code, 'EDGESTAR_FS_FUSE_DENIED', result.stderr)
      assert.match(body.error.hint, /root/)
    } finally {
      await rm(open, { recursive: true, force: true })
    }
  })

  it('mounts again over a mount left by a killed process', async () => {
    const mounted = await edgestar(['mount', '--layer', FIXTURE, dir, '--detach'])
    // Used before the kill, as a deployment's mount is: the kernel then answers a stat of
    // the root from its attribute cache even with the server gone.
    assert.equal((await runChild('stat', [dir])).code, 0)
    process.kill(mounted.json.pid as number, 'SIGKILL')
    await until(async () => (await runChild('ls', [dir])).code !== 0)
    assert.equal((await runChild('stat', [dir])).code, 0)

    const again = await edgestar(['mount', '--layer', FIXTURE, dir, '--detach'])
    assert.equal(again.code, 0, JSON.stringify(again.json))
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
      // The served image is pinned: gc leaves its chunks until the mount is gone.
      const gcWhileMounted = await edgestar([
        'cache',
        'gc',
        '--target',
        '0',
        '--state-dir',
        stateDir,
      ])
      assert.equal(gcWhileMounted.json.evictedChunks, 0)
      assert.equal((await edgestar(['umount', dir])).json.how, 'signalled')
      const gcAfter = await edgestar(['cache', 'gc', '--target', '0', '--state-dir', stateDir])
      assert.ok((gcAfter.json.evictedChunks as number) > 0, JSON.stringify(gcAfter.json))
    } finally {
      await abortMount(dir).catch(() => {})
      await server.stop()
      await rm(stateDir, { recursive: true, force: true })
    }
  })

  it('serves the image a moved tag names now, and the recorded one once the registry is gone', async () => {
    const server = await startRegistry()
    const work = await mkdtemp(join(tmpdir(), 'edgestar-cli-work-'))
    const stateDir = join(work, 'state')
    const ref = `${server.host}/fs/moving:latest`
    const catVersion = async (): Promise<unknown> => {
      const result = await edgestar(['cat', ref, 'version.txt', '--state-dir', stateDir])
      return Buffer.from(String(result.json.contentBase64), 'base64').toString('utf8')
    }
    try {
      const pusher = new RegistryClient({ dockerConfigPath: null })
      await pushTestImage(pusher, ref, [await versionLayer(work, 'v1')])
      assert.equal(await catVersion(), 'v1')
      await pushTestImage(pusher, ref, [await versionLayer(work, 'v2')])
      await pusher.close()
      assert.equal(await catVersion(), 'v2')

      const mounted = await edgestar(['mount', ref, dir, '--state-dir', stateDir, '--detach'])
      assert.equal(mounted.code, 0, JSON.stringify(mounted.json))
      assert.equal((await runChild('cat', [join(dir, 'version.txt')])).stdout, 'v2')
      assert.equal((await edgestar(['umount', dir])).json.how, 'signalled')

      // Refused connections: the recorded v2 serves (and a warning says so).
      await server.stop()
      const offline = await runChild(CLI, ['cat', ref, 'version.txt', '--state-dir', stateDir])
      assert.equal(offline.code, 0, offline.stderr)
      assert.equal(offline.stdout, 'v2')
      assert.match(offline.stderr, /registry unreachable; using the image recorded/)
    } finally {
      await abortMount(dir).catch(() => {})
      await server.stop().catch(() => {})
      await rm(work, { recursive: true, force: true })
    }
  })

  it('leaves no unrecorded chunk files when umount returns mid background fetch', async () => {
    const server = await startRegistry()
    const work = await mkdtemp(join(tmpdir(), 'edgestar-cli-work-'))
    const stateDir = join(work, 'state')
    try {
      const pusher = new RegistryClient({ dockerConfigPath: null })
      const ref = `${server.host}/fs/many:1`
      await pushTestImage(pusher, ref, [await manyChunkLayer(work, 400)])
      await pusher.close()

      const mounted = await edgestar(['mount', ref, dir, '--state-dir', stateDir, '--detach'])
      assert.equal(mounted.code, 0, JSON.stringify(mounted.json))
      // Unmount while the background fetch is writing chunks.
      await until(async () => presentObjectCount(stateDir) >= 20)
      const unmounted = await edgestar(['umount', dir])
      assert.equal(unmounted.json.how, 'signalled')
      assert.equal(unmounted.json.servingExited, true)

      // Every slot handed out belongs to a present row: no write was left half done.
      const slots = slotAccounting(stateDir)
      assert.equal(slots.reservedBytes, slots.accountedBytes)
    } finally {
      await abortMount(dir).catch(() => {})
      await server.stop()
      await rm(work, { recursive: true, force: true })
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
