import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { settingsFrom } from '../../src/cli/options.js'
import { CONFIG_FILE_KEYS, DEFAULT_CONFIG_PATH, loadConfig, nearestKey } from '../../src/config.js'
import type { EdgestarError } from '../../src/errors.js'

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
      agent: { runtime: 'chroot' },
    })
    const config = loadConfig({ configPath: path, env: { EDGESTAR_BANDWIDTH: '1MiB' } })
    assert.equal(config.stateDir, '/srv/a')
    assert.equal(config.bandwidthBytesPerSec, 1024 * 1024)
    assert.equal(config.offlineWaitMs, 5000)
    assert.deepEqual(config.raw.agent, { runtime: 'chroot' })

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
  })

  it('refuses an unknown top-level key and suggests the nearest known one', () => {
    const path = configFile({ bandwith: '1MiB' })
    assert.throws(
      () => loadConfig({ configPath: path, env: {} }),
      (err: EdgestarError) => {
        assert.equal(err.code, 'EDGESTAR_CONFIG_INVALID')
        assert.match(err.message, /unknown key "bandwith"/)
        assert.match(err.hint ?? '', /did you mean "bandwidth"\?.*stateDir/)
        return true
      },
    )
    // The same check for every command: they all read the file through settingsFrom.
    assert.throws(() => settingsFrom({ config: path }), { code: 'EDGESTAR_CONFIG_INVALID' })
    assert.equal(nearestKey('stateDirectory', CONFIG_FILE_KEYS), undefined)
    assert.equal(nearestKey('cachelimit', CONFIG_FILE_KEYS), 'cacheLimit')
  })

  it('names the line and column of bad JSON', () => {
    const path = join(dir, 'bad.json')
    writeFileSync(path, '{\n  "stateDir": "/srv/a",\n  "bandwidth": "1MiB",\n}\n')
    assert.throws(
      () => loadConfig({ configPath: path, env: {} }),
      (err: EdgestarError) => {
        assert.equal(err.code, 'EDGESTAR_CONFIG_INVALID')
        assert.match(err.message, /not valid JSON: .* at line 4, column 1$/)
        assert.match(err.hint ?? '', /commas/)
        return true
      },
    )
  })

  it('says why a named file cannot be read, and where its name came from', () => {
    const missing = join(dir, 'missing.json')
    assert.throws(
      () => loadConfig({ configPath: missing, env: {} }),
      (err: EdgestarError) => {
        assert.equal(err.code, 'EDGESTAR_CONFIG_NOT_FOUND')
        assert.match(err.message, /from --config.*ENOENT/)
        return true
      },
    )
    assert.throws(() => loadConfig({ env: { EDGESTAR_CONFIG: missing } }), /from EDGESTAR_CONFIG/)
    assert.throws(
      () => loadConfig({ configPath: dir, env: {} }),
      (err: EdgestarError) => {
        assert.equal(err.code, 'EDGESTAR_CONFIG_UNREADABLE')
        assert.match(err.message, /is a directory \(EISDIR\)/)
        return true
      },
    )
  })
})
