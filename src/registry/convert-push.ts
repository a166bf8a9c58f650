import { createWriteStream } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import {
  type ConvertOptions,
  type ConvertResult,
  convertLayer,
  TOC_DIGEST_ANNOTATION,
  UNCOMPRESSED_SIZE_ANNOTATION,
} from '../estargz/index.js'
import { moduleLogger } from '../log.js'
import type { RegistryClient } from './client.js'
import { parsePlatform } from './platform.js'
import type { PushImageResult, PushLayer } from './push-image.js'
import { parseReference } from './reference.js'
import type { ImageConfig, ImageReference, Platform, ResolvedImage } from './types.js'

const log = moduleLogger('registry')

/** The manifest annotations a converted layer is published with (TOC digest, sizes, zstd:chunked). */
export function convertedLayerAnnotations(result: ConvertResult): Record<string, string> {
  return {
    ...result.annotations,
    [TOC_DIGEST_ANNOTATION]: result.tocDigest,
    [UNCOMPRESSED_SIZE_ANNOTATION]: String(result.uncompressedSize),
  }
}

/** A converted layer blob on disk and what the converter said about it. */
export function convertedPushLayer(blobPath: string, result: ConvertResult): PushLayer {
  return {
    source: { path: blobPath },
    mediaType: result.mediaType,
    diffID: result.diffID,
    digest: result.digest,
    sizeBytes: result.size,
    annotations: convertedLayerAnnotations(result),
  }
}

/**
 * The run settings of an image config that `convert --push` can set (`--cmd`, `--entrypoint`,
 * `--env`, `--workdir`, `--user`). A field left out keeps what the base config has.
 */
export interface RunConfigOverrides {
  cmd?: string[]
  entrypoint?: string[]
  /** `KEY=VALUE` entries; each replaces the base's entry of the same KEY, others are kept. */
  env?: string[]
  workingDir?: string
  user?: string
}

/** The PATH a Debian image sets, given to a new image whose Env names none. */
export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

type RunConfig = NonNullable<ImageConfig['config']>

/**
 * The run config `base` becomes with `overrides` applied. With `defaultPath` (a new image,
 * not a source image's config), an Env without PATH gets the Debian one, since a runtime
 * would otherwise find no command.
 */
export function applyRunConfig(
  base: RunConfig | undefined,
  overrides: RunConfigOverrides,
  options: { defaultPath?: boolean } = {},
): RunConfig {
  const config: RunConfig = { ...base }
  if (overrides.cmd !== undefined) config.Cmd = overrides.cmd
  if (overrides.entrypoint !== undefined) config.Entrypoint = overrides.entrypoint
  if (overrides.workingDir !== undefined) config.WorkingDir = overrides.workingDir
  if (overrides.user !== undefined) config.User = overrides.user

  const env = mergeEnv(config.Env ?? [], overrides.env ?? [])
  if (options.defaultPath && !env.some((entry) => entry.startsWith('PATH=')))
    env.unshift(DEFAULT_PATH_ENV)
  if (env.length > 0) config.Env = env
  return config
}

// KEY=VALUE entries of `extra` replace those of `base` with the same KEY, in place.
function mergeEnv(base: string[], extra: string[]): string[] {
  const env = [...base]
  const keyOf = (entry: string): string => entry.slice(0, Math.max(0, entry.indexOf('=')))
  for (const entry of extra) {
    const at = env.findIndex((old) => keyOf(old) === keyOf(entry))
    if (at >= 0) env[at] = entry
    else env.push(entry)
  }
  return env
}

/**
 * Publishes one converted layer (`edgestar convert INPUT OUT --push REF`) as a
 * single-layer image: a config with the layer's diffID, `platform` (default the
 * machine's) and `runConfig` (PATH defaulted), and an OCI manifest whose layer carries the TOC digest and
 * uncompressed-size annotations. Throws the codes of `RegistryClient.pushImage`.
 */
export async function pushConvertedLayer(
  client: RegistryClient,
  ref: string | ImageReference,
  blobPath: string,
  result: ConvertResult,
  options: { platform?: Platform | string; runConfig?: RunConfigOverrides } = {},
): Promise<PushImageResult> {
  const platform =
    typeof options.platform === 'string' ? parsePlatform(options.platform) : options.platform
  const config: Partial<ImageConfig> = {
    created: new Date().toISOString(),
    config: applyRunConfig({}, options.runConfig ?? {}, { defaultPath: true }),
    history: [{ created_by: 'edgestar convert' }],
  }
  return client.pushImage(ref, {
    layers: [convertedPushLayer(blobPath, result)],
    config,
    ...(platform ? { platform } : {}),
  })
}

