import { basename, join } from 'node:path'
import { AgentClient } from '../../src/agent/index.js'
import { Cleanup, run, sleep, startBackground } from './processes.js'
import type { VariantResult } from './report.js'

const DEVICE_ID = 'demo-gateway'
const APP_NAME = 'app'
const READY_LINE = 'edgestar-demo ready'
const POLL_MS = 100
const DEADLINE_MS = 20 * 60_000

/** What one measured deployment needs to know. */
export interface VariantSpec {
  label: string
  ref: string
  waitForComplete: boolean
  projectDir: string
  stateDir: string
  registry: string
  brokerUrl: string
  imageBytes: number
  /** The agent's background fetch cap, e.g. `256KiB`: demand reads are never held by it. */
  backgroundCap: string
  /** The demo's own cleanup: Ctrl-C must stop this deployment's agent before the link goes. */
  parentCleanup: Cleanup
  say: (line: string) => void
}

/** The fields of `edgestar status NAME --json` the demo reads. */
interface DeploymentStatus {
  state: string
  reason: string | null
  fetchedBytes: number
  totalBytes: number
  isComplete: boolean
}

/**
 * Starts a fresh agent inside the device namespace, sends the deploy command over MQTT as a
 * fleet operator would, and measures the time and the registry bytes until the ready line.
 */
export async function measureDeployment(spec: VariantSpec): Promise<VariantResult> {
  const cleanup = new Cleanup()
  spec.parentCleanup.add(`deployment ${spec.label}`, () => cleanup.runAll())
  const edgestar = join(spec.projectDir, 'bin/edgestar')
  const socket = join(spec.stateDir, 'agent.sock')
  try {
    await startAgent(spec, edgestar, socket, cleanup)
    const agent = new AgentClient(socket)
    watchFleet(spec, edgestar, cleanup)

    // The fleet command's result may come back only once the container runs, so the clock
    // and the polling start with it, not after it.
    spec.say(`deploy: edgestar fleet deploy ${APP_NAME} ${spec.ref} --device-id ${DEVICE_ID}`)
    const startedAt = Date.now()
    const deployed = run(edgestar, [
      'fleet',
      'deploy',
      APP_NAME,
      spec.ref,
      '--device-id',
      DEVICE_ID,
      '--mqtt-url',
      spec.brokerUrl,
      '--timeout',
      '900',
    ])
    let deployError: Error | undefined
    deployed.catch((err: Error) => {
      deployError = err
    })

    const ready = await waitForReady(spec, agent, startedAt, () => deployError)
    spec.say(`ready after ${(ready.readyMs / 1000).toFixed(1)} s: ${ready.line}`)
    await deployed

    const completeMs = spec.waitForComplete
      ? await waitForComplete(spec, agent, startedAt)
      : undefined
    return {
      label: spec.label,
      readyMs: ready.readyMs,
      bytesBeforeReady: ready.bytesFetched,
      imageBytes: spec.imageBytes,
      completeMs,
    }
  } finally {
    await cleanup.runAll()
  }
}

async function startAgent(
  spec: VariantSpec,
  edgestar: string,
  socket: string,
  cleanup: Cleanup,
): Promise<void> {
  startBackground(
    'bash',
    [
      join(spec.projectDir, 'scripts/link.sh'),
      'exec',
      edgestar,
      'agent',
      '--state-dir',
      spec.stateDir,
      '--socket',
      socket,
      '--insecure-registry',
      spec.registry,
      '--mqtt-url',
      spec.brokerUrl,
      '--device-id',
      DEVICE_ID,
      '--bandwidth',
      spec.backgroundCap,
    ],
    cleanup,
    'agent',
    { logPath: join(spec.stateDir, '..', `agent-${basename(spec.stateDir)}.log`) },
  )
  const agent = new AgentClient(socket)
  for (let attempt = 0; attempt < 120; attempt++) {
    try {
      await agent.call('status')
      return
    } catch {
      await sleep(250)
    }
  }
  throw new Error(
    `demo: the agent did not answer on ${socket} within 30 s; see ` +
      join(spec.stateDir, '..', `agent-${basename(spec.stateDir)}.log`),
  )
}

/** Prints the fleet's view (status and events of the device) as the operator sees it. */
function watchFleet(spec: VariantSpec, edgestar: string, cleanup: Cleanup): void {
  startBackground(
    edgestar,
    ['fleet', 'watch', '--mqtt-url', spec.brokerUrl, '--device-id', DEVICE_ID],
    cleanup,
    'fleet watch',
    { onStdoutLine: (line) => spec.say(`fleet: ${line}`) },
  )
}

async function waitForReady(
  spec: VariantSpec,
  agent: AgentClient,
  startedAt: number,
  deployError: () => Error | undefined,
): Promise<{ readyMs: number; bytesFetched: number; line: string }> {
  let lastState = ''
  let lastReport = 0
  while (Date.now() - startedAt < DEADLINE_MS) {
    const logs = await readLogs(agent)
    const line = logs.split('\n').find((text) => text.includes(READY_LINE))
    const status = await readStatus(agent)
    if (status && status.state !== lastState) {
      lastState = status.state
      spec.say(`state: ${status.state}`)
    }
    if (status && status.totalBytes > 0 && Date.now() - lastReport > 1000) {
      lastReport = Date.now()
      const fraction = status.fetchedBytes / status.totalBytes
      spec.say(
        `fetch: ${progressBar(fraction)} ${mib(status.fetchedBytes)} of ${mib(status.totalBytes)}`,
      )
    }
    if (line) {
      return { readyMs: Date.now() - startedAt, bytesFetched: status?.fetchedBytes ?? 0, line }
    }
    const failedCommand = deployError()
    if (failedCommand)
      throw new Error(`demo: the fleet deploy command failed: ${failedCommand.message}`)
    if (status?.state === 'failed') {
      throw new Error(`demo: deployment failed (${spec.label}): ${status.reason ?? 'no reason'}`)
    }
    await sleep(POLL_MS)
  }
  throw new Error(`demo: no ready line within ${DEADLINE_MS / 60_000} minutes (${spec.label})`)
}

async function waitForComplete(
  spec: VariantSpec,
  agent: AgentClient,
  startedAt: number,
): Promise<number | undefined> {
  let lastReport = 0
  while (Date.now() - startedAt < DEADLINE_MS) {
    const status = await readStatus(agent)
    const present = status?.fetchedBytes ?? 0
    const total = status?.totalBytes ?? 0
    if (status?.isComplete) {
      spec.say('background fetch complete: every chunk of the image is local')
      return Date.now() - startedAt
    }
    if (Date.now() - lastReport > (process.stderr.isTTY ? 2000 : 10_000) && total > 0) {
      lastReport = Date.now()
      spec.say(`background: ${progressBar(present / total)} ${mib(present)} of ${mib(total)}`)
    }
    await sleep(POLL_MS)
  }
  return undefined
}

async function readStatus(agent: AgentClient): Promise<DeploymentStatus | undefined> {
  return agent.call<DeploymentStatus>('status', { name: APP_NAME }).catch(() => undefined)
}

/** The container output so far, through the agent's API (no process spawned per poll). */
async function readLogs(agent: AgentClient): Promise<string> {
  let text = ''
  await agent
    .call('logs', { name: APP_NAME }, (message) => {
      const data = (message as { data?: string }).data
      if (data !== undefined) text += Buffer.from(data, 'base64').toString('utf8')
    })
    .catch(() => undefined)
  return text
}

function progressBar(fraction: number): string {
  const width = 30
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width)
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0)} %`
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`
}
