/**
 * Background-cap trace: mounts the bench rootfs image with a cap (default 256 KiB/s) and
 * prints, per second, background bytes counted, batches running and queued, so a rate
 * short of the cap can be traced to its cause. Run `bash bench/fuse.sh` once first (it
 * builds the blob), then `node dist/bench/fuse-cap-profile.js [RATE] [SECONDS]`.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { RegistryClient } from '../src/registry/index.js'
import { pushTestImage } from '../test/helpers/images.js'
import { mountImageFromRegistry } from '../test/helpers/mount.js'
import { startRegistry } from '../test/helpers/registry-server.js'

const CACHE_DIR = resolve(process.env.EDGESTAR_CACHE_DIR ?? '.cache')
const RATE = Number(process.argv[2] ?? 256 << 10)
const SECONDS = Number(process.argv[3] ?? 20)

const server = await startRegistry()
const stateDir = await mkdtemp(join(tmpdir(), 'edgestar-cap-'))
try {
  const blobPath = join(CACHE_DIR, 'bench-fuse', 'rootfs.estargz')
  const meta = JSON.parse(await readFile(`${blobPath}.json`, 'utf8'))
  const ref = `${server.host}/bench/rootfs:v1`
  const pusher = new RegistryClient({ dockerConfigPath: null })
  await pushTestImage(pusher, ref, [{ ...meta, blob: await readFile(blobPath) }])
  await pusher.close()
  const stack = await mountImageFromRegistry(stateDir, ref, { bandwidthBytesPerSec: RATE })
  const pulling = stack.images.pull(stack.image, { priority: 'background' }).catch(() => {})
  const started = Date.now()
  let last = 0
  for (let s = 1; s <= SECONDS; s++) {
    await sleep(started + s * 1000 - Date.now())
    const stats = stack.scheduler.stats()
    console.log(
      `${String(s).padStart(3)} s  ${((stats.backgroundBytes - last) / 1024).toFixed(0).padStart(5)} KiB` +
        `  total ${(stats.backgroundBytes / 1024 / s).toFixed(0).padStart(5)} KiB/s` +
        `  running ${stats.running} queued ${stats.queued} units ${stats.units} batches ${stats.batches}`,
    )
    last = stats.backgroundBytes
  }
  await stack.close()
  await pulling
} finally {
  await server.stop()
  await rm(stateDir, { recursive: true, force: true })
}
