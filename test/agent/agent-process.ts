import { type ChildProcess, spawn } from 'node:child_process'
import { openSync } from 'node:fs'
import path from 'node:path'
import { AgentClient } from '../../src/agent/index.js'

/** An `edgestar agent` child process and a client for its socket. */
export interface AgentProcess {
  child: ChildProcess
  client: AgentClient
  socket: string
}

/** The compiled CLI the agent tests run. */
export const CLI = path.resolve(import.meta.dirname, '../../src/cli/main.js')
/** The Debian rootfs scripts/test.sh builds once per run; container tests need it. */
export const TEST_ROOTFS = process.env.EDGESTAR_TEST_ROOTFS
/** Where shared fixtures (converted layers) are cached between test files. */
export const TEST_CACHE_DIR = process.env.EDGESTAR_CACHE_DIR ?? path.resolve('.cache')
/** `describe(..., { skip })` for tests that run containers from TEST_ROOTFS. */
export const SKIP_WITHOUT_ROOTFS =
  TEST_ROOTFS === undefined ? 'EDGESTAR_TEST_ROOTFS is not set (run scripts/test.sh)' : false

/**
 * Starts `edgestar agent` (the real CLI, compiled) with `args`, its stderr appended to
 * `logFile`, and resolves once its API answers `ping`.
 */
export async function startAgentProcess(
  socket: string,
  logFile: string,
  args: string[],
): Promise<AgentProcess> {
  const log = openSync(logFile, 'a')
  const child = spawn(process.execPath, [CLI, 'agent', '--socket', socket, ...args], {
    stdio: ['ignore', 'ignore', log],
    env: { ...process.env, EDGESTAR_LOG_LEVEL: 'info' },
  })
  const client = new AgentClient(socket)
  for (let attempt = 0; attempt < 600; attempt++) {
    if (child.exitCode !== null)
      throw new Error(`agent exited with ${child.exitCode}; see ${logFile}`)
    const isUp = await client.call('ping').then(
      () => true,
      () => false,
    )
    if (isUp) return { child, client, socket }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  child.kill('SIGKILL')
  throw new Error(`agent did not answer on ${socket}; see ${logFile}`)
}

/** Sends `signal` and waits for the process to exit. */
export async function stopAgentProcess(
  agent: AgentProcess,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<void> {
  const child = agent.child
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill(signal)
  await exited
}

/**
 * Polls `probe` until it returns a value other than undefined (no time limit: the test
 * timeout bounds it).
 */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  intervalMs = 100,
): Promise<T> {
  for (;;) {
    const value = await probe().catch(() => undefined)
    if (value !== undefined) return value
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
