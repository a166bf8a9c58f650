import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { RegistryClient } from '../../src/registry/index.js'
import { presentObjects } from '../helpers/cache-objects.js'
import { pushTestImage } from '../helpers/images.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'
import { CLI, lastJsonLine, runCli } from './cli.js'
import { type BigLayer, bigLayer } from './fixture-image.js'

const RUNS = 20

let registry: RegistryServer
let layer: BigLayer
let state: string
const ref = (): string => `${registry.host}/h4/killed:1`

before(async () => {
  registry = await startRegistry()
  const client = new RegistryClient()
  layer = await bigLayer(32 * 1024 * 1024, 256 * 1024)
  await pushTestImage(client, ref(), [layer])
  await client.close()
  state = mkdtempSync(join(tmpdir(), 'edgestar-kill-'))
})

after(async () => {
  await registry?.stop()
  if (state) rmSync(state, { recursive: true, force: true })
})

// A small seeded generator, so a failing sequence of kill points can be replayed.
function random(seed: number): () => number {
  let x = seed
  return () => {
    x = (x * 1103515245 + 12345) % 2 ** 31
    return x / 2 ** 31
  }
}

function presentUnits(): Set<string> {
  const path = join(state, 'edgestar.db')
  if (!existsSync(path)) return new Set()
  const db = new Database(path)
  try {
    const rows = db
      .prepare(
        "SELECT u.layer_digest || ' ' || u.offset FROM layer_units u JOIN chunks c ON c.key = u.chunk_key WHERE c.state = 'present'",
      )
      .pluck()
      .all() as string[]
    return new Set(rows)
  } catch {
    return new Set()
  } finally {
    db.close()
  }
}

// Kills the pull `afterMs` after it asked the registry for its `afterUnits`-th unit (or,
// if it never gets that far, when it exits), so every kill lands while chunks are in flight.
function pullAndKill(afterUnits: number, afterMs: number, trace: string): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [CLI, 'pull', ref(), '--state-dir', state, '--bandwidth', '2MiB', '--json'],
      {
        stdio: 'ignore',
        env: { ...process.env, EDGESTAR_LOG_LEVEL: 'silent', EDGESTAR_FETCH_TRACE: trace },
      },
    )
    let killTimer: NodeJS.Timeout | undefined
    const poll = setInterval(() => {
      const lines = existsSync(trace) ? readFileSync(trace, 'utf8').split('\n').length - 1 : 0
      if (lines < afterUnits || killTimer) return
      killTimer = setTimeout(() => child.kill('SIGKILL'), afterMs)
    }, 10)
    child.on('exit', () => {
      clearInterval(poll)
      clearTimeout(killTimer)
      resolve()
    })
  })
}

describe('a pull killed with SIGKILL at random points', () => {
  it(`never refetches a present chunk over ${RUNS} kills, serves no corrupt byte, and ends verified`, async () => {
    const next = random(Number(process.env.EDGESTAR_KILL_SEED ?? 20261204))
    const killPoints: number[] = []
    let runsThatStored = 0
    for (let run = 0; run < RUNS; run++) {
      const before = presentUnits()
      const trace = join(state, `trace-${run}`)
      const afterUnits = 1 + Math.floor(next() * 2)
      // Up to 1.5 s: a batch is stored only after all its chunks are fsynced, so on a loaded
      // machine a kill within a few hundred ms often lands before anything is committed.
      const afterMs = Math.floor(next() * 1500)
      killPoints.push(afterMs)
      await pullAndKill(afterUnits, afterMs, trace)

      const fetched = existsSync(trace)
        ? readFileSync(trace, 'utf8')
            .trim()
            .split('\n')
            .filter(Boolean)
            .map((line) => line.split(' ').slice(0, 2).join(' '))
        : []
      if (presentUnits().size > before.size) runsThatStored++
      const refetched = fetched.filter((unit) => before.has(unit))
      assert.deepEqual(
        refetched,
        [],
        `run ${run} (killed after ${afterMs} ms) refetched present units`,
      )
    }

    // The kills must land mid-pull: several runs stored something before the pull was done.
    assert.ok(runsThatStored >= 5, `only ${runsThatStored} runs stored chunks`)

    const final = await runCli(['pull', ref(), '--state-dir', state, '--json'], {
      EDGESTAR_FETCH_TRACE: join(state, 'trace-final'),
    })
    assert.equal(final.code, 0, final.stderr)
    const result = lastJsonLine(final.stdout.toString())
    assert.equal(result.verifiedLayers, 1, `kill points ${killPoints.join(',')}`)

    // Every object named by a chunk digest holds exactly the bytes of that digest.
    const objects = presentObjects(state).filter((object) => object.key.startsWith('sha256-'))
    assert.ok(objects.length >= 32, `${objects.length} chunk objects`)
    for (const object of objects)
      assert.equal(createHash('sha256').update(object.bytes).digest('hex'), object.key.slice(7))

    const cat = await runCli(['cat', ref(), layer.bigName, '--state-dir', state])
    assert.equal(cat.code, 0, cat.stderr)
    assert.equal(createHash('sha256').update(cat.stdout).digest('hex'), layer.bigSha256)
  })
})
