import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, it } from 'node:test'
import { isEdgestarError } from '../../src/errors.js'
import {
  commandLine,
  mergeEnv,
  ociConfig,
  RotatingLog,
  readLogs,
  restartDelayMs,
  shouldRestart,
} from '../../src/runtime/index.js'

describe('commandLine', () => {
  const image = { Entrypoint: ['/entry'], Cmd: ['serve', '--port', '80'] }
  const cases: Array<[string, Parameters<typeof commandLine>[1], string[]]> = [
    ['keeps Entrypoint + Cmd', {}, ['/entry', 'serve', '--port', '80']],
    ['replaces Cmd with args', { args: ['check'] }, ['/entry', 'check']],
    ['replaces Entrypoint and drops Cmd with command', { command: ['sh'] }, ['sh']],
    ['joins command and args', { command: ['sh'], args: ['-c', 'x'] }, ['sh', '-c', 'x']],
  ]
  for (const [name, overrides, expected] of cases) {
    it(name, () => assert.deepEqual(commandLine(image, overrides), expected))
  }

  it('refuses an image with no command and no override', () => {
    assert.throws(
      () => commandLine({}, {}),
      (err) => isEdgestarError(err, 'EDGESTAR_RUNTIME_NO_COMMAND'),
    )
  })
})

describe('mergeEnv', () => {
  it('overrides by name and adds a default PATH', () => {
    assert.deepEqual(mergeEnv(['A=1', 'B=2'], { B: '3', C: 'x=y' }), [
      'A=1',
      'B=3',
      'C=x=y',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    ])
  })
})

describe('restart policy', () => {
  it('restarts by policy and exit code', () => {
    assert.equal(shouldRestart('no', 1), false)
    assert.equal(shouldRestart('on-failure', 0), false)
    assert.equal(shouldRestart('on-failure', 137), true)
    assert.equal(shouldRestart('always', 0), true)
  })

  it('doubles the delay up to the maximum', () => {
    const backoff = { initialMs: 1000, maxMs: 5000, resetAfterMs: 10_000 }
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((n) => restartDelayMs(n, backoff)),
      [1000, 2000, 4000, 5000, 5000],
    )
  })
})

describe('ociConfig', () => {
  const base = {
    id: 'c1',
    containerDir: '/tmp/c1',
    rootDir: '/tmp/c1/rootfs',
    process: { args: ['sh'], env: ['PATH=/bin'], cwd: '/', uid: 0, gid: 0, additionalGids: [] },
    binds: [{ source: '/srv/data', target: '/data', readOnly: true }],
  }

  it('has a network namespace only for network none', () => {
    const hasNet = (config: Record<string, unknown>): boolean =>
      JSON.stringify(config).includes('"type":"network"')
    assert.equal(hasNet(ociConfig({ ...base, network: 'none' })), true)
    assert.equal(hasNet(ociConfig({ ...base, network: 'host' })), false)
  })

  it('adds binds as read-only bind mounts', () => {
    const text = JSON.stringify(ociConfig({ ...base, network: 'none' }))
    assert.match(
      text,
      /"destination":"\/data","type":"bind","source":"\/srv\/data","options":\["rbind","rprivate","ro"\]/,
    )
  })
})

describe('RotatingLog', () => {
  it('keeps at most maxFiles files of at most maxFileBytes each', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'edgestar-log-'))
    try {
      const log = new RotatingLog(dir, { maxFileBytes: 100, maxFiles: 3 })
      for (let i = 0; i < 50; i++) void log.write(`line ${String(i).padStart(3, '0')}\n`)
      await log.close()
      assert.deepEqual((await readdir(dir)).sort(), [
        'container.log',
        'container.log.1',
        'container.log.2',
      ])
      const kept = (await readLogs(dir, 3)).toString()
      assert.ok(kept.length <= 300)
      assert.match(kept, /line 049\n$/)
      assert.doesNotMatch(kept, /line 000/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
