/**
 * Container lifecycle through a real agent (registry, FUSE, runc): `logs -f` ends when a
 * container is down for good and follows it across restarts, `--init` lets a pid 1
 * without a SIGTERM handler stop on SIGTERM, and a shutdown stops containers together.
 */
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import type { DeploymentInfo } from '../../src/agent/index.js'
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
// Long enough that a container stopped by SIGKILL instead of its own exit shows as a failure.
const STOP_TIMEOUT_MS = 60_000
// A bound on tests that would hang if a follower never ended (not a speed assertion).
const HANG_GUARD = { timeout: 300_000 }

let work = ''
let shared = ''
let registry: RegistryServer | undefined
let agent: AgentProcess | undefined
let imageRef = ''

/** A `logs -f` CLI process and everything it printed so far. */
interface Follower {
  output(): string
  exited: Promise<number | null>
}

function followLogs(name: string): Follower {
  const child = spawn(
    process.execPath,
    [CLI, 'logs', name, '-f', '--socket', (agent as AgentProcess).socket],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  let text = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk: string) => {
    text += chunk
  })
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve))
  return { output: () => text, exited }
}

async function seen(follower: Follower, text: string): Promise<void> {
  await eventually(async () => (follower.output().includes(text) ? true : undefined), 50)
}

async function logsOf(name: string): Promise<string> {
  let text = ''
  await (agent as AgentProcess).client.call('logs', { name }, (message) => {
    if (message.type === 'log') text += Buffer.from(message.data, 'base64').toString()
  })
  return text
}

async function deploy(request: Record<string, unknown>): Promise<DeploymentInfo> {
  const binds = [{ source: shared, target: '/data' }]
  return (agent as AgentProcess).client.call<DeploymentInfo>('deploy', {
    image: imageRef,
    binds,
    ...request,
  })
}

// Waits for /data/NAME, so the test decides when the container goes on.
function waitFor(file: string): string {
  return `while [ ! -e /data/${file} ]; do sleep 0.1; done`
}

