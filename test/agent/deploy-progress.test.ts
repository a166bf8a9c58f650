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
const TOTAL = 80 << 20
// The fake image completes after this many status polls (500 ms apart): past one 5 s line.
const POLLS_TO_COMPLETE = 12

let dir: string
let server: Server
let socketPath: string

// A stand-in agent on a Unix socket: deploy answers `running` with nothing local, each
// status call has fetched a little more until the image is complete.
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'edgestar-deploy-progress-'))
  socketPath = join(dir, 'agent.sock')
  let polls = 0
  server = createServer((socket) => {
    socket.setEncoding('utf8')
    socket.once('data', (text: string) => {
      const { method } = JSON.parse(text.split('\n')[0] as string) as { method: string }
      if (method === 'status') polls++
      const fetched = method === 'deploy' ? 0 : Math.min(TOTAL, (TOTAL / POLLS_TO_COMPLETE) * polls)
      const result = {
        name: 'app',
        state: 'running',
        fetchedBytes: fetched,
        totalBytes: TOTAL,
        isComplete: fetched >= TOTAL,
      }
      socket.end(`${JSON.stringify({ type: 'result', ok: true, result })}\n`)
    })
  })
  await new Promise<void>((resolve) => server.listen(socketPath, resolve))
})

after(async () => {
  await new Promise((resolve) => server?.close(resolve))
  if (dir) await rm(dir, { recursive: true, force: true })
})

test('deploy without a terminal prints progress lines while it waits for the image', async () => {
  const { stdout, stderr } = await execFileAsync(EDGESTAR, [
    'deploy',
    '127.0.0.1:5000/app:1',
    '--name',
    'app',
    '--socket',
    socketPath,
  ])
  const lines = stderr.split('\n').filter((line) => line.startsWith('app: image '))
  assert.match(stderr, /waiting for the whole image to be local \(--detach does not wait\)/)
  assert.equal(lines[0], 'app: image 0 B of 80.0 MiB (0%) local')
  assert.ok(lines.length >= 2, `a line after 5 s as well:\n${stderr}`)
  assert.match(lines.at(-1) as string, /^app: image [\d.]+ MiB of 80\.0 MiB \(\d+%\) local$/)
  assert.match(stdout, /app running: 80\.0 MiB of 80\.0 MiB \(100%\)/)
})

test('deploy --help says it waits for the full download unless --detach', async () => {
  const { stdout } = await execFileAsync(EDGESTAR, ['deploy', '--help'])
  const text = stdout.replace(/\s+/g, ' ')
  assert.match(text, /whole image is downloaded/)
  assert.match(text, /instead of waiting for the full image download/)
})

test('deploy --help shows that --name is required and what --update keeps', async () => {
  const { stdout } = await execFileAsync(EDGESTAR, ['deploy', '--help'])
  const text = stdout.replace(/\s+/g, ' ')
  assert.match(text, /Usage: edgestar deploy <ref> --name <name>/)
  assert.match(text, /deployment name, required/)
  assert.match(text, /The new spec replaces the old one whole/)
})
