import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { promisify } from 'node:util'
import { openLayer, PREFETCH_LANDMARK } from '../../src/estargz/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import { rootfsLayer, testRootfs } from '../fs/rootfs-image.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'

const execFileAsync = promisify(execFile)
const EDGESTAR = join(process.cwd(), 'bin/edgestar')
const WORKLOAD = ['python3', '-c', 'import argparse, email.message, logging; print("ready")']

const rootfs = testRootfs()
let registry: RegistryServer
let client: RegistryClient
let stateDir: string

before(async () => {
  if (!rootfs) return
  registry = await startRegistry()
  client = new RegistryClient({ dockerConfigPath: null })
  stateDir = await mkdtemp(join(tmpdir(), 'edgestar-optimize-'))

  const layer = await rootfsLayer(rootfs)
  await client.pushImage(`${registry.host}/app:src`, {
    layers: [
      {
        source: layer.blob,
        mediaType: layer.mediaType,
        diffID: layer.diffID,
        annotations: layer.annotations ?? {},
      },
    ],
    config: { config: { Cmd: ['/bin/sh', '-c', 'exit 3'] } },
  })
})

after(async () => {
  await client?.close()
  await registry?.stop()
  if (stateDir) await rm(stateDir, { recursive: true, force: true })
})

test('optimize records the workload reads and pushes them first, before the landmark', {
  skip: rootfs ? false : 'EDGESTAR_TEST_ROOTFS is not set (run through scripts/test.sh)',
}, async () => {
  const { stdout } = await execFileAsync(
    EDGESTAR,
    [
      'optimize',
      `${registry.host}/app:src`,
      `${registry.host}/app:optimized`,
      '--state-dir',
      stateDir,
      '--run-for',
      '60s',
      '--json',
      '--',
      ...WORKLOAD,
    ],
    { maxBuffer: 16 * 1024 * 1024 },
  )
  const result = JSON.parse(stdout) as { ok: boolean; recordingEnd: number; prioritized: string[] }
  assert.equal(result.ok, true)
  assert.equal(result.recordingEnd, 0, 'the recorded workload exits 0')
  // Python reads argparse from its compiled cache, so match on the module name.
  assert.ok(result.prioritized.includes('usr/bin/python3.11'), 'the interpreter is prioritized')
  assert.ok(
    result.prioritized.some((path) => path.includes('argparse')),
    'argparse is prioritized',
  )

  // The optimized layer lists the recorded files first, then the prefetch landmark.
  const image = await client.resolve(`${registry.host}/app:optimized`)
  const [layer] = image.layers
  assert.ok(layer)
  const index = await openLayer(client.blobReader(image.reference, layer.digest, layer.size))
  const files = index.entries.filter((entry) => entry.type === 'reg' || entry.type === 'hardlink')
  const landmarkAt = files.findIndex((entry) => entry.name === PREFETCH_LANDMARK)
  assert.ok(landmarkAt > 0, 'the layer has a prefetch landmark after some files')
  const beforeLandmark = new Set(files.slice(0, landmarkAt).map((entry) => entry.name))
  for (const path of result.prioritized) {
    assert.ok(beforeLandmark.has(path), `${path} comes before the landmark`)
  }

  // The image config is carried over: the command of the source stays the image's command.
  assert.deepEqual(image.config.config?.Cmd, ['/bin/sh', '-c', 'exit 3'])
})

test('optimize refuses a workload that exits non-zero, showing its last output', {
  skip: rootfs ? false : 'EDGESTAR_TEST_ROOTFS is not set (run through scripts/test.sh)',
}, async () => {
  // stdout and stderr are two pipes with no order between them; the pause makes "boom" the
  // last line the log receives.
  const script = 'for i in $(seq 1 15); do echo "line $i"; done; sleep 0.5; echo "boom" >&2; exit 3'
  await assert.rejects(
    execFileAsync(EDGESTAR, [
      'optimize',
      `${registry.host}/app:src`,
      `${registry.host}/app:failed`,
      '--state-dir',
      stateDir,
      '--json',
      '--',
      '/bin/sh',
      '-c',
      script,
    ]),
    (err: { stdout: string }) => {
      const body = JSON.parse(err.stdout) as {
        error: { code: string; message: string; hint: string }
      }
      assert.equal(body.error.code, 'EDGESTAR_OPTIMIZE_WORKLOAD_FAILED')
      assert.match(body.error.message, /exited with code 3/)
      assert.match(body.error.message, /line 15/)
      assert.match(body.error.message, /boom/)
      assert.doesNotMatch(body.error.message, /line 5\b/, 'only the last lines are shown')
      assert.match(body.error.hint, /--allow-failure/)
      return true
    },
  )
  // Nothing was pushed.
  await assert.rejects(client.resolve(`${registry.host}/app:failed`))
})

test('optimize refuses a bad --network with a clear error', async () => {
  await assert.rejects(
    execFileAsync(EDGESTAR, ['optimize', 'a/b:1', 'a/b:2', '--network', 'bridge', '--json']),
    (err: { stdout: string }) => {
      const body = JSON.parse(err.stdout) as { error: { code: string } }
      assert.equal(body.error.code, 'EDGESTAR_CLI_BAD_OPTION')
      return true
    },
  )
})
