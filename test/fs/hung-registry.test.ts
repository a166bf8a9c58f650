import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { abortMount } from '../../src/fs/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import { type Fault, FaultProxy } from '../helpers/fault-proxy.js'
import { pushTestImage } from '../helpers/images.js'
import { runChild } from '../helpers/mount.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'
import { fixtureLayer } from '../images/fixture-image.js'

const CLI = join(process.cwd(), 'bin/edgestar')
/** Not in the image's prefetch set: nothing reads it before the test does. */
const FILE = 'usr/share/doc/README'
/** A probe of an offline registry asks for this range; reads never do. */
const PROBE_RANGE = 'bytes=0-0'

/** A foreground `edgestar mount` and what it logged. */
interface MountRun {
  dir: string
  child: ChildProcess
  logLines(): Record<string, unknown>[]
  stop(): Promise<void>
}

let registry: RegistryServer
let proxy: FaultProxy
let work: string
let stateDir: string
let ref: string

before(async () => {
  registry = await startRegistry()
  proxy = await FaultProxy.start(registry.url)
  work = await mkdtemp(join(tmpdir(), 'edgestar-hung-'))
  stateDir = join(work, 'state')
  const client = new RegistryClient({ dockerConfigPath: null })
  await pushTestImage(client, `${registry.host}/hung/app:1`, [fixtureLayer('prioritized.estargz')])
  await client.close()
  ref = `${proxy.host}/hung/app:1`
  const pull = await runChild(CLI, ['pull', ref, '--lazy', '--state-dir', stateDir])
  assert.equal(pull.code, 0, pull.stderr)
})

after(async () => {
  await proxy?.stop()
  await registry?.stop()
  if (work) await rm(work, { recursive: true, force: true })
})

/** Mounts the image in the foreground (background fetch off) and resolves once it serves. */
async function mount(name: string, offlineWait: string): Promise<MountRun> {
  const dir = join(work, name)
  await mkdir(dir)
  const args = ['mount', ref, dir, '--state-dir', stateDir, '--offline-wait', offlineWait]
  const child = spawn(CLI, [...args, '--no-background', '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, EDGESTAR_LOG_LEVEL: 'warn' },
  })
  let stderr = ''
  child.stderr?.on('data', (data: Buffer) => {
    stderr += data.toString()
  })
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve())
    child.once('exit', (code) => reject(new Error(`mount exited with ${code}: ${stderr}`)))
  })
  return {
    dir,
    child,
    logLines: () =>
      stderr
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      if (child.exitCode === null) child.kill('SIGTERM')
      await exited
      await abortMount(dir).catch(() => {})
    },
  }
}

/** Reads FILE through the mount in a child process (the mount's server must stay free). */
async function readThrough(
  run: MountRun,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return runChild('cat', [join(run.dir, FILE)])
}

/** Blob reads for file data (not probes) the proxy saw from index `from` on, by range. */
function dataRangesSince(from: number): Map<string, number> {
  const counts = new Map<string, number>()
  for (const entry of proxy.blobGets().slice(from)) {
    if (entry.range === undefined || entry.range === PROBE_RANGE) continue
    counts.set(entry.range, (counts.get(entry.range) ?? 0) + 1)
  }
  return counts
}

