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
import { addDeploySpecOptions, type DeploySpecOptions, deploySpecFrom } from '../deploy-spec.js'
import { isInteractive, printResult } from '../output.js'

interface DeployOptions extends DeploySpecOptions {
  name: string
  detach?: boolean
  socket?: string
  json?: boolean
}

const POLL_MS = 500
// Without a terminal (a log, CI, ssh without -t) a line this often shows the wait is alive.
const PROGRESS_LINE_MS = 5000

/** `edgestar deploy REF --name NAME [...] [-- CMD ARGS...]`. */
export function register(program: Command): void {
  const deploy = program
    .command('deploy')
    .usage('<ref> --name <name> [options] [-- command...]')
    .description(
      'deploy an image as a named container on this device; waits until it runs, then ' +
        'until the whole image is downloaded, showing progress (unless --detach). A command ' +
        "after -- replaces the image's entrypoint and command. A container that cannot " +
        'start (a command the image lacks, say) fails the deploy and leaves nothing behind, ' +
        'so the same deploy can be retried at once.',
    )
    .argument('<ref>', 'image reference, e.g. 127.0.0.1:5000/app:1')
    .argument('[command...]', 'command and arguments to run instead of the image default')
    .requiredOption('--name <name>', 'deployment name, required (a-z 0-9 . _ -)')
  addDeploySpecOptions(deploy)
    .option(
      '--detach',
      'return once the container has started (or failed to start), instead of waiting for ' +
        "the full image download; with --update, once the new image's prefetch has begun",
    )
    .option('--socket <path>', 'agent socket (env EDGESTAR_SOCKET)')
    .option('--json', 'print the result as JSON')
    .action(async (ref: string, command: string[], options: DeployOptions) => {
      const request = {
        name: options.name,
        image: ref,
        ...deploySpecFrom(options, command),
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
      if (info.state === 'failed') throw failedError(info)
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

// The container ran and then failed while the image was downloading: the deploy did not
// bring it up for good, so it is reported as a failure, with where to look.
function failedError(info: DeploymentInfo): EdgestarError {
  return new EdgestarError(
    'EDGESTAR_AGENT_DEPLOYMENT_FAILED',
    `deployment "${info.name}" failed${info.reason ? `: ${info.reason}` : ''}`,
    { hint: `edgestar logs ${info.name} shows its output, edgestar status ${info.name} its state` },
  )
}
