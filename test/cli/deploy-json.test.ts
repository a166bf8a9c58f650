/**
 * `edgestar deploy` against a stand-in agent on a Unix socket: the request it sends for
 * each option (the same options `fleet deploy` sends over MQTT), and its --json body on
 * success and when the container fails while the image downloads.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)
const EDGESTAR = join(process.cwd(), 'bin/edgestar')

let dir: string
let server: Server
let socketPath: string
const requests: Record<string, unknown>[] = []

// Deploy answers `running` with half the image local; a status poll answers `failed` for
// a deployment named `crash`, else a complete image.
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'edgestar-deploy-json-'))
  socketPath = join(dir, 'agent.sock')
  server = createServer((socket) => {
    socket.setEncoding('utf8')
    socket.once('data', (text: string) => {
      const request = JSON.parse(text.split('\n')[0] as string) as {
        method: string
        params: Record<string, unknown>
      }
      if (request.method === 'deploy') requests.push(request.params)
      const name = request.params.name as string
      const isDeploy = request.method === 'deploy'
      const state = !isDeploy && name === 'crash' ? 'failed' : 'running'
      const result = {
        name,
        state,
        reason: state === 'failed' ? 'exited with code 2' : null,
        fetchedBytes: isDeploy ? 512 : 1024,
        totalBytes: 1024,
        isComplete: !isDeploy,
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

async function deploy(args: string[]): Promise<{ code: number; body: Record<string, unknown> }> {
  const argv = ['deploy', '127.0.0.1:5000/app:1', '--socket', socketPath, '--json', ...args]
  try {
    const { stdout } = await execFileAsync(EDGESTAR, argv)
    return { code: 0, body: JSON.parse(stdout) as Record<string, unknown> }
  } catch (err) {
    const failed = err as { code: number; stdout: string }
    return { code: failed.code, body: JSON.parse(failed.stdout) as Record<string, unknown> }
  }
}

describe('edgestar deploy', () => {
  it('sends each option to the agent and prints ok: true with the deployment', async () => {
    const { code, body } = await deploy([
      ...['--name', 'app', '--env', 'A=1', '--restart', 'always', '--network', 'none'],
      ...['--bind', '/srv:/srv:ro', '--workdir', '/app', '--user', 'app', '--init', '--update'],
      ...['--', 'python3', '-V'],
    ])
    assert.equal(code, 0)
    assert.equal(body.ok, true)
    assert.equal(body.name, 'app')
    assert.deepEqual(requests.at(-1), {
      name: 'app',
      image: '127.0.0.1:5000/app:1',
      command: ['python3', '-V'],
      env: { A: '1' },
      restart: 'always',
      network: 'none',
      binds: [{ source: '/srv', target: '/srv', readOnly: true }],
      workingDir: '/app',
      user: 'app',
      init: true,
      update: true,
    })
  })

  it('reports a container that failed while the image downloaded as ok: false', async () => {
    const { code, body } = await deploy(['--name', 'crash'])
    assert.equal(code, 1)
    assert.equal(body.ok, false)
    const error = body.error as { code: string; message: string; hint: string }
    assert.equal(error.code, 'EDGESTAR_AGENT_DEPLOYMENT_FAILED')
    assert.match(error.message, /exited with code 2/)
    assert.match(error.hint, /edgestar logs crash/)
  })
})
