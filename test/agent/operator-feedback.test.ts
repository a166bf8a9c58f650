/**
 * What the operator sees through the CLI of a real agent (registry, FUSE, runc): a
 * deploy --detach whose command is missing fails at once and leaves the name free, a
 * stop that needed SIGKILL says so, a rolled-back update names its cause, and a
 * one-shot that exited keeps its state across an agent restart.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import type { DeploymentInfo, RemoveResult } from '../../src/agent/index.js'
import { RegistryClient } from '../../src/registry/index.js'
import { mountsUnder } from '../../src/runtime/index.js'
import { type RegistryServer, startRegistry } from '../helpers/registry-server.js'
import { appLayer, baseLayer, pushAppImage } from './agent-image.js'
import {
  type AgentProcess,
  CLI,
  eventually,
  SKIP_WITHOUT_ROOTFS,
  startAgentProcess,
  stopAgentProcess,
  TEST_CACHE_DIR,
  TEST_ROOTFS,
} from './agent-process.js'

const exec = promisify(execFile)
// Sets no SIGTERM handler: as pid 1 of its namespace it ignores SIGTERM.
const SLEEPER = ['python3', '-c', 'import time\nprint("up", flush=True)\ntime.sleep(3600)']

let work = ''
let registry: RegistryServer | undefined
let agent: AgentProcess | undefined
let imageRef = ''

interface CliResult {
  code: number
  stdout: string
  stderr: string
}

async function cli(...args: string[]): Promise<CliResult> {
  const socket = path.join(work, 'agent.sock')
  return exec(process.execPath, [
    CLI,
    args[0] as string,
    '--socket',
    socket,
    ...args.slice(1),
  ]).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: CliResult) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  )
}

// The agent takes its stop timeout as a duration, the form the other duration options take.
async function startAgent(): Promise<void> {
  agent = await startAgentProcess(path.join(work, 'agent.sock'), path.join(work, 'agent.log'), [
    '--state-dir',
    path.join(work, 'state'),
    '--stop-timeout-ms',
    '1s',
  ])
}

async function info(name: string): Promise<DeploymentInfo> {
  return (agent as AgentProcess).client.call<DeploymentInfo>('status', { name })
}

async function logsOf(name: string): Promise<string> {
  let text = ''
  await (agent as AgentProcess).client.call('logs', { name }, (message) => {
    if (message.type === 'log') text += Buffer.from(message.data, 'base64').toString()
  })
  return text
}

async function deployUp(name: string, command: string[]): Promise<void> {
  const deployed = await cli('deploy', imageRef, '--name', name, '--detach', '--', ...command)
  assert.equal(deployed.code, 0, deployed.stderr)
  await eventually(async () => ((await logsOf(name)).includes('up') ? true : undefined))
}

describe('what the CLI tells the operator (registry, FUSE, runc)', {
  skip: SKIP_WITHOUT_ROOTFS,
}, () => {
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'edgestar-feedback-'))
    const base = await baseLayer(TEST_ROOTFS as string, TEST_CACHE_DIR)
    const app = await appLayer('v1', TEST_CACHE_DIR)
    registry = await startRegistry()
    imageRef = `${registry.host}/edge/feedback:1`
    await pushAppImage(new RegistryClient(), imageRef, [base, app])
    await startAgent()
  })

  after(async () => {
    if (agent !== undefined) await stopAgentProcess(agent)
    const left = await mountsUnder(work)
    for (const mount of left.sort((a, b) => b.length - a.length))
      await exec('umount', ['-l', mount]).catch(() => undefined)
    await registry?.stop()
    await rm(work, { recursive: true, force: true })
  })

  it('deploy --detach of a missing command fails with its error; a retry at once works', async () => {
    const failed = await cli(
      'deploy',
      imageRef,
      '--name',
      'x2',
      '--detach',
      '--json',
      '--',
      '/bin/nosuchprog',
    )
    assert.equal(failed.code, 1)
    const error = (JSON.parse(failed.stdout) as { error: { code: string } }).error
    assert.equal(error.code, 'EDGESTAR_RUNTIME_COMMAND_NOT_FOUND')

    // The error comes after the attempt was cleaned up, so the name is free at once.
    const ps = JSON.parse((await cli('ps', '--json')).stdout) as { deployments: DeploymentInfo[] }
    assert.deepEqual(
      ps.deployments.map((d) => d.name),
      [],
    )
    const retried = await cli(
      'deploy',
      imageRef,
      '--name',
      'x2',
      '--detach',
      '--json',
      '--',
      'sh',
      '-c',
      'echo fine',
    )
    assert.equal(retried.code, 0, retried.stdout + retried.stderr)
    assert.equal((JSON.parse(retried.stdout) as DeploymentInfo).name, 'x2')
    assert.equal((await cli('rm', 'x2')).code, 0)
  })

  it('stop and rm say when the program ignored SIGTERM and had to be killed', async () => {
    await deployUp('stubborn', SLEEPER)
    const stopped = await cli('stop', 'stubborn')
    assert.equal(stopped.code, 0, stopped.stderr)
    assert.match(stopped.stdout, /did not exit on SIGTERM within 1 s, so it was killed/)
    assert.match(stopped.stdout, /--init/)
    const state = await info('stubborn')
    assert.equal(state.lastExit?.killedAfterMs, 1000)
    assert.equal(state.lastExit?.exitCode, 128 + 9)
    const status = await cli('status', 'stubborn')
    assert.match(status.stdout, /did not exit on SIGTERM within 1 s/)

    await cli('start', 'stubborn')
    await eventually(async () =>
      (await logsOf('stubborn')).split('up').length > 2 ? true : undefined,
    )
    const removed = await cli('rm', 'stubborn', '--json')
    const result = JSON.parse(removed.stdout) as RemoveResult
    assert.equal(result.killedAfterMs, 1000)
    assert.match(result.note ?? '', /did not exit on SIGTERM/)

    // With --init the same program stops on SIGTERM, and nothing is said.
    const deployed = await cli(
      'deploy',
      imageRef,
      '--name',
      'inited',
      '--init',
      '--detach',
      '--',
      ...SLEEPER,
    )
    assert.equal(deployed.code, 0, deployed.stderr)
    await eventually(async () => ((await logsOf('inited')).includes('up') ? true : undefined))
    const calm = await cli('stop', 'inited')
    assert.equal(calm.stdout.trim(), 'inited stopped on request')
    assert.equal((await cli('rm', 'inited')).stdout.trim(), 'inited removed')
  })

  it('a rolled-back update names the code and message of what failed', async () => {
    await deployUp('web', [
      'sh',
      '-c',
      'echo up; trap "exit 0" TERM; while :; do sleep 1 & wait $!; done',
    ])
    const update = await cli(
      'deploy',
      imageRef,
      '--name',
      'web',
      '--update',
      '--json',
      '--',
      '/bin/nosuchprog',
    )
    assert.equal(update.code, 1)
    const error = (JSON.parse(update.stdout) as { error: { code: string; message: string } }).error
    assert.equal(error.code, 'EDGESTAR_AGENT_UPDATE_ROLLED_BACK')
    assert.match(error.message, /EDGESTAR_RUNTIME_COMMAND_NOT_FOUND: .*nosuchprog/)
    await eventually(async () => ((await info('web')).state === 'running' ? true : undefined))
    assert.equal((await cli('rm', 'web')).code, 0)
  })

  it('restart delays read in seconds', async () => {
    const crash = ['sh', '-c', 'echo up; exit 2']
    const deployed = await cli(
      'deploy',
      imageRef,
      '--name',
      'loop',
      '--restart',
      'on-failure',
      '--detach',
      '--',
      ...crash,
    )
    assert.equal(deployed.code, 0, deployed.stderr)
    const reason = await eventually(async () => {
      const current = await info('loop')
      return current.reason?.includes('restarting in') ? current.reason : undefined
    }, 20)
    assert.match(reason, /exited with code 2; restarting in \d+(\.\d)? s$/)
    assert.equal((await cli('rm', 'loop')).code, 0)
  })

  it('a one-shot that exited 0 still shows exited after an agent restart', async () => {
    const done = await cli(
      'deploy',
      imageRef,
      '--name',
      'once',
      '--detach',
      '--',
      'sh',
      '-c',
      'echo up',
    )
    assert.equal(done.code, 0, done.stderr)
    await eventually(async () => ((await info('once')).state === 'exited' ? true : undefined))

    await stopAgentProcess(agent as AgentProcess)
    await startAgent()
    const after = await info('once')
    assert.equal(after.state, 'exited')
    assert.equal(after.reason, 'exited with code 0')
    assert.equal(after.lastExit?.exitCode, 0)
  })
})