describe('a read of a missing chunk with a registry that fails it', () => {
  // Each fault leaves the read waiting on the network; --offline-wait 1s must end it, long
  // before the client's own 30 s header and body timeouts and its three attempts would.
  const cases: { name: string; fault: Fault; first?: Fault; isHungRequest: boolean }[] = [
    { name: 'hangs before the headers', fault: { kind: 'hang' }, isHungRequest: true },
    {
      name: 'hangs mid-body',
      // Headers and 256 bytes of the first answer, then silence; later requests hang.
      first: { kind: 'trickle', bytesPerTick: 64, tickMs: 5, stallAfterBytes: 256 },
      fault: { kind: 'hang' },
      isHungRequest: true,
    },
    { name: 'answers 503', fault: { kind: 'status-503' }, isHungRequest: false },
    { name: 'resets the connection', fault: { kind: 'reset' }, isHungRequest: false },
  ]

  for (const { name, fault, first, isHungRequest } of cases) {
    it(`fails with EIO after the offline wait when the registry ${name}`, async () => {
      const run = await mount(`mnt-${name.replaceAll(' ', '-')}`, '1s')
      try {
        const from = proxy.blobGets().length
        proxy.setFault(fault, { match: 'blob-get' })
        if (first !== undefined) proxy.queueFaults([first], { match: 'blob-get' })
        const read = await readThrough(run)
        const seen = dataRangesSince(from)
        proxy.setFault(undefined)

        assert.notEqual(read.code, 0)
        assert.match(read.stderr, /Input\/output error/)
        // A retry of a hung request comes only after a 30 s timeout: the read ended first.
        if (isHungRequest)
          for (const [range, count] of seen)
            assert.equal(count, 1, `${range} asked ${count} times before the read failed`)

        const lines = run.logLines()
        const failed = lines.find((line) => line.msg === 'read failed; the reader got EIO')
        const err = failed?.err as { code?: string; message?: string } | undefined
        assert.equal(err?.code, 'EDGESTAR_FETCH_OFFLINE', JSON.stringify(failed))
        assert.match(err?.message ?? '', /no byte of it came in [\d.]+ s \(--offline-wait 1 s\)/)
        const offline = lines.find(
          (line) => line.msg === 'link state changed' && line.state === 'offline',
        )
        assert.ok(offline, 'the link was called offline')
      } finally {
        proxy.setFault(undefined)
        await run.stop()
      }
    })
  }

  it('lets a killed O_DIRECT reader exit at once, without waiting for its read', async () => {
    // Without an answer to its read the killed reader would sit in D state for the wait.
    const run = await mount('mnt-killed', '120s')
    try {
      const from = proxy.blobGets().length
      proxy.setFault({ kind: 'hang' }, { match: 'blob-get' })
      const reader = spawn('dd', [`if=${join(run.dir, FILE)}`, 'of=/dev/null', 'iflag=direct'], {
        stdio: 'ignore',
      })
      const exited = new Promise<NodeJS.Signals | null>((resolve) =>
        reader.once('exit', (_code, signal) => resolve(signal)),
      )
      // Blocked in its read, waiting for this server's answer.
      await until(() => dataRangesSince(from).size > 0 && isWaitingOnFuse(reader.pid!))
      // A harmless signal first: the kernel interrupts a request only once.
      reader.kill('SIGWINCH')
      reader.kill('SIGKILL')
      assert.equal(await exited, 'SIGKILL')

      const failed = run.logLines().find((line) => line.msg === 'read failed; the reader got EIO')
      assert.equal(failed, undefined, 'the reader was gone before its read failed')
    } finally {
      proxy.setFault(undefined)
      await run.stop()
    }
  })

  it('keeps waiting while bytes arrive, past the offline wait, and serves the file', async () => {
    const run = await mount('mnt-slow', '1s')
    try {
      const from = proxy.blobGets().length
      // 320 bytes a second, a piece every 100 ms: slow, never quiet for the 1 s wait. The
      // file's 1753-byte chunk takes over 5 s this way, so the read outlives its wait.
      proxy.setFault({ kind: 'trickle', bytesPerTick: 32, tickMs: 100 }, { match: 'blob-get' })
      const read = await readThrough(run)
      proxy.setFault(undefined)

      assert.equal(read.code, 0, read.stderr)
      const want = fixtureLayer('prioritized.estargz').files.find((file) => file.name === FILE)
      assert.equal(read.stdout.length, want?.size)
      assert.ok(dataRangesSince(from).size > 0, 'the file came through the trickling proxy')
      const states = run
        .logLines()
        .filter((line) => line.msg === 'link state changed')
        .map((line) => line.state)
      assert.ok(!states.includes('offline'), `link states: ${states.join(', ')}`)
    } finally {
      proxy.setFault(undefined)
      await run.stop()
    }
  })
})

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 50))
}

function isWaitingOnFuse(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/wchan`, 'utf8') === 'request_wait_answer'
  } catch {
    return false
  }
}
