import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startAgentProcess, stopAgentProcess } from './agent-process.js'

let work: string

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'edgestar-saved-settings-'))
  await writeFile(path.join(work, 'config.json'), JSON.stringify({ bandwidth: '2MiB' }))
})

after(async () => {
  await rm(work, { recursive: true, force: true })
})

/** Starts an agent on the shared state dir with `args`, returns its cap, and stops it. */
async function capAfterStart(args: string[], env: NodeJS.ProcessEnv = {}): Promise<unknown> {
  const saved = { ...process.env }
  Object.assign(process.env, env)
  const agent = await startAgentProcess(
    path.join(work, 'agent.sock'),
    path.join(work, 'agent.log'),
    ['--state-dir', path.join(work, 'state'), '--config', path.join(work, 'config.json'), ...args],
  ).finally(() => {
    process.env = saved
  })
  try {
    return ((await agent.client.call('bandwidth')) as { capBytesPerSec: unknown }).capBytesPerSec
  } finally {
    await stopAgentProcess(agent)
  }
}

describe('a bandwidth cap saved through the API', () => {
  it('wins over the config file, and loses to a flag or environment variable', async () => {
    const first = await startAgentProcess(
      path.join(work, 'agent.sock'),
      path.join(work, 'agent.log'),
      ['--state-dir', path.join(work, 'state'), '--config', path.join(work, 'config.json')],
    )
    try {
      await first.client.call('bandwidth', { capBytesPerSec: 100_000 })
    } finally {
      await stopAgentProcess(first)
    }

    assert.equal(await capAfterStart([]), 100_000, 'the saved cap beats the file')
    assert.equal(await capAfterStart(['--bandwidth', '1MiB']), 1024 * 1024)
    assert.equal(await capAfterStart([], { EDGESTAR_BANDWIDTH: '512KiB' }), 512 * 1024)
    assert.equal(await capAfterStart([]), 100_000, 'a flag does not replace the saved cap')
  })
})
