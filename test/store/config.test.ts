import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { settingsFrom } from '../../src/cli/options.js'
import { DEFAULT_CONFIG_PATH, loadConfig } from '../../src/config.js'

const dir = mkdtempSync(join(tmpdir(), 'edgestar-config-'))
after(() => rmSync(dir, { recursive: true, force: true }))

function configFile(body: unknown): string {
  const path = join(dir, `config-${Math.random().toString(36).slice(2)}.json`)
  writeFileSync(path, JSON.stringify(body))
  return path
}

describe('config', () => {
  it('uses the defaults when the default file is absent', {
    skip: existsSync(DEFAULT_CONFIG_PATH),
  }, () => {
    const config = loadConfig({ env: {} })
    assert.equal(config.stateDir, '/var/lib/edgestar')
    assert.equal(config.offlineWaitMs, 30_000)
    assert.equal(config.bandwidthBytesPerSec, 0)
  })

  it('reads the file, then lets EDGESTAR_* and command-line options win', () => {
    const path = configFile({
      stateDir: '/srv/a',
      bandwidth: '512KiB',
      offlineWait: '5s',
      insecureRegistries: ['reg:5000'],
      mqtt: { url: 'x' },
    })
    const config = loadConfig({ configPath: path, env: { EDGESTAR_BANDWIDTH: '1MiB' } })
    assert.equal(config.stateDir, '/srv/a')
    assert.equal(config.bandwidthBytesPerSec, 1024 * 1024)
    assert.equal(config.offlineWaitMs, 5000)
    assert.deepEqual(config.raw.mqtt, { url: 'x' })

    const settings = settingsFrom({
      config: path,
      stateDir: '/srv/b',
      insecureRegistry: ['other:1'],
      offlineWait: '250ms',
    })
    assert.equal(settings.stateDir, '/srv/b')
    assert.deepEqual(settings.insecureRegistries, ['reg:5000', 'other:1'])
    assert.equal(settings.offlineWaitMs, 250)
  })

  it('names the key and the expected form for a bad value', () => {
    assert.throws(
      () => loadConfig({ configPath: configFile({ allowUnverified: 'yes' }), env: {} }),
      {
        code: 'EDGESTAR_CONFIG_INVALID',
      },
    )
    assert.throws(() => loadConfig({ configPath: configFile({ bandwidth: 'fast' }), env: {} }), {
      code: 'EDGESTAR_CONFIG_BAD_SIZE',
    })
    assert.throws(() => loadConfig({ configPath: join(dir, 'missing.json'), env: {} }), {
      code: 'EDGESTAR_CONFIG_INVALID',
    })
  })
})
