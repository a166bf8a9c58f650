/**
 * The README's first command: deploy a real Python application over a simulated slow link
 * three ways and print how long each took to print its ready line.
 *
 *   node dist/scripts/demo/main.js [--profile lte|ci|edge|clean] [--json] [--keep]
 *
 * Expects `scripts/setup.sh` to have run and EDGESTAR_TEST_ROOTFS to name a root filesystem
 * with /app/app.py (scripts/demo.sh does both). Everything it starts is torn down at the end,
 * on an error and on Ctrl-C.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { buildDemoImages, type DemoImages } from './images.js'
import { Cleanup, run } from './processes.js'
import { formatTable, type LinkProfile, lowerBoundMs, type VariantResult } from './report.js'
import { startDemoBroker, startDemoRegistry } from './servers.js'
import { measureDeployment } from './variant.js'

const HOST_ADDR = '10.77.0.1'
const REGISTRY_PORT = 5077
const BROKER_PORT = 1877
const PROJECT_DIR = resolve(import.meta.dirname, '../../..')

const LINKS: Record<string, LinkProfile> = {
  lte: { name: 'lte', rateBitsPerSec: 8e6, roundTripMs: 100, lossProbability: 0.005 },
  ci: { name: 'ci', rateBitsPerSec: 20e6, roundTripMs: 40, lossProbability: 0.002 },
  edge: { name: 'edge', rateBitsPerSec: 1e6, roundTripMs: 300, lossProbability: 0.01 },
  clean: { name: 'clean', rateBitsPerSec: 1e9, roundTripMs: 0, lossProbability: 0 },
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      profile: { type: 'string', default: process.env.EDGESTAR_DEMO_PROFILE ?? 'lte' },
      json: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
    },
  })
  const link = LINKS[values.profile ?? 'lte']
  if (!link) throw new Error(`demo: unknown link profile; choose ${Object.keys(LINKS).join(', ')}`)
  const rootfs = process.env.EDGESTAR_TEST_ROOTFS
  if (!rootfs) throw new Error('demo: EDGESTAR_TEST_ROOTFS is not set; run scripts/demo.sh')

  const cleanup = new Cleanup()
  await takeDemoLock(cleanup)
  const onSignal = () => {
    say('interrupted: cleaning up')
    void cleanup.runAll().then(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  try {
    const results = await runDemo(link, rootfs, cleanup, values.keep ?? false)
    const boundMs = lowerBoundMs(results.neededBytes, link)
    if (values.json) process.stdout.write(`${JSON.stringify({ link, results, boundMs })}\n`)
    else process.stdout.write(`\n${formatTable(results.rows, link, boundMs)}\n`)
  } finally {
    await cleanup.runAll()
  }
}

async function runDemo(
  link: LinkProfile,
  rootfs: string,
  cleanup: Cleanup,
  keep: boolean,
): Promise<{ rows: VariantResult[]; neededBytes: number }> {
  const workDir = await mkdtemp(join(process.env.TMPDIR ?? '/tmp', 'edgestar-demo-'))
  if (!keep) cleanup.add('work dir', () => removeWorkDir(workDir))

  say(`link: ${link.name} between this host (${HOST_ADDR}) and the device namespace`)
  await run('bash', [join(PROJECT_DIR, 'scripts/link.sh'), 'up', link.name])
  cleanup.add('link', async () => {
    await run('bash', [join(PROJECT_DIR, 'scripts/link.sh'), 'down'])
  })

  const registry = await startDemoRegistry(HOST_ADDR, REGISTRY_PORT, workDir, cleanup)
  const broker = await startDemoBroker(HOST_ADDR, BROKER_PORT, workDir, cleanup)
  say(`registry on ${registry.address}, MQTT broker on ${broker.address}`)

  const images: DemoImages = await buildDemoImages(rootfs, registry.address, workDir, say)

  const rows: VariantResult[] = []
  for (const variant of [
    { label: '(a) edgestar lazy, optimized', ref: images.optimized, waitForComplete: true },
    { label: '(b) edgestar lazy, not optimized', ref: images.estargz, waitForComplete: false },
    { label: '(c) full pull, then run', ref: images.gzip, waitForComplete: false },
  ]) {
    const stateDir = join(workDir, `state-${rows.length}`)
    await mkdir(stateDir, { recursive: true })
    say(`\n== ${variant.label}: ${variant.ref}`)
    rows.push(
      await measureDeployment({
        ...variant,
        projectDir: PROJECT_DIR,
        stateDir,
        registry: registry.address,
        brokerUrl: `mqtt://${broker.address}`,
        imageBytes: images.sizes[variant.ref] ?? 0,
        backgroundCap: `${Math.round(link.rateBitsPerSec / 8 / 1024 / 4)}KiB`,
        parentCleanup: cleanup,
        say,
      }),
    )
  }
  return { rows, neededBytes: images.prefetchBytes }
}

/**
 * Removes the work dir, first detaching any mount still under it: an agent that was killed
 * rather than stopped leaves its FUSE and overlay mounts behind, and rm cannot cross them.
 */
async function removeWorkDir(workDir: string): Promise<void> {
  const mounts = (await readFile('/proc/mounts', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[1] ?? '')
    .filter((mountpoint) => mountpoint.startsWith(`${workDir}/`))
    .sort((a, b) => b.length - a.length)
  for (const mountpoint of mounts) await run('umount', ['-l', mountpoint]).catch(() => undefined)
  await rm(workDir, { recursive: true, force: true })
}

/**
 * One demo at a time per machine: two would tear down each other's network namespace and
 * fight over the link's addresses and ports.
 */
async function takeDemoLock(cleanup: Cleanup): Promise<void> {
  const lockPath = '/run/edgestar-demo.pid'
  const holder = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim())
  if (holder > 0 && holder !== process.pid && isAlive(holder)) {
    throw new Error(
      `another edgestar demo (pid ${holder}) is running on this machine; wait for it to ` +
        `finish or stop it with kill -INT ${holder}`,
    )
  }
  await writeFile(lockPath, `${process.pid}\n`)
  cleanup.add('demo lock', () => rm(lockPath, { force: true }))
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function say(line: string): void {
  process.stderr.write(`${line}\n`)
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exitCode = 1
})
