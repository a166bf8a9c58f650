import type { Command } from 'commander'
import { EdgestarError } from '../errors.js'

/** How a deployment runs, as `deploy` and `fleet deploy` take it from the command line. */
export interface DeploySpecOptions {
  env: string[]
  restart?: string
  network?: string
  bind: string[]
  workdir?: string
  user?: string
  init?: boolean
  update?: boolean
}

/** One host path bound into the container. */
export interface BindOption {
  source: string
  target: string
  readOnly: boolean
}

/** The fields of a deploy request (local API) or deploy command (MQTT) these options give. */
export interface DeploySpecFields {
  command?: string[]
  env?: Record<string, string>
  restart?: string
  network?: string
  binds?: BindOption[]
  workingDir?: string
  user?: string
  init?: boolean
}

/**
 * Adds the options that say how a deployment runs, the same for `edgestar deploy` and
 * `edgestar fleet deploy`: `--env K=V`, `--restart`, `--network`, `--bind SRC:DST[:ro]`,
 * `--workdir`, `--user`, `--init`, `--update`. Defaults are the agent's, so nothing is sent unless given.
 */
export function addDeploySpecOptions(command: Command): Command {
  return command
    .option('--env <K=V>', 'environment variable (repeatable)', collect, [])
    .option('--restart <policy>', 'restart policy: no, on-failure, always (default no)')
    .option('--network <mode>', 'host or none (default host)')
    .option(
      '--bind <SRC:DST[:ro]>',
      'bind a host path into the container (repeatable)',
      collect,
      [],
    )
    .option('--workdir <dir>', 'working directory inside the container')
    .option('--user <user>', 'user[:group] to run as (name or id)')
    .option('--init', 'run a small init as pid 1 that forwards signals and reaps zombies')
    .option(
      '--update',
      'deploy to an existing name (rolls back when it fails). The new spec replaces the ' +
        'old one whole: options not given again (--init, --env, --restart, a command ' +
        'after --, ...) return to their defaults',
    )
}

/**
 * The request fields of the options and the command after `--`; only what was given.
 * Throws EDGESTAR_CLI_BAD_OPTION for a value of the wrong form, naming the option.
 */
export function deploySpecFrom(options: DeploySpecOptions, command: string[]): DeploySpecFields {
  checkChoice('--restart', options.restart, RESTART_POLICIES)
  checkChoice('--network', options.network, NETWORK_MODES)
  return {
    ...(command.length === 0 ? {} : { command }),
    ...(options.env.length === 0 ? {} : { env: parseEnv(options.env) }),
    ...(options.restart === undefined ? {} : { restart: options.restart }),
    ...(options.network === undefined ? {} : { network: options.network }),
    ...(options.bind.length === 0 ? {} : { binds: options.bind.map(parseBind) }),
    ...(options.workdir === undefined ? {} : { workingDir: options.workdir }),
    ...(options.user === undefined ? {} : { user: options.user }),
    ...(options.init ? { init: true } : {}),
  }
}

const RESTART_POLICIES = ['no', 'on-failure', 'always']
const NETWORK_MODES = ['host', 'none']

// Checked here as well as on the device, so a typo fails before anything is sent.
function checkChoice(option: string, value: string | undefined, choices: string[]): void {
  if (value === undefined || choices.includes(value)) return
  throw new EdgestarError(
    'EDGESTAR_CLI_BAD_OPTION',
    `${option} ${JSON.stringify(value)} is not one of ${choices.join(', ')}`,
  )
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value]
}

/** `K=V` pairs as an object; EDGESTAR_CLI_BAD_OPTION for a pair without a name. */
export function parseEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {}
  for (const pair of pairs) {
    const eq = pair.indexOf('=')
    if (eq <= 0)
      throw new EdgestarError('EDGESTAR_CLI_BAD_OPTION', `--env ${JSON.stringify(pair)} is not K=V`)
    env[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return env
}

/** `SRC:DST[:ro|rw]` as a bind; EDGESTAR_CLI_BAD_OPTION for any other form. */
export function parseBind(text: string): BindOption {
  const [source, target, mode, ...rest] = text.split(':')
  const isValid =
    source?.startsWith('/') === true &&
    target?.startsWith('/') === true &&
    rest.length === 0 &&
    (mode === undefined || mode === 'ro' || mode === 'rw')
  if (!isValid)
    throw new EdgestarError(
      'EDGESTAR_CLI_BAD_OPTION',
      `--bind ${JSON.stringify(text)} is not SRC:DST[:ro]`,
      { hint: 'give absolute paths, e.g. --bind /srv/data:/data:ro' },
    )
  return { source: source as string, target: target as string, readOnly: mode === 'ro' }
}
