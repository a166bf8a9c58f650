import type { Command } from 'commander'
import {
  type AgentStatus,
  clientFor,
  type DeploymentInfo,
  formatFetched,
  sigkillNote,
} from '../../agent/index.js'
import { formatBytes } from '../../fetch/index.js'
import { printResult } from '../output.js'

/** `edgestar status [NAME]`: the agent, or one deployment, in detail. */
export function register(program: Command): void {
  program
    .command('status')
    .description('show the agent (link, bandwidth, cache, deployments) or one deployment')
    .argument('[name]', 'deployment name')
    .option('--socket <path>', 'agent socket (env EDGESTAR_SOCKET)')
    .option('--json', 'print JSON')
    .action(async (name: string | undefined, options: { socket?: string; json?: boolean }) => {
      const client = clientFor(options)
      const agent = await client.call<AgentStatus>('status')
      if (name === undefined) {
        printResult(options, agent, () => agentText(agent))
        return
      }
      const info = await client.call<DeploymentInfo>('status', { name })
      const result = { ...info, link: agent.link }
      printResult(options, result, () => deploymentText(info, agent))
    })
}

function rate(bytesPerSec: number | null): string {
  return bytesPerSec === null ? 'uncapped' : `${formatBytes(bytesPerSec)}/s`
}

// Older agents report no window; their rate was a one-second sample.
function fetchRate(link: AgentStatus['link'], note = ''): string {
  const windowSec = link.rateWindowSec ?? 1
  return `${rate(link.rateBytesPerSec)} (${windowSec} s average${note})`
}

function agentText(status: AgentStatus): string {
  return [
    `agent      pid ${status.pid}, edgestar ${status.version}, runtime ${status.runtime}`,
    `state dir  ${status.stateDir}`,
    `link       ${status.link.state}, fetching ${fetchRate(status.link)}`,
    `bandwidth  ${rate(status.bandwidth.capBytesPerSec)} (background cap)`,
    `cache      ${cacheText(status.cache)}`,
    `deploys    ${status.deployments.map((d) => `${d.name} ${d.state}`).join(', ') || 'none'}`,
  ].join('\n')
}

function deploymentText(info: DeploymentInfo, agent: AgentStatus): string {
  const lines = [
    `name       ${info.name}`,
    `state      ${info.state}${info.reason ? ` (${info.reason})` : ''}`,
    `image      ${info.image} ${info.manifestDigest}`,
    `fetched    ${formatFetched(info)}${info.isComplete ? ', complete' : ''}`,
    `rate       ${fetchRate(agent.link, ', all images')}, link ${agent.link.state}`,
    `restart    ${info.restart}, ${info.restartCount} restarts`,
  ]
  if (info.pid !== undefined) lines.push(`pid        ${info.pid}`)
  if (info.lastExit !== undefined)
    lines.push(`last exit  code ${info.lastExit.exitCode} at ${info.lastExit.finishedAt}`)
  if (info.lastExit?.killedAfterMs !== undefined)
    lines.push(`           ${sigkillNote(info.lastExit.killedAfterMs)}`)
  if (info.updatingTo !== undefined) lines.push(`updating   to ${info.updatingTo}`)
  return lines.join('\n')
}

function cacheText(cache: { usedBytes: number; limitBytes?: number }): string {
  const used = formatBytes(cache.usedBytes)
  return cache.limitBytes ? `${used} of ${formatBytes(cache.limitBytes)}` : used
}
