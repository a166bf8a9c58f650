import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)
const EDGESTAR = join(process.cwd(), 'bin/edgestar')

let dir: string
let server: Server
let socketPath: string
const calls: { method: string; params: Record<string, unknown> }[] = []

// A stand-in agent that records each call and echoes the offline wait it was given.
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'edgestar-bandwidth-cli-'))
  socketPath = join(dir, 'agent.sock')
  server = createServer((socket) => {
    socket.setEncoding('utf8')
    socket.once('data', (text: string) => {
      const call = JSON.parse(text.split('\n')[0] as string) as (typeof calls)[number]
      calls.push(call)
      const result =
        call.method === 'bandwidth'
          ? { capBytesPerSec: null }
          : { offlineWaitMs: (call.params.waitMs as number | undefined) ?? 30_000 }
      socket.end(`${JSON.stringify({ type: 'result', ok: true, result })}\n`)
    })
  })
  await new Promise<void>((resolve) => server.listen(socketPath, resolve))
})

after(async () => {
  await new Promise((resolve) => server?.close(resolve))
  if (dir) await rm(dir, { recursive: true, force: true })
})

async function bandwidth(args: string[]): Promise<{ offlineWaitMs: number }> {
  const { stdout } = await execFileAsync(EDGESTAR, [
    'bandwidth',
    ...args,
    '--socket',
    socketPath,
    '--json',
  ])
  return JSON.parse(stdout) as { offlineWaitMs: number }
}

test('bandwidth --offline-wait takes a duration, a plain number being milliseconds', async () => {
  assert.equal((await bandwidth(['--offline-wait', '10s'])).offlineWaitMs, 10_000)
  assert.equal((await bandwidth(['--offline-wait', '2m'])).offlineWaitMs, 120_000)
  assert.equal((await bandwidth(['--offline-wait', '1500'])).offlineWaitMs, 1500)
})

test('bandwidth refuses a bad --offline-wait before it changes anything', async () => {
  const before = calls.length
  await assert.rejects(bandwidth(['1MiB', '--offline-wait', 'soon']), (err: { stdout: string }) => {
    const body = JSON.parse(err.stdout) as { error: { code: string; message: string } }
    assert.equal(body.error.code, 'EDGESTAR_CONFIG_INVALID')
    assert.match(body.error.message, /--offline-wait/)
    return true
  })
  assert.equal(calls.length, before, 'the agent was not called')
})
