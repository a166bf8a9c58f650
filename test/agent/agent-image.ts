import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { type ConvertResult, convertLayer } from '../../src/estargz/index.js'
import type { Platform, RegistryClient } from '../../src/registry/index.js'

/** A converted layer blob on disk with what a manifest needs. */
export interface BuiltLayer {
  path: string
  result: ConvertResult
}

/** The app the agent tests deploy: prints one line, then waits (SIGTERM exits 0). */
export function appScript(version: string): string {
  return [
    'import hashlib, signal, sys, time',
    'signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))',
    'digest = hashlib.sha256(b"edge").hexdigest()[:12]',
    `print(f"edge-app ${version} ready {digest}", flush=True)`,
    'while True:',
    '    time.sleep(3600)',
    '',
  ].join('\n')
}

/**
 * The Debian rootfs as one eStargz layer, converted once and cached under
 * `$EDGESTAR_CACHE_DIR/agent-image/` keyed by the rootfs build (the marker file that
 * scripts/build-rootfs.sh keeps beside the tree) and by the /app/app.py it rewrites.
 */
export async function baseLayer(rootfs: string, cacheDir: string): Promise<BuiltLayer> {
  const marker = await stat(`${rootfs}.complete`)
  const app = await readFile(path.join(rootfs, 'app', 'app.py'), 'utf8')
  const key = hash(`${rootfs}:${marker.mtimeMs}:${app}`)
  return cachedConvert(rootfs, path.join(cacheDir, 'agent-image', `base-${key}`))
}

/** A small layer holding /app/edge-app.py for `version`, cached by content. */
export async function appLayer(version: string, cacheDir: string): Promise<BuiltLayer> {
  const script = appScript(version)
  const dir = path.join(cacheDir, 'agent-image', `app-${hash(script)}`)
  const source = `${dir}.src`
  await mkdir(path.join(source, 'app'), { recursive: true })
  await writeFile(path.join(source, 'app', 'edge-app.py'), script)
  return cachedConvert(source, dir)
}

/** Pushes base + app as an image whose command runs the app. */
export async function pushAppImage(
  client: RegistryClient,
  ref: string,
  layers: BuiltLayer[],
  options: { cmd?: string[]; platform?: Platform } = {},
): Promise<string> {
  const platform = options.platform ?? { os: 'linux', architecture: 'amd64' }
  const pushed = await client.pushImage(ref, {
    layers: layers.map((layer) => ({
      source: { path: layer.path },
      mediaType: layer.result.mediaType,
      diffID: layer.result.diffID,
      digest: layer.result.digest,
      sizeBytes: layer.result.size,
      annotations: layer.result.annotations,
    })),
    platform,
    config: {
      architecture: platform.architecture,
      os: platform.os,
      config: {
        Env: ['PATH=/usr/local/bin:/usr/bin:/bin'],
        Cmd: options.cmd ?? ['python3', '/app/edge-app.py'],
        WorkingDir: '/',
      },
    },
  })
  return pushed.manifestDigest
}

async function cachedConvert(source: string, dir: string): Promise<BuiltLayer> {
  const blob = path.join(dir, 'layer.blob')
  const meta = path.join(dir, 'layer.json')
  const cached = await readFile(meta, 'utf8').catch(() => undefined)
  if (cached !== undefined) return { path: blob, result: JSON.parse(cached) as ConvertResult }

  await mkdir(dir, { recursive: true })
  const result = await convertLayer(source, `${blob}.tmp`, {})
  await rename(`${blob}.tmp`, blob)
  await writeFile(`${meta}.tmp`, JSON.stringify(result))
  await rename(`${meta}.tmp`, meta)
  await rm(`${dir}.src`, { recursive: true, force: true }).catch(() => undefined)
  return { path: blob, result }
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16)
}
