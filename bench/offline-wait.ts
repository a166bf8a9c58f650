/**
 * Time from the start of a read of a missing chunk through `edgestar mount` to its answer,
 * with a real docker-registry behind the fault proxy misbehaving on blob GETs only (the
 * manifest answers, so the mount resolves as usual):
 *
 * - `hang`: every request is read and never answered;
 * - `mid-body`: the first answer stops after its headers and 256 bytes, later ones hang;
 * - `drip`: every answer stops after its headers and 256 bytes (resumes get 256 more);
 * - `slow`: 512 bytes a second, never a pause of a second.
 *
 * Each case runs in its own mount, all at once (the time is spent waiting, not working).
 * Usage: node dist/bench/offline-wait.js [WAIT_SECONDS...]   (default 10 30); prints one
 * JSON line per case and a table. A hung case takes the wait plus up to 3 x 30 s of mount
 * start-up: the mount's config fetch hangs too before it falls back to the recorded image.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { abortMount } from '../src/fs/index.js'
import { RegistryClient } from '../src/registry/index.js'
import { type Fault, FaultProxy } from '../test/helpers/fault-proxy.js'
import { pushTestImage } from '../test/helpers/images.js'
import { runChild } from '../test/helpers/mount.js'
import { startRegistry } from '../test/helpers/registry-server.js'
import { fixtureLayer } from '../test/images/fixture-image.js'

const CLI = join(process.cwd(), 'bin/edgestar')
/** Outside the image's prefetch set: its chunk is fetched only when read. */
const FILE = 'usr/share/doc/README'

type Mode = 'hang' | 'mid-body' | 'drip' | 'slow'

const STALL_AFTER_256: Fault = {
  kind: 'trickle',
  bytesPerTick: 64,
  tickMs: 5,
  stallAfterBytes: 256,
}

const FAULTS: Record<Mode, { fault: Fault; first?: Fault }> = {
  hang: { fault: { kind: 'hang' } },
  'mid-body': { fault: { kind: 'hang' }, first: STALL_AFTER_256 },
  drip: { fault: STALL_AFTER_256 },
  slow: { fault: { kind: 'trickle', bytesPerTick: 512, tickMs: 1000 } },
}

interface Outcome {
  mode: Mode
  waitSec: number
  elapsedSec: number
  isServed: boolean
  linkChanges: string[]
}

/** One case: its own registry, proxy, state directory and mount. */
async function measure(mode: Mode, waitSec: number): Promise<Outcome> {
  const registry = await startRegistry()
  const proxy = await FaultProxy.start(registry.url)
  const work = await mkdtemp(join(tmpdir(), 'edgestar-bench-wait-'))
  const stateDir = join(work, 'state')
  const dir = join(work, 'mnt')
  let mount: ChildProcess | undefined
  try {
    const client = new RegistryClient({ dockerConfigPath: null })
    await pushTestImage(client, `${registry.host}/bench/app:1`, [
      fixtureLayer('prioritized.estargz'),
    ])
    await client.close()
    const ref = `${proxy.host}/bench/app:1`
    const pull = await runChild(CLI, ['pull', ref, '--lazy', '--state-dir', stateDir])
    if (pull.code !== 0) throw new Error(`pull failed: ${pull.stderr}`)

    const { fault, first } = FAULTS[mode]
    proxy.setFault(fault, { match: 'blob-get' })
    if (first !== undefined) proxy.queueFaults([first], { match: 'blob-get' })
    await mkdir(dir)
    const args = ['mount', ref, dir, '--state-dir', stateDir, '--offline-wait', `${waitSec}s`]
    mount = spawn(CLI, [...args, '--no-background'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, EDGESTAR_LOG_LEVEL: 'warn' },
    })
    let log = ''
    mount.stderr?.on('data', (data: Buffer) => {
      log += data.toString()
    })
    while (!existsSync(join(dir, 'usr'))) await sleep(100)

    const startedMs = performance.now()
    const read = await runChild('cat', [join(dir, FILE)])
    const elapsedSec = Number(((performance.now() - startedMs) / 1000).toFixed(1))
    const linkChanges = log
      .split('\n')
      .filter((line) => line.includes('"link state changed"'))
      .map((line) => JSON.parse(line) as { state: string })
      .map((change) => change.state)
    return { mode, waitSec, elapsedSec, isServed: read.code === 0, linkChanges }
  } finally {
    if (mount !== undefined && mount.exitCode === null) {
      const exited = new Promise((resolve) => mount?.once('exit', resolve))
      mount.kill('SIGTERM')
      await exited
    }
    await abortMount(dir).catch(() => {})
    await proxy.stop()
    await registry.stop()
    await rm(work, { recursive: true, force: true })
  }
}

const waits = process.argv.slice(2).map(Number)
const cases = (waits.length > 0 ? waits : [10, 30]).flatMap((waitSec) =>
  (Object.keys(FAULTS) as Mode[]).map((mode) => ({ mode, waitSec })),
)
const outcomes = await Promise.all(cases.map(({ mode, waitSec }) => measure(mode, waitSec)))
for (const outcome of outcomes) console.log(JSON.stringify(outcome))
console.log('\nregistry   --offline-wait  read answered after  answer  link')
for (const o of outcomes)
  console.log(
    `${o.mode.padEnd(10)} ${`${o.waitSec} s`.padEnd(15)} ${`${o.elapsedSec} s`.padEnd(20)} ` +
      `${(o.isServed ? 'data' : 'EIO').padEnd(7)} ${o.linkChanges.join(' > ') || '-'}`,
  )
