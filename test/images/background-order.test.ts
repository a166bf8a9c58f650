import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { layersInBackgroundOrder } from '../../src/fetch/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import { pushTestImage, sha256 } from '../helpers/images.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'
import { lastJsonLine, runCli } from './cli.js'
import { fixtureLayer } from './fixture-image.js'

const work = mkdtempSync(join(tmpdir(), 'edgestar-bg-order-'))
const bottom = fixtureLayer('large.estargz')
const top = fixtureLayer('prioritized.estargz')
let registry: RegistryServer
let ref: string

before(async () => {
  registry = await startRegistry()
  ref = `${registry.host}/order/two-layers:1`
  const client = new RegistryClient({ dockerConfigPath: null })
  await pushTestImage(client, ref, [bottom, top])
  await client.close()
})

after(async () => {
  await registry?.stop()
  rmSync(work, { recursive: true, force: true })
})

/** The layers of the units a capped `edgestar pull` asked for, in the order it asked. */
async function pulledLayerOrder(name: string, extraArgs: string[]): Promise<string[]> {
  const trace = join(work, `${name}.trace`)
  const run = await runCli(
    ['pull', ref, '--bandwidth', '64MiB', '--state-dir', join(work, name), ...extraArgs],
    { EDGESTAR_FETCH_TRACE: trace },
  )
  assert.equal(run.code, 0, run.stderr)
  const layers = readFileSync(trace, 'utf8')
    .trim()
    .split('\n')
    .map((line) => line.split(' ')[0]!)
  return layers.filter((layer, i) => layers[i - 1] !== layer)
}

describe('background fetch order', () => {
  it('orders layers bottom first by default and top first when asked', async () => {
    const [bottomDigest, topDigest] = [sha256(bottom.blob), sha256(top.blob)]
    assert.deepEqual(layersInBackgroundOrder(['a', 'b', 'c'], 'top-first'), ['c', 'b', 'a'])

    assert.deepEqual(await pulledLayerOrder('default', []), [bottomDigest, topDigest])
    assert.deepEqual(await pulledLayerOrder('top-first', ['--background-order', 'top-first']), [
      topDigest,
      bottomDigest,
    ])
  })

  it('refuses an unknown order with the choices', async () => {
    const run = await runCli([
      'pull',
      ref,
      '--background-order',
      'sideways',
      '--state-dir',
      join(work, 'bad'),
      '--json',
    ])
    assert.notEqual(run.code, 0)
    const error = lastJsonLine(run.stdout.toString()).error as { code: string; hint: string }
    assert.equal(error.code, 'EDGESTAR_CONFIG_INVALID')
    assert.match(error.hint, /bottom-first, top-first/)
  })
})
