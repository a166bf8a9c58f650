import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import { openLayer, PREFETCH_LANDMARK } from '../../src/estargz/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import { run } from './processes.js'

/** The demo image pushed three ways, and the compressed size of each. */
export interface DemoImages {
  gzip: string
  estargz: string
  optimized: string
  sizes: Record<string, number>
  /** Compressed bytes of the optimized image's prefetch set: what the app needs to start. */
  prefetchBytes: number
}

const APP_COMMAND = ['python3', '/app/app.py']
const APP_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']

/**
 * Pushes the root filesystem as a plain gzip image (what a normal pull uses), converts it to
 * eStargz without a prefetch set, and optimizes it by running the application once.
 */
export async function buildDemoImages(
  rootfs: string,
  registry: string,
  workDir: string,
  say: (line: string) => void,
): Promise<DemoImages> {
  const client = new RegistryClient({ insecureRegistries: [registry], dockerConfigPath: null })
  const repo = `${registry}/demo/app`
  const images = {
    gzip: `${repo}:gzip`,
    estargz: `${repo}:estargz`,
    optimized: `${repo}:optimized`,
  }
  const edgestar = join(import.meta.dirname, '../../../bin/edgestar')
  const registryFlags = ['--insecure-registry', registry]

  try {
    say('image: packing the Debian root filesystem as a plain gzip layer')
    await pushPlainImage(client, rootfs, images.gzip, workDir)

    say('image: converting it to eStargz (no prefetch set)')
    await run(edgestar, ['convert', images.gzip, '--push', images.estargz, ...registryFlags])

    say('image: optimizing it (runs the app once, records what it reads, prioritizes that)')
    // Its own state directory: never the device's /var/lib/edgestar (cleaned up with workDir).
    const optimizeState = ['--state-dir', join(workDir, 'optimize-state')]
    await run(edgestar, [
      'optimize',
      images.gzip,
      images.optimized,
      ...registryFlags,
      ...optimizeState,
    ])

    const sizes: Record<string, number> = {}
    for (const ref of Object.values(images)) {
      const resolved = await client.resolve(ref)
      sizes[ref] = resolved.layers.reduce((sum, layer) => sum + layer.size, 0)
      say(`image: ${ref} ${(sizes[ref] / 1024 / 1024).toFixed(1)} MiB compressed`)
    }
    const prefetchBytes = await prefetchSetBytes(client, images.optimized)
    say(`image: the optimized prefetch set is ${(prefetchBytes / 1024 / 1024).toFixed(1)} MiB`)
    return { ...images, sizes, prefetchBytes }
  } finally {
    await client.close()
  }
}

/** Sums the compressed ranges holding the files placed before each layer's landmark. */
async function prefetchSetBytes(client: RegistryClient, ref: string): Promise<number> {
  const image = await client.resolve(ref)
  let total = 0
  for (const layer of image.layers) {
    const index = await openLayer(client.blobReader(image.reference, layer.digest, layer.size))
    const landmarkAt = index.entries.findIndex((entry) => entry.name === PREFETCH_LANDMARK)
    const prioritized = new Set(index.entries.slice(0, Math.max(0, landmarkAt)).map((e) => e.name))
    const ranges = new Map<number, number>()
    for (const chunk of index.chunks) {
      if (prioritized.has(chunk.entryName)) ranges.set(chunk.compressedOffset, chunk.compressedSize)
    }
    for (const size of ranges.values()) total += size
  }
  return total
}

async function pushPlainImage(
  client: RegistryClient,
  rootfs: string,
  ref: string,
  workDir: string,
): Promise<void> {
  const tarPath = join(workDir, 'rootfs.tar')
  const gzipPath = `${tarPath}.gz`
  await run('tar', ['--numeric-owner', '--xattrs', '-C', rootfs, '-cf', tarPath, '.'])
  await pipeline(createReadStream(tarPath), createGzip({ level: 6 }), createWriteStream(gzipPath))

  await client.pushImage(ref, {
    layers: [
      {
        source: { path: gzipPath },
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        diffID: await sha256File(tarPath),
        digest: await sha256File(gzipPath),
        sizeBytes: (await stat(gzipPath)).size,
      },
    ],
    config: { config: { Cmd: APP_COMMAND, Env: APP_ENV, WorkingDir: '/app' } },
  })
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const piece of createReadStream(path)) hash.update(piece as Buffer)
  return `sha256:${hash.digest('hex')}`
}
