import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Command } from 'commander'
import { EdgestarError } from '../../errors.js'
import {
  CONVERT_ERRORS,
  type ConvertOptions,
  type ConvertResult,
  outputError,
} from '../../estargz/index.js'
import {
  type ConvertImageResult,
  convertImage,
  formatPlatform,
  looksLikeReference,
  type PushImageResult,
  pushConvertedLayer,
  RegistryClient,
} from '../../registry/index.js'
import { settingsFrom } from '../options.js'

/** The registry options `edgestar convert` takes, as commander hands them over. */
export interface ConvertPushCliOptions {
  push?: string
  platform?: string
  insecureRegistry?: string[]
  config?: string
}

/** What `edgestar convert ... --push` (or a registry INPUT) prints with --json. */
export type ConvertPushOutput =
  | { kind: 'layer'; layer: ConvertResult; pushed?: PushedImage }
  | {
      kind: 'image'
      source: ConvertImageResult['source']
      layers: ConvertResult[]
      pushed?: PushedImage
    }

/** The published image, as printed. */
export interface PushedImage {
  reference: string
  manifestDigest: string
  configDigest: string
  platform: string
}

/** Adds `--push REF`, `--platform OS/ARCH[/VARIANT]`, `--insecure-registry HOST[:PORT]`. */
export function addPushOptions(command: Command): Command {
  return command
    .option(
      '--push <ref>',
      'publish the result to a registry as REF (single-layer image, or the converted image)',
    )
    .option(
      '--platform <os/arch[/variant]>',
      "platform of the pushed image, or to pick from a registry INPUT; default the machine's",
    )
    .option(
      '--insecure-registry <host[:port]>',
      'talk plain HTTP to this registry (repeatable)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
}

/**
 * True when the command must talk to a registry: `--push`, or INPUT is an image reference.
 * Throws INPUT_UNREADABLE, before any network, for a missing INPUT that names no
 * registry host: it is far more likely a mistyped path than a Docker Hub image.
 */
export function usesRegistry(input: string, opts: ConvertPushCliOptions): boolean {
  if (!existsSync(input) && !hasRegistryHost(input)) throw noSuchInput(input)
  return opts.push !== undefined || isRegistryInput(input)
}

function isRegistryInput(input: string): boolean {
  return !existsSync(input) && hasRegistryHost(input) && looksLikeReference(input)
}

// As Docker reads a reference: the first component is a registry host when it has a
// dot or a colon, or is "localhost".
function hasRegistryHost(input: string): boolean {
  const slash = input.indexOf('/')
  if (slash < 0) return false
  const first = input.slice(0, slash)
  return first.includes('.') || first.includes(':') || first === 'localhost'
}

function noSuchInput(input: string): EdgestarError {
  const asImage = looksLikeReference(input)
    ? `; to convert an image, name it with its registry, e.g. docker.io/${input.includes('/') ? '' : 'library/'}${input}`
    : ''
  return new EdgestarError(CONVERT_ERRORS.INPUT_UNREADABLE, `no such file or directory: ${input}`, {
    hint: `give an existing directory, tar, tar.gz or tar.zst file${asImage}`,
  })
}

/**
 * Runs `convert` against a registry. A local INPUT is converted by `runLocal` (to OUT, or
 * a temporary file) and pushed as a single-layer image; a registry INPUT has every layer
 * converted (kept in OUT when given, as a directory) and, with --push, is published.
 */
export async function runConvertPush(
  input: string,
  out: string | undefined,
  opts: ConvertPushCliOptions,
  convert: {
    options: ConvertOptions
    runLocal: (input: string, out: string) => Promise<ConvertResult>
  },
): Promise<ConvertPushOutput> {
  const settings = settingsFrom({
    ...(opts.insecureRegistry ? { insecureRegistry: opts.insecureRegistry } : {}),
    ...(opts.config ? { config: opts.config } : {}),
  })
  const client = new RegistryClient({
    insecureRegistries: settings.insecureRegistries,
    ...(settings.dockerConfigPath === undefined
      ? {}
      : { dockerConfigPath: settings.dockerConfigPath }),
  })
  const platform = opts.platform
  try {
    if (isRegistryInput(input)) {
      if (opts.push === undefined && out === undefined) {
        throw new EdgestarError(CONVERT_ERRORS.BAD_OPTION, `nothing to do with ${input}`, {
          hint: 'give --push DST-REF to publish the converted image, or OUT (a directory) to keep its layers',
        })
      }
      if (out !== undefined) await prepareOutDir(out)
      const done = await convertImage(client, input, {
        ...(opts.push ? { pushTo: opts.push } : {}),
        ...(platform ? { platform } : {}),
        ...(out ? { outDir: out } : {}),
        convert: convert.options,
      })
      const output: ConvertPushOutput = { kind: 'image', source: done.source, layers: done.layers }
      if (done.pushed) output.pushed = pushedImage(done.pushed)
      return output
    }
    return await convertLocal(client, input, out, opts, convert.runLocal)
  } finally {
    await client.close()
  }
}

// OUT of a registry INPUT is a directory for the converted blobs: made if missing.
async function prepareOutDir(out: string): Promise<void> {
  const stats = await stat(out).catch(() => undefined)
  if (stats !== undefined && !stats.isDirectory())
    throw new EdgestarError(
      CONVERT_ERRORS.OUTPUT_NOT_DIRECTORY,
      `OUT ${out} is not a directory; a registry INPUT converts to one blob per layer`,
      {
        hint: `give a directory (created if missing) for layer-0.blob, layer-1.blob..., or --push DST-REF`,
      },
    )
  await mkdir(out, { recursive: true }).catch((cause: unknown) => {
    throw outputError(out, cause)
  })
}

async function convertLocal(
  client: RegistryClient,
  input: string,
  out: string | undefined,
  opts: ConvertPushCliOptions,
  runLocal: (input: string, out: string) => Promise<ConvertResult>,
): Promise<ConvertPushOutput> {
  const temp = out === undefined ? await mkdtemp(join(tmpdir(), 'edgestar-convert-')) : undefined
  try {
    const blobPath = out ?? join(temp as string, 'layer.blob')
    const layer = await runLocal(input, blobPath)
    const pushed = await pushConvertedLayer(client, opts.push as string, blobPath, layer, {
      ...(opts.platform ? { platform: opts.platform } : {}),
    })
    return { kind: 'layer', layer, pushed: pushedImage(pushed) }
  } finally {
    if (temp) await rm(temp, { recursive: true, force: true })
  }
}

function pushedImage(pushed: PushImageResult): PushedImage {
  return {
    reference: pushed.reference.name,
    manifestDigest: pushed.manifestDigest,
    configDigest: pushed.configDigest,
    platform: formatPlatform(pushed.platform),
  }
}

/** Human text for a registry conversion. */
export function convertPushText(output: ConvertPushOutput): string {
  const lines: string[] = []
  if (output.kind === 'layer') {
    lines.push(`converted layer ${output.layer.digest} (toc ${output.layer.tocDigest})`)
  } else {
    const platform = formatPlatform(output.source.platform)
    lines.push(
      `converted ${output.layers.length} layer(s) of ${output.source.reference} (${platform})`,
    )
    for (const layer of output.layers)
      lines.push(`  ${layer.digest}  ${layer.size} bytes  toc ${layer.tocDigest}`)
  }
  if (output.pushed) {
    lines.push(
      `pushed ${output.pushed.reference}@${output.pushed.manifestDigest} (${output.pushed.platform})`,
    )
  }
  return lines.join('\n')
}
