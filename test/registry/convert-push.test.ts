import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { openLayer, readFileRange } from '../../src/estargz/index.js'
import { hostPlatform, RegistryClient } from '../../src/registry/index.js'
import { makeTarLayer, pushTestImage } from '../helpers/images.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'

const execFileAsync = promisify(execFile)
const CLI = new URL('../../../bin/edgestar', import.meta.url).pathname
const TOC_DIGEST = 'containerd.io/snapshot/stargz/toc.digest'
const UNCOMPRESSED_SIZE = 'io.containers.estargz.uncompressed-size'

async function edgestar(args: string[]): Promise<unknown> {
  const { stdout } = await execFileAsync(CLI, [...args, '--json'], {
    env: { ...process.env, EDGESTAR_LOG_LEVEL: 'error', DOCKER_CONFIG: '/nonexistent' },
  })
  return JSON.parse(stdout.trim().split('\n').at(-1) as string)
}

describe('edgestar convert --push', () => {
  let registry: RegistryServer
  let client: RegistryClient
  let dir: string

  before(async () => {
    registry = await startRegistry()
    client = new RegistryClient({ dockerConfigPath: null })
    dir = await mkdtemp(join(tmpdir(), 'edgestar-convert-push-'))
  })
  after(async () => {
    await client?.close()
    await registry?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('publishes a single-layer image whose manifest carries the TOC digest and size', async () => {
    const input = join(dir, 'rootfs')
    await mkdir(join(input, 'etc'), { recursive: true })
    await writeFile(join(input, 'etc', 'hello.txt'), 'hello from edgestar\n'.repeat(1000))
    const out = join(dir, 'layer.blob')

    const result = (await edgestar([
      'convert',
      input,
      out,
      '--push',
      `${registry.host}/single:1`,
      '--platform',
      'linux/arm64',
    ])) as {
      layer: { digest: string; tocDigest: string; diffID: string; uncompressedSize: number }
      pushed: { manifestDigest: string; platform: string }
    }
    assert.equal(result.pushed.platform, 'linux/arm64')

    const image = await client.resolve(`${registry.host}/single:1`, { platform: 'linux/arm64' })
    assert.equal(image.manifestDigest, result.pushed.manifestDigest)
    assert.equal(image.layers.length, 1)
    const layer = image.layers[0]!
    assert.equal(layer.digest, result.layer.digest)
    assert.equal(layer.diffID, result.layer.diffID)
    assert.equal(layer.annotations[TOC_DIGEST], result.layer.tocDigest)
    assert.equal(layer.annotations[UNCOMPRESSED_SIZE], String(result.layer.uncompressedSize))

    // The blob reads lazily over HTTP through the format reader, TOC checked against the annotation.
    const reader = client.blobReader(image.reference, layer.digest, layer.size)
    const index = await openLayer(reader, { tocDigest: layer.annotations[TOC_DIGEST] })
    const text = await readFileRange(reader, index, 'etc/hello.txt', { offset: 0, length: 19 })
    assert.equal(text.toString(), 'hello from edgestar')
  })

  it("defaults the platform to the machine's own", async () => {
    const input = await makeTarLayer({ 'x.txt': 'x' })
    const path = join(dir, 'x.tar.gz')
    await writeFile(path, input.blob)
    await edgestar(['convert', path, '--push', `${registry.host}/default:1`])
    const image = await client.resolve(`${registry.host}/default:1`)
    assert.equal(image.platform.architecture, hostPlatform().architecture)
  })

  it('sets the run config of a pushed local INPUT, PATH defaulted', async () => {
    const input = await makeTarLayer({ 'app/main.sh': 'echo hi\n' })
    const path = join(dir, 'app.tar.gz')
    await writeFile(path, input.blob)
    const ref = `${registry.host}/run:1`
    await edgestar([
      'convert',
      path,
      '--push',
      ref,
      '--cmd',
      '["sh","/app/main.sh"]',
      '--entrypoint',
      '/usr/bin/env -i',
      '--env',
      'APP_MODE=edge',
      '--workdir',
      '/app',
      '--user',
      '1000:1000',
    ])
    const run = (await client.resolve(ref)).config.config
    assert.deepEqual(run?.Cmd, ['sh', '/app/main.sh'])
    assert.deepEqual(run?.Entrypoint, ['/usr/bin/env', '-i'])
    assert.deepEqual(run?.Env, [
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'APP_MODE=edge',
    ])
    assert.equal(run?.WorkingDir, '/app')
    assert.equal(run?.User, '1000:1000')

    // Without any run option the image still gets a PATH; a bad value is refused by code.
    await edgestar(['convert', path, '--push', `${registry.host}/run:2`])
    const plain = (await client.resolve(`${registry.host}/run:2`)).config.config
    assert.ok(plain?.Env?.[0]?.startsWith('PATH=/usr/local/sbin'))
    await assert.rejects(
      execFileAsync(CLI, ['convert', path, '--push', `${registry.host}/run:3`, '--cmd', '[1]'], {
        env: { ...process.env, EDGESTAR_LOG_LEVEL: 'error', DOCKER_CONFIG: '/nonexistent' },
      }),
      (err: { stdout: string; stderr: string }) =>
        /EDGESTAR_CONVERT_BAD_OPTION/.test(err.stdout + err.stderr),
    )
  })

  it('replaces the source config fields of a registry INPUT with the run options', async () => {
    const a = await makeTarLayer({ 'bin/a': 'layer a\n' })
    await pushTestImage(client, `${registry.host}/src-run:1`, [a], {
      platform: { os: 'linux', architecture: 'arm64' },
    })
    const source = (await client.resolve(`${registry.host}/src-run:1`)).config.config ?? {}
    await edgestar([
      'convert',
      `${registry.host}/src-run:1`,
      '--push',
      `${registry.host}/dst-run:1`,
      '--platform',
      'linux/arm64',
      '--cmd',
      'python3 -m app',
      '--env',
      'MODE=edge',
    ])
    const run = (await client.resolve(`${registry.host}/dst-run:1`)).config.config
    assert.deepEqual(run?.Cmd, ['python3', '-m', 'app'])
    assert.deepEqual(run?.Env, [...(source.Env ?? []), 'MODE=edge'])
    assert.deepEqual(run?.Entrypoint, source.Entrypoint)
  })

  it('converts every layer of an image in the registry and pushes the result', async () => {
    const a = await makeTarLayer({ 'bin/a': 'layer a\n' })
    const b = await makeTarLayer({ 'etc/b': 'layer b\n' })
    await pushTestImage(client, `${registry.host}/plain:1`, [a, b], {
      platform: { os: 'linux', architecture: 'arm64' },
    })

    const result = (await edgestar([
      'convert',
      `${registry.host}/plain:1`,
      '--push',
      `${registry.host}/lazy:1`,
      '--platform',
      'linux/arm64',
    ])) as { layers: { digest: string; tocDigest: string }[]; pushed: { manifestDigest: string } }
    assert.equal(result.layers.length, 2)

    const image = await client.resolve(`${registry.host}/lazy:1`, { platform: 'linux/arm64' })
    assert.equal(image.manifestDigest, result.pushed.manifestDigest)
    for (const [i, layer] of image.layers.entries()) {
      assert.equal(layer.annotations[TOC_DIGEST], result.layers[i]!.tocDigest)
      const reader = client.blobReader(image.reference, layer.digest, layer.size)
      const index = await openLayer(reader, { tocDigest: layer.annotations[TOC_DIGEST] })
      const name = i === 0 ? 'bin/a' : 'etc/b'
      assert.equal(
        (await readFileRange(reader, index, name, { offset: 0, length: 7 })).toString(),
        `layer ${i === 0 ? 'a' : 'b'}`,
      )
    }
  })

  it('keeps the converted blobs of a registry INPUT in OUT, a directory made if missing', async () => {
    const a = await makeTarLayer({ 'bin/a': 'layer a\n' })
    await pushTestImage(client, `${registry.host}/tree:v1`, [a], {
      platform: { os: 'linux', architecture: 'arm64' },
    })
    const out = join(dir, 'out.blob')
    const result = (await edgestar([
      'convert',
      `${registry.host}/tree:v1`,
      out,
      '--platform',
      'linux/arm64',
    ])) as { layers: { digest: string }[] }
    assert.equal(result.layers.length, 1)
    assert.ok((await stat(join(out, 'layer-0.blob'))).isFile())
    assert.deepEqual(await readdir(out), ['layer-0.blob'])

    // An existing file as OUT is refused with a code, before anything is fetched.
    const file = join(dir, 'a-file')
    await writeFile(file, 'x')
    await assert.rejects(
      execFileAsync(CLI, ['convert', `${registry.host}/tree:v1`, file], {
        env: { ...process.env, EDGESTAR_LOG_LEVEL: 'error', DOCKER_CONFIG: '/nonexistent' },
      }),
      (err: { stderr: string }) => {
        assert.match(err.stderr, /EDGESTAR_CONVERT_OUTPUT_NOT_DIRECTORY/)
        assert.match(err.stderr, /hint: .*directory/)
        return true
      },
    )

    const help = await execFileAsync(CLI, ['convert', '--help'])
    assert.match(help.stdout, /OUT-DIR keeps the converted blobs/)
  })
})
