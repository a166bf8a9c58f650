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
  type ConvertImageOptions,
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
  cmd?: string
  entrypoint?: string
  env?: string[]
  workdir?: string
  user?: string
}

type RunConfigOverrides = NonNullable<ConvertImageOptions['runConfig']>

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

const RUN_CONFIG_HELP = `
Run settings of the pushed image (with --push): a local INPUT gets a new config with
them (Env defaults to the Debian PATH); a registry INPUT keeps its source config and
has these fields replaced (--env replaces same-named variables, keeps the others).
  e.g. edgestar convert ./rootfs --push HOST/app:1 --cmd '["python3","/app/main.py"]' \\
         --env APP_MODE=edge --workdir /app`

/**
 * Adds `--push REF`, `--platform OS/ARCH[/VARIANT]`, `--insecure-registry HOST[:PORT]` and
 * the run settings of the pushed image (`--cmd`, `--entrypoint`, `--env`, `--workdir`, `--user`).
 */
export function addPushOptions(command: Command): Command {
  return command
    .addHelpText('after', RUN_CONFIG_HELP)
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
    .option(
      '--cmd <json-or-words>',
      'command (Cmd) of the pushed image: a JSON array, or words split on spaces',
    )
    .option('--entrypoint <json-or-words>', "entrypoint of the pushed image ('[]' clears it)")
    .option(
      '--env <key=value>',
      'environment variable of the pushed image (repeatable)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--workdir <dir>', 'working directory of the pushed image (absolute)')
    .option('--user <user[:group]>', 'user the pushed image runs as')
}

const RUN_OPTIONS = ['cmd', 'entrypoint', 'env', 'workdir', 'user'] as const

/**
 * The run settings given on the command line, checked; undefined when none. Throws
 * BAD_OPTION naming the option for a malformed value, or when there is no --push to apply
 * them to.
 */
export function runConfigFrom(opts: ConvertPushCliOptions): RunConfigOverrides | undefined {
  const given = RUN_OPTIONS.filter((name) => opts[name] !== undefined)
  if (given.length === 0) return undefined
  if (opts.push === undefined)
    throw new EdgestarError(
      CONVERT_ERRORS.BAD_OPTION,
      `--${given[0]} sets the config of a pushed image, and there is no --push`,
      { hint: 'add --push REF, or leave out --cmd/--entrypoint/--env/--workdir/--user' },
    )
  const overrides: RunConfigOverrides = {}
  if (opts.cmd !== undefined) overrides.cmd = parseWords('--cmd', opts.cmd)
  if (opts.entrypoint !== undefined)
    overrides.entrypoint = parseWords('--entrypoint', opts.entrypoint)
  if (opts.env !== undefined) overrides.env = opts.env.map(checkEnv)
  if (opts.workdir !== undefined) {
    if (!opts.workdir.startsWith('/'))
      throw badRunOption('--workdir', opts.workdir, 'an absolute path')
    overrides.workingDir = opts.workdir
  }
  if (opts.user !== undefined) {
    if (opts.user.trim() === '') throw badRunOption('--user', opts.user, 'a user name or uid[:gid]')
    overrides.user = opts.user
  }
  return overrides
}

// A JSON array of strings when it starts with "[", else words split on whitespace.
function parseWords(option: string, text: string): string[] {
  const expected = 'a JSON array of strings, e.g. \'["python3","app.py"]\', or plain words'
  if (!text.trim().startsWith('[')) return text.split(/\s+/).filter((word) => word !== '')
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw badRunOption(option, text, expected)
  }
  if (!Array.isArray(parsed) || !parsed.every((word) => typeof word === 'string'))
    throw badRunOption(option, text, expected)
  return parsed
}

function checkEnv(entry: string): string {
  if (!/^[^=\s]+=/.test(entry)) throw badRunOption('--env', entry, 'KEY=VALUE')
  return entry
}

function badRunOption(option: string, value: string, expected: string): EdgestarError {
  return new EdgestarError(CONVERT_ERRORS.BAD_OPTION, `invalid ${option} "${value}"`, {
    hint: `give ${expected}`,
  })
}

/**
 * True when the command must talk to a registry: `--push`, or INPUT is an image reference.
 * Throws INPUT_UNREADABLE, before any network, for a missing INPUT that names no
 * registry host: it is far more likely a mistyped path than a Docker Hub image.
 */
export function usesRegistry(input: string, opts: ConvertPushCliOptions): boolean {
  runConfigFrom(opts)
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
  const hubName = `docker.io/${input.includes('/') ? '' : 'library/'}${input}`
  const asImage = looksLikeReference(input)
    ? `; to convert an image, name it with its registry, e.g. ${hubName}`
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
  const runConfig = runConfigFrom(opts)
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
        ...(runConfig ? { runConfig } : {}),
        convert: convert.options,
      })
      const output: ConvertPushOutput = { kind: 'image', source: done.source, layers: done.layers }
      if (done.pushed) output.pushed = pushedImage(done.pushed)
      return output
    }
    return await convertLocal(client, input, out, { ...opts, runConfig }, convert.runLocal)
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
  opts: { push?: string; platform?: string; runConfig: RunConfigOverrides | undefined },
  runLocal: (input: string, out: string) => Promise<ConvertResult>,
): Promise<ConvertPushOutput> {
  const temp = out === undefined ? await mkdtemp(join(tmpdir(), 'edgestar-convert-')) : undefined
  try {
    const blobPath = out ?? join(temp as string, 'layer.blob')
    const layer = await runLocal(input, blobPath)
    const pushed = await pushConvertedLayer(client, opts.push as string, blobPath, layer, {
      ...(opts.platform ? { platform: opts.platform } : {}),
      ...(opts.runConfig ? { runConfig: opts.runConfig } : {}),
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
