/**
 * Where the warm sequential read of `bench/fuse` spends its time: the same 256 MiB file read
 * (a) straight from the store in this process (no FUSE), chunk by chunk, and (b) through the
 * mount by `cat` in a child, page caches dropped before each. Run `bash bench/fuse.sh` once
 * first (it builds the tree and its blob); then
 * `node --enable-source-maps dist/bench/fuse-read-profile.js [ROUNDS]`.
 * With BENCH_CPU_PROFILE=1 the node process is profiled (`--cpu-prof` equivalent via the
 * inspector) during the mount reads and the profile is written to the current directory.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { RegistryClient } from '../src/registry/index.js'
import { pushTestImage } from '../test/helpers/images.js'
import { mountImageFromRegistry } from '../test/helpers/mount.js'
import { startRegistry } from '../test/helpers/registry-server.js'

const run = promisify(execFile)
const CACHE_DIR = resolve(process.env.EDGESTAR_CACHE_DIR ?? '.cache')
const ROUNDS = Number(process.argv[2] ?? 3)
const BIG = 256 << 20

async function dropCaches(): Promise<void> {
  await run('sync')
  await writeFile('/proc/sys/vm/drop_caches', '3').catch(() => {})
}

const server = await startRegistry()
const stateDir = await mkdtemp(join(tmpdir(), 'edgestar-prof-'))
try {
  const blobPath = join(CACHE_DIR, 'bench-fuse', 'tree-v1.estargz')
  const meta = JSON.parse(await readFile(`${blobPath}.json`, 'utf8'))
  const ref = `${server.host}/bench/tree:v1`
  const pusher = new RegistryClient({ dockerConfigPath: null })
  await pushTestImage(pusher, ref, [{ ...meta, blob: await readFile(blobPath) }])
  await pusher.close()
  const stack = await mountImageFromRegistry(stateDir, ref, { background: false })
  try {
    await stack.images.pull(stack.image)
    const layer = stack.image.layers[0]!
    if (process.env.BENCH_READ_AHEAD_KB) {
      const { stdout } = await run('mountpoint', ['-d', stack.mount.dir])
      const bdi = `/sys/class/bdi/${stdout.trim()}`
      await writeFile(`${bdi}/read_ahead_kb`, process.env.BENCH_READ_AHEAD_KB)
      console.log(`read_ahead_kb ${(await readFile(`${bdi}/read_ahead_kb`, 'utf8')).trim()}`)
    }
    for (let round = 0; round < ROUNDS; round++) {
      await dropCaches()
      let started = process.hrtime.bigint()
      for (let at = 0; at < BIG; at += 1 << 20)
        await stack.images.readLayerFile(layer, 'big.bin', at, 1 << 20)
      let s = Number(process.hrtime.bigint() - started) / 1e9
      console.log(`store, 1 MiB at a time    ${(BIG / 1e6 / s).toFixed(0)} MB/s`)

      await dropCaches()
      const session = new Session()
      if (process.env.BENCH_CPU_PROFILE === '1') {
        session.connect()
        await session.post('Profiler.enable')
        await session.post('Profiler.start')
      }
      started = process.hrtime.bigint()
      await run('sh', ['-c', `cat '${stack.mount.dir}/big.bin' > /dev/null`])
      s = Number(process.hrtime.bigint() - started) / 1e9
      console.log(`mount, cat                ${(BIG / 1e6 / s).toFixed(0)} MB/s`)
      if (process.env.BENCH_CPU_PROFILE === '1') {
        const { profile } = await session.post('Profiler.stop')
        await writeFile(`fuse-read-${round}.cpuprofile`, JSON.stringify(profile))
        session.disconnect()
      }
    }
  } finally {
    await stack.close()
  }
} finally {
  await server.stop()
  if (process.env.BENCH_KEEP_STATE) console.log(`state kept in ${stateDir}`)
  else await rm(stateDir, { recursive: true, force: true })
}