describe('container lifecycle through the agent (registry, FUSE, runc)', {
  skip: SKIP_WITHOUT_ROOTFS,
}, () => {
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'edgestar-lifecycle-'))
    shared = path.join(work, 'shared')
    await mkdir(shared)
    const base = await baseLayer(TEST_ROOTFS as string, TEST_CACHE_DIR)
    const app = await appLayer('v1', TEST_CACHE_DIR)
    registry = await startRegistry()
    imageRef = `${registry.host}/edge/lifecycle:1`
    await pushAppImage(new RegistryClient(), imageRef, [base, app])
    agent = await startAgentProcess(path.join(work, 'agent.sock'), path.join(work, 'agent.log'), [
      '--state-dir',
      path.join(work, 'state'),
      '--stop-timeout-ms',
      String(STOP_TIMEOUT_MS),
    ])
  })

  after(async () => {
    if (agent !== undefined) await stopAgentProcess(agent)
    const left = await mountsUnder(work)
    for (const mount of left.sort((a, b) => b.length - a.length))
      await exec('umount', ['-l', mount]).catch(() => undefined)
    await registry?.stop()
    await rm(work, { recursive: true, force: true })
  })

  it(
    'logs -f prints the last output and exits 0 once the container has exited for good',
    HANG_GUARD,
    async () => {
      const script = `echo first; ${waitFor('once-go')}; echo last; exit 3`
      await deploy({ name: 'once', command: ['sh', '-c', script] })
      const follower = followLogs('once')
      await seen(follower, 'first')

      await writeFile(path.join(shared, 'once-go'), '')
      assert.equal(await follower.exited, 0)
      assert.match(follower.output(), /first\nlast\n/)
      const info = await (agent as AgentProcess).client.call<DeploymentInfo>('status', {
        name: 'once',
      })
      assert.equal(info.state, 'failed')
    },
  )

  it('logs -f follows across restarts the restart policy makes', HANG_GUARD, async () => {
    const script = [
      'n=$(($(cat /data/again-n 2>/dev/null || echo 0)+1)); echo $n > /data/again-n',
      'echo "run $n"',
      waitFor('again-go$n'),
      '[ $n -ge 2 ]',
    ].join('; ')
    await deploy({ name: 'again', restart: 'on-failure', command: ['sh', '-c', script] })
    const follower = followLogs('again')
    await seen(follower, 'run 1')

    // Run 1 fails, so the policy restarts it: the follower must still be there for run 2.
    await writeFile(path.join(shared, 'again-go1'), '')
    await seen(follower, 'run 2')
    await writeFile(path.join(shared, 'again-go2'), '')
    assert.equal(await follower.exited, 0)
    assert.match(follower.output(), /run 1\nrun 2\n/)
  })

  it('logs -f ends when the deployment is stopped', HANG_GUARD, async () => {
    const script = 'trap "echo bye; exit 0" TERM; echo up; while :; do sleep 1 & wait $!; done'
    await deploy({ name: 'stopped', restart: 'always', command: ['sh', '-c', script] })
    const follower = followLogs('stopped')
    await seen(follower, 'up')

    await (agent as AgentProcess).client.call('stop', { name: 'stopped' })
    assert.equal(await follower.exited, 0)
    assert.match(follower.output(), /up\nbye\n/)
  })

  it(
    'deploy --init stops a pid 1 that sets no SIGTERM handler by SIGTERM',
    HANG_GUARD,
    async () => {
      const sleeper = 'import time\nprint("up", flush=True)\ntime.sleep(3600)'
      const { stdout } = await exec(process.execPath, [
        CLI,
        'deploy',
        imageRef,
        '--name',
        'inited',
        '--init',
        '--detach',
        '--json',
        '--socket',
        (agent as AgentProcess).socket,
        '--',
        'python3',
        '-c',
        sleeper,
      ])
      assert.equal((JSON.parse(stdout) as DeploymentInfo).name, 'inited')
      const follower = followLogs('inited')
      await seen(follower, 'up')

      // Without the init the kernel ignores the SIGTERM, and only the SIGKILL after the
      // stop timeout would end it (exit 137).
      const stopped = await (agent as AgentProcess).client.call<DeploymentInfo>('stop', {
        name: 'inited',
      })
      assert.equal(stopped.lastExit?.exitCode, 128 + 15)
      assert.equal(await follower.exited, 0)
    },
  )

  it('a shutdown stops every container at once, not one after another', HANG_GUARD, async () => {
    // Each container, on SIGTERM, exits only after every other one got its SIGTERM too:
    // stopped one at a time, the first would wait for the others until its SIGKILL.
    const names = ['sd1', 'sd2', 'sd3']
    const onTerm = [
      'touch /data/$N.term',
      `while [ $(ls /data | grep -c "^sd.\\.term$") -lt ${names.length} ]; do sleep 0.1; done`,
      'touch /data/$N.done',
      'exit 0',
    ].join('; ')
    const script = `trap '${onTerm}' TERM; echo up; while :; do sleep 1 & wait $!; done`
    for (const name of names)
      await deploy({ name, env: { N: name }, command: ['sh', '-c', script] })
    for (const name of names)
      await eventually(async () => ((await logsOf(name)).includes('up') ? true : undefined))

    await stopAgentProcess(agent as AgentProcess)
    const files = (await readdir(shared)).filter((file) => file.startsWith('sd')).sort()
    assert.deepEqual(files, [
      'sd1.done',
      'sd1.term',
      'sd2.done',
      'sd2.term',
      'sd3.done',
      'sd3.term',
    ])
    assert.deepEqual(await mountsUnder(path.join(work, 'state')), [])
  })

  it('a second signal during shutdown does not cut it short', HANG_GUARD, async () => {
    agent = await startAgentProcess(path.join(work, 'agent.sock'), path.join(work, 'agent.log'), [
      '--state-dir',
      path.join(work, 'state'),
      '--stop-timeout-ms',
      String(STOP_TIMEOUT_MS),
    ])
    // The container takes its time to stop; signals sent to the agent meanwhile must wait.
    const onTerm = `touch /data/slow.term; ${waitFor('slow-go')}; touch /data/slow.done; exit 0`
    const script = `trap '${onTerm}' TERM; echo up; while :; do sleep 1 & wait $!; done`
    await deploy({ name: 'slow', command: ['sh', '-c', script] })
    await eventually(async () => ((await logsOf('slow')).includes('up') ? true : undefined))

    const child = (agent as AgentProcess).child
    const exited = new Promise<[number | null, string | null]>((resolve) =>
      child.once('exit', (code, signal) => resolve([code, signal])),
    )
    child.kill('SIGTERM')
    await eventually(async () => ((await readdir(shared)).includes('slow.term') ? true : undefined))
    child.kill('SIGTERM')
    child.kill('SIGINT')
    await writeFile(path.join(shared, 'slow-go'), '')

    assert.deepEqual(await exited, [0, null])
    assert.ok((await readdir(shared)).includes('slow.done'), 'the container finished its stop')
    assert.deepEqual(await mountsUnder(path.join(work, 'state')), [])
  })
})
