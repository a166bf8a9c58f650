/**
 * An agent whose start fails after it began serving (a bad MQTT setting is read once the
 * socket is up) shuts down whole and exits non-zero, instead of hanging with its socket
 * answering from a closed store.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'

const CLI = path.resolve(import.meta.dirname, '../../src/cli/main.js')
let work = ''

after(async () => {
  if (work !== '') await rm(work, { recursive: true, force: true })
})

/** Runs `edgestar agent ARGS` to its end; a hang is ended by the test's own timeout. */
function runAgent(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, 'agent', ...args], (err, _out, stderr) => {
      resolve({ code: err === null ? 0 : (child.exitCode ?? null), stderr })
    })
  })
}

describe('an agent start that fails late', { timeout: 120_000 }, () => {
  it('exits 1 with the cause when an MQTT file cannot be used, leaving no socket', async () => {
    work = await mkdtemp(path.join(tmpdir(), 'edgestar-start-failure-'))
    const socket = path.join(work, 'agent.sock')
    const common = ['--state-dir', path.join(work, 'state'), '--socket', socket]
    const mqtt = ['--mqtt-url', 'mqtt://127.0.0.1:9']

    const noPassword = await runAgent([
      ...common,
      ...mqtt,
      '--mqtt-password-file',
      path.join(work, 'missing'),
    ])
    assert.equal(noPassword.code, 1)
    assert.match(
      noPassword.stderr,
      /EDGESTAR_AGENT_CONFIG_FILE_UNREADABLE: cannot read --mqtt-password-file .*\(ENOENT\)/,
    )
    assert.equal(existsSync(socket), false, 'the socket is gone')

    const keygen = await new Promise<void>((resolve, reject) =>
      execFile(
        process.execPath,
        [CLI, 'fleet', 'keygen', '--out', path.join(work, 'fleet.key')],
        (err) => (err ? reject(err) : resolve()),
      ),
    )
    assert.equal(keygen, undefined)
    const privateKey = await runAgent([
      ...common,
      ...mqtt,
      '--mqtt-fleet-key-file',
      path.join(work, 'fleet.key'),
    ])
    assert.equal(privateKey.code, 1)
    assert.match(
      privateKey.stderr,
      /EDGESTAR_MQTT_KEY_INVALID: --mqtt-fleet-key-file .*fleet\.key holds a private key/,
    )
    assert.equal(existsSync(socket), false)
  })
})