/** Options of `convertImage`. */
export interface ConvertImageOptions {
  /** Where to publish the converted image; without it the blobs are only written. */
  pushTo?: string | ImageReference
  /** Platform to pick from the source (default the machine's). */
  platform?: Platform | string
  /** Converter options (format, chunk size, prioritized paths...). */
  convert?: ConvertOptions
  /**
   * Directory to keep converted blobs in (`layer-<index>.blob`), made if missing; default a
   * temporary one, removed.
   */
  outDir?: string
  /** Run settings that replace the source config's (command, env...) in the pushed image. */
  runConfig?: RunConfigOverrides
  /** Called after each layer is converted. */
  onLayer?: (event: { index: number; count: number; source: string; result: ConvertResult }) => void
}

/** What `convertImage` did. */
export interface ConvertImageResult {
  source: { reference: string; manifestDigest: string; platform: Platform }
  layers: ConvertResult[]
  /** Where each converted blob was written (only kept with `outDir`). */
  blobPaths: string[]
  pushed?: PushImageResult
}

/**
 * Converts every layer of an image in a registry (`edgestar convert SRC-REF --push
 * DST-REF`): each layer blob is streamed to a temporary file (its digest checked), run
 * through the converter, and, with `pushTo`, the image is published with the source's
 * config (command, env...) and the converted layers' diffIDs and annotations. Layers
 * go one at a time, so disk holds at most one source and the converted blobs.
 */
export async function convertImage(
  client: RegistryClient,
  src: string | ImageReference,
  options: ConvertImageOptions = {},
): Promise<ConvertImageResult> {
  const source = await client.resolve(
    src,
    options.platform === undefined ? {} : { platform: options.platform },
  )
  if (options.outDir !== undefined) await mkdir(options.outDir, { recursive: true })
  const work = await mkdtemp(join(options.outDir ?? tmpdir(), '.edgestar-convert-'))
  const outDir = options.outDir ?? work
  try {
    const { layers, blobPaths } = await convertLayers(client, source, work, outDir, options)
    const result: ConvertImageResult = {
      source: {
        reference: source.reference.name,
        manifestDigest: source.manifestDigest,
        platform: source.platform,
      },
      layers,
      blobPaths,
    }
    if (options.pushTo !== undefined) {
      result.pushed = await client.pushImage(options.pushTo, {
        layers: layers.map((r, i) => convertedPushLayer(blobPaths[i] as string, r)),
        config: {
          ...source.config,
          config: applyRunConfig(source.config.config, options.runConfig ?? {}),
        },
        platform: source.platform,
      })
    }
    return result
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

async function convertLayers(
  client: RegistryClient,
  source: ResolvedImage,
  work: string,
  outDir: string,
  options: ConvertImageOptions,
): Promise<{ layers: ConvertResult[]; blobPaths: string[] }> {
  const layers: ConvertResult[] = []
  const blobPaths: string[] = []
  for (const [index, layer] of source.layers.entries()) {
    const input = join(work, `source-${index}`)
    await pipeline(
      client.blobStream(source.reference, layer.digest, layer.size),
      createWriteStream(input),
    )

    const output = join(outDir, `layer-${index}.blob`)
    const result = await convertLayer(input, output, { tempDir: work, ...options.convert })
    await rm(input, { force: true })
    log.info(
      { layer: layer.digest, converted: result.digest, index, count: source.layers.length },
      'layer converted',
    )
    layers.push(result)
    blobPaths.push(output)
    options.onLayer?.({ index, count: source.layers.length, source: layer.digest, result })
  }
  return { layers, blobPaths }
}

/**
 * True when a (non-existent) INPUT reads as an image reference rather than a local path:
 * it parses as a reference and is not spelled like a path or an archive file name.
 */
export function looksLikeReference(input: string): boolean {
  if (input.startsWith('/') || input.startsWith('.') || input.includes('\\')) return false
  if (/\.(tar|tgz|gz|zst|zstd|tar\.gz|tar\.zst)$/i.test(input)) return false
  try {
    parseReference(input)
    return true
  } catch {
    return false
  }
}
