import cliProgress from 'cli-progress'
import type { Command } from 'commander'
import {
  type ApiMessage,
  clientFor,
  type DeploymentInfo,
  type DeploymentStateEvent,
  formatFetched,
} from '../../agent/index.js'
import { EdgestarError } from '../../errors.js'
import { isInteractive, printResult } from '../output.js'

interface DeployOptions {
  name: string
  env: string[]
  restart?: string
  network?: string
  bind: string[]
  workdir?: string
  user?: string
  update?: boolean
  init?: boolean
  detach?: boolean
  socket?: string
  json?: boolean
}

const POLL_MS = 500
// Without a terminal (a log, CI, ssh without -t) a line this often shows the wait is alive.
const PROGRESS_LINE_MS = 5000

/** `edgestar deploy REF --name NAME [...] [-- CMD ARGS...]`. */
export function register(program: Command): void {
  program
    .command('deploy')
    .description(
      'deploy an image as a named container on this device; waits until it runs, then ' +
        'until the whole image is downloaded, showing progress (unless --detach). A command ' +
        "after -- replaces the image's entrypoint and command.",
    )
    .argument('<ref>', 'image reference, e.g. 127.0.0.1:5000/app:1')
    .argument('[command...]', 'command and arguments to run instead of the image default')
    .requiredOption('--name <name>', 'deployment name (a-z 0-9 . _ -)')
    .option('--env <K=V>', 'environment variable (repeatable)', collect, [])
    .option('--restart <policy>', 'restart policy: no, on-failure, always', 'no')
    .option('--network <mode>', 'host or none', 'host')
    .option(
      '--bind <SRC:DST[:ro]>',
      'bind a host path into the container (repeatable)',
      collect,
      [],
    )
    .option('--workdir <dir>', 'working directory inside the container')
    .option('--user <user>', 'user[:group] to run as (name or id)')
    .option('--init', 'run a small init as pid 1 that forwards signals and reaps zombies')
    .option('--update', 'deploy a new image to an existing name (rolls back when it fails)')
    .option(
      '--detach',
      'return once the deployment is accepted, instead of waiting for the full image download',
    )
    .option('--socket <path>', 'agent socket (env EDGESTAR_SOCKET)')
    .option('--json', 'print the result as JSON')
    .action(async (ref: string, command: string[], options: DeployOptions) => {
      const request = {
        name: options.name,
        image: ref,
        restart: options.restart,
        network: options.network,
        ...(command.length === 0 ? {} : { command }),
        ...(options.env.length === 0 ? {} : { env: parseEnv(options.env) }),
        ...(options.bind.length === 0 ? {} : { binds: options.bind.map(parseBind) }),
        ...(options.workdir === undefined ? {} : { workingDir: options.workdir }),
        ...(options.user === undefined ? {} : { user: options.user }),
        ...(options.init ? { init: true } : {}),
        ...(options.update ? { update: true } : {}),
        ...(options.detach ? { detach: true } : {}),
      }
      const client = clientFor(options)
      const showsProgress = isInteractive() && !options.json
      const onMessage = (message: ApiMessage): void => {
        if (message.type !== 'event' || options.json) return
        const event = message.event as DeploymentStateEvent
        process.stderr.write(
          `${event.name}: ${event.state}${event.reason ? ` (${event.reason})` : ''}\n`,
        )
      }

      let info = await client.call<DeploymentInfo>('deploy', request, onMessage)
      if (!options.detach && !info.isComplete && info.state === 'running')
        info = await followDownload(options, info, showsProgress)
      printResult(
        options,
        info,
        () => `${info.name} ${info.state}: ${formatFetched(info)} of the image local`,
      )
    })
}

/**
 * Polls the deployment until its image is complete, with a progress bar on a terminal, or
 * else (without --json) a plain progress line on stderr at once and every 5 s.
 */
async function followDownload(
  options: DeployOptions,
  first: DeploymentInfo,
  showsBar: boolean,
): Promise<DeploymentInfo> {
  const client = clientFor(options)
  const bar = showsBar
    ? new cliProgress.SingleBar(
        { format: '{name} image [{bar}] {fetched}', hideCursor: true },
        cliProgress.Presets.shades_classic,
      )
    : undefined
  bar?.start(Math.max(1, first.totalBytes), first.fetchedBytes, {
    name: first.name,
    fetched: formatFetched(first),
  })
  const printsLines = !showsBar && !options.json
  const line = (info: DeploymentInfo): void => {
    if (printsLines) process.stderr.write(`${info.name}: image ${formatFetched(info)} local\n`)
  }
  if (printsLines)
    process.stderr.write(
      `${first.name}: waiting for the whole image to be local (--detach does not wait)\n`,
    )
  line(first)
  let lineAt = Date.now()
  let info = first
  try {
    while (!info.isComplete && info.state !== 'failed' && info.state !== 'stopped') {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS))
      info = await client.call<DeploymentInfo>('status', { name: first.name })
      bar?.setTotal(Math.max(1, info.totalBytes))
      bar?.update(info.fetchedBytes, { fetched: formatFetched(info) })
      if (Date.now() - lineAt >= PROGRESS_LINE_MS) {
        line(info)
        lineAt = Date.now()
      }
    }
  } finally {
    bar?.stop()
  }
  return info
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value]
}

function parseEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {}
  for (const pair of pairs) {
    const eq = pair.indexOf('=')
    if (eq <= 0)
      throw new EdgestarError('EDGESTAR_CLI_BAD_OPTION', `--env ${JSON.stringify(pair)} is not K=V`)
    env[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return env
}

function parseBind(text: string): { source: string; target: string; readOnly: boolean } {
  const [source, target, mode] = text.split(':')
  if (!source || !target || (mode !== undefined && mode !== 'ro' && mode !== 'rw'))
    throw new EdgestarError(
      'EDGESTAR_CLI_BAD_OPTION',
      `--bind ${JSON.stringify(text)} is not SRC:DST[:ro]`,
    )
  return { source, target, readOnly: mode === 'ro' }
}
