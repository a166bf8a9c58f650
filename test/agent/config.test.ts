import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { checkDeployRequest, loadAgentConfig } from '../../src/agent/index.js'
import { isEdgestarError } from '../../src/errors.js'

let dir = ''
let file = ''

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'edgestar-agent-config-'))
  file = path.join(dir, 'config.json')
  await writeFile(
    file,
    JSON.stringify({
      stateDir: '/srv/edgestar',
      bandwidth: '1MiB',
      agent: { socket: '/srv/file.sock', runtime: 'chroot', logMaxFiles: 5, mqttGroups: ['a'] },
    }),
  )
})

after(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('loadAgentConfig', () => {
  it('takes flags over environment over the file over defaults', () => {
    const config = loadAgentConfig(
      { config: file, socket: '/flag.sock', bandwidthBytesPerSec: '0' },
      { EDGESTAR_RUNTIME: 'runc', EDGESTAR_LOG_MAX_FILES: '7' },
    )
    assert.equal(config.socket, '/flag.sock')
    assert.equal(config.runtime, 'runc')
    assert.equal(config.logMaxFiles, 7)
    assert.equal(config.stateDir, '/srv/edgestar')
    assert.equal(config.bandwidthBytesPerSec, null)
    assert.deepEqual(config.mqttGroups, ['a'])
    assert.equal(config.stopTimeoutMs, 10_000)
  })

  it('reads the shared file keys when no flag overrides them', () => {
    const config = loadAgentConfig({ config: file }, {})
    assert.equal(config.bandwidthBytesPerSec, 1024 * 1024)
    assert.equal(config.socket, '/srv/file.sock')
  })

  it('names the option and its source for a bad value', () => {
    assert.throws(
      () => loadAgentConfig({ config: file }, { EDGESTAR_RUNTIME: 'docker' }),
      (err) =>
        isEdgestarError(err, 'EDGESTAR_CONFIG_INVALID') && err.message.includes('EDGESTAR_RUNTIME'),
    )
  })

  it('takes durations such as 10s for the timeouts, and plain numbers as milliseconds', async () => {
    const fromFlags = loadAgentConfig(
      { config: file, stopTimeoutMs: '10s', updateGraceMs: '2500' },
      { EDGESTAR_MQTT_TELEMETRY_INTERVAL_MS: '2m' },
    )
    assert.equal(fromFlags.stopTimeoutMs, 10_000)
    assert.equal(fromFlags.updateGraceMs, 2500)
    assert.equal(fromFlags.mqttTelemetryIntervalMs, 120_000)

    const durations = path.join(dir, 'durations.json')
    await writeFile(
      durations,
      JSON.stringify({ agent: { stopTimeoutMs: '500ms', updateGraceMs: 4000 } }),
    )
    const fromFile = loadAgentConfig({ config: durations }, {})
    assert.equal(fromFile.stopTimeoutMs, 500)
    assert.equal(fromFile.updateGraceMs, 4000)
    assert.throws(
      () => loadAgentConfig({ config: file, stopTimeoutMs: 'soon' }, {}),
      (err) =>
        isEdgestarError(err, 'EDGESTAR_CONFIG_INVALID') &&
        err.message.includes('--stop-timeout-ms'),
    )
  })

  it('refuses an unknown key in the agent section', async () => {
    const bad = path.join(dir, 'bad.json')
    await writeFile(bad, JSON.stringify({ agent: { sockett: '/x' } }))
    assert.throws(
      () => loadAgentConfig({ config: bad }, {}),
      (err) =>
        isEdgestarError(err, 'EDGESTAR_CONFIG_INVALID') &&
        (err.hint ?? '').startsWith('did you mean "agent.socket"?'),
    )
  })
})

describe('checkDeployRequest', () => {
  const bad: Array<[string, unknown]> = [
    ['an upper-case name', { name: 'Web', image: 'x' }],
    ['no image', { name: 'web' }],
    ['an unknown restart policy', { name: 'web', image: 'x', restart: 'sometimes' }],
    ['a relative bind', { name: 'web', image: 'x', binds: [{ source: 'data', target: '/data' }] }],
    ['a bad env name', { name: 'web', image: 'x', env: { 'A-B': '1' } }],
    ['a non-string command', { name: 'web', image: 'x', command: ['sh', 1] }],
  ]
  for (const [what, input] of bad) {
    it(`refuses ${what}`, () => {
      assert.throws(
        () => checkDeployRequest(input),
        (err) => isEdgestarError(err, 'EDGESTAR_AGENT_BAD_REQUEST'),
      )
    })
  }

  it('keeps a valid request', () => {
    const request = checkDeployRequest({
      name: 'web',
      image: ' reg:5000/app:1 ',
      env: { MODE: 'edge' },
      restart: 'always',
      binds: [{ source: '/srv', target: '/data', readOnly: true }],
    })
    assert.equal(request.image, 'reg:5000/app:1')
    assert.deepEqual(request.binds, [{ source: '/srv', target: '/data', readOnly: true }])
  })
})
