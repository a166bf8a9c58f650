/**
 * What the agent's own SQLite work costs the event loop that serves its FUSE mounts. One
 * `edgestar agent` runs in this process (real registry, mosquitto, runc) with the Debian
 * rootfs image (built by `bench/fuse.sh`) deployed as `a` over MQTT. Then, all at once:
 * - a child process reads files of `a` through its FUSE mount (at least 32 KiB each, in
 *   path order, until 20 MiB are passed), then re-reads them, page cache dropped;
 * - telemetry every second, a status request every 500 ms (what `edgestar deploy` polls);
 * - a deploy over MQTT of a second image (the same tree with 4 MiB chunks: a new TOC to
 *   record) as `b`, then a `status` command;
 * - the background pull of both images, uncapped.
 * The window ends 5 s after `b` runs and the child's first pass is done. Printed as one
 * JSON line: the event-loop delay (p50, p99, max; 1 ms resolution, subtracted), and the
 * better-sqlite3 calls on this thread (count, total and longest ms, and per statement).
 *
 * Run: `npx tsc -p tsconfig.json && UV_THREADPOOL_SIZE=32 node dist/bench/agent-loop.js` as
 * root (bin/edgestar sets that pool size; with libuv's 4, FUSE readers fill the pool and a
 * container start hangs). BENCH_OUT appends the line to a file.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import {
  Agent,
  AgentClient,
  createLazyBackend,
  loadAgentConfig,
  startMqtt,
} from '../src/agent/index.js'
import { FleetClient } from '../src/mqtt/index.js'
import { RegistryClient } from '../src/registry/index.js'
import { TestBroker } from '../test/helpers/broker.js'
import { pushTestImage, type TestLayer } from '../test/helpers/images.js'
import { startRegistry } from '../test/helpers/registry-server.js'
import { READER, timeMainThreadSql } from './loop-probes.js'

const CACHE_DIR = resolve(process.env.EDGESTAR_CACHE_DIR ?? '.cache')
const READ_SET_BYTES = 20 << 20
const DEVICE = 'bench-gw'

interface StatementTime {
  calls: number
  totalMs: number
  maxMs: number
}

const statements = new Map<string, StatementTime>()
let isCounting = false

// Calls, total and slowest per statement (its first 70 characters), while counting.
function timeStatements(): void {
  timeMainThreadSql((source, ms) => {
    if (!isCounting) return
    const key = source.replace(/\s+/g, ' ').slice(0, 70)
    const entry = statements.get(key) ?? { calls: 0, totalMs: 0, maxMs: 0 }
    entry.calls++
    entry.totalMs += ms
    entry.maxMs = Math.max(entry.maxMs, ms)
    statements.set(key, entry)
  })
}

const round = (ms: number): number => Math.round(ms * 100) / 100

async function pushImages(host: string): Promise<{ first: string; second: string }> {
  const pusher = new RegistryClient({ dockerConfigPath: null })
  const push = async (file: string, ref: string): Promise<string> => {
    const path = join(CACHE_DIR, 'bench-fuse', file)
    const layer = JSON.parse(await readFile(`${path}.json`, 'utf8')) as TestLayer
    await pushTestImage(pusher, ref, [{ ...layer, blob: await readFile(path) }])
    return ref
  }
  const first = await push('rootfs.estargz', `${host}/bench/rootfs:a`)
  const second = await push('rootfs-4m.estargz', `${host}/bench/rootfs:b`)
  await pusher.close()
  return { first, second }
}

async function fuseMountUnder(dir: string): Promise<string> {
  const lines = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')
  const found = lines
    .map((line) => line.split(' '))
    .find((fields) => fields[4]?.startsWith(dir) && fields.some((f) => f.startsWith('fuse')))
  if (found === undefined) throw new Error(`no FUSE mount under ${dir}`)
  return found[4]!
}

async function runWindow(
  agent: Agent,
  fleet: FleetClient,
  secondRef: string,
): Promise<Record<string, unknown>> {
  const mount = await fuseMountUnder(join(agent.config.stateDir, 'deployments', 'a'))
  const child = spawn('python3', ['-c', READER, mount, String(READ_SET_BYTES)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const firstPass = new Promise<string>((done, fail) => {
    child.stdout.once('data', (data: Buffer) => done(data.toString().trim()))
    child.once('exit', (code) => fail(new Error(`reader exited with ${code}`)))
  })
  const client = new AgentClient(agent.config.socket)
  const delay = monitorEventLoopDelay({ resolution: 1 })
  statements.clear()
  isCounting = true
  delay.enable()
  const startedMs = performance.now()
  let isPolling = true
  const polling = (async () => {
    while (isPolling) {
      await client.call('status')
      await new Promise((done) => setTimeout(done, 500))
    }
  })()
  let readSet: string
  let results: Awaited<ReturnType<FleetClient['send']>>
  try {
    const deployed = fleet.send(
      { device: DEVICE },
      { type: 'deploy', name: 'b', image: secondRef, command: ['sleep', '3600'] },
      { timeoutMs: 300_000 },
    )
    ;[readSet, results] = await Promise.all([firstPass, deployed])
    await fleet.send({ device: DEVICE }, { type: 'status' }, { timeoutMs: 60_000 })
    await new Promise((done) => setTimeout(done, 5000))
  } finally {
    isPolling = false
    child.stdin.end()
    child.kill()
  }
  await polling
  delay.disable()
  isCounting = false

  const all = [...statements.values()]
  return {
    windowSec: round((performance.now() - startedMs) / 1000),
    readSet,
    deployB: results[0]?.ok === true ? 'ok' : JSON.stringify(results[0]?.error),
    loopDelayMs: {
      p50: round(delay.percentile(50) / 1e6 - 1),
      p99: round(delay.percentile(99) / 1e6 - 1),
      max: round(delay.max / 1e6 - 1),
    },
    sqliteOnLoop: {
      calls: all.reduce((sum, s) => sum + s.calls, 0),
      totalMs: round(all.reduce((sum, s) => sum + s.totalMs, 0)),
      maxMs: round(Math.max(0, ...all.map((s) => s.maxMs))),
      top: [...statements]
        .sort((a, b) => b[1].totalMs - a[1].totalMs)
        .slice(0, 12)
        .map(([sql, t]) => ({
          sql,
          calls: t.calls,
          totalMs: round(t.totalMs),
          maxMs: round(t.maxMs),
        })),
    },
  }
}

timeStatements()
const stateDir = await mkdtemp(join(tmpdir(), 'edgestar-bench-agent-'))
const server = await startRegistry()
const broker = await TestBroker.start()
let agent: Agent | undefined
let fleet: FleetClient | undefined
try {
  const refs = await pushImages(server.host)
  const config = loadAgentConfig(
    {
      stateDir,
      socket: join(stateDir, 'agent.sock'),
      mqttUrl: broker.url,
      mqttDeviceId: DEVICE,
      mqttTelemetryIntervalMs: '1s',
      runtime: 'runc',
    },
    {},
  )
  agent = await Agent.start({
    config,
    backendFactory: createLazyBackend,
    onReady: async (started) => void (await startMqtt(started)),
  })
  fleet = await FleetClient.connect({ url: broker.url })
  const first = await fleet.send(
    { device: DEVICE },
    { type: 'deploy', name: 'a', image: refs.first, command: ['sleep', '3600'] },
    { timeoutMs: 300_000 },
  )
  if (first[0]?.ok !== true) throw new Error(`deploy a failed: ${JSON.stringify(first[0])}`)
  const result = await runWindow(agent, fleet, refs.second)
  const line = JSON.stringify({ checkout: resolve('.'), ...result })
  console.log(line)
  if (process.env.BENCH_OUT) await writeFile(process.env.BENCH_OUT, `${line}\n`, { flag: 'a' })
} finally {
  await fleet?.close()
  await agent?.close()
  await broker.stop()
  await server.stop()
  await rm(stateDir, { recursive: true, force: true })
}
