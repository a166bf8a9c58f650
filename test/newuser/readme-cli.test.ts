/**
 * What a new user who has only the README relies on before anything runs: every command
 * the README names has `--help` and takes `--json`, the client commands say clearly that no
 * agent is running, and `fleet keygen` writes a private key only its owner can read.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'

const run = promisify(execFile)
const CLI = path.resolve(import.meta.dirname, '../../src/cli/main.js')

/** Every leaf command a user reaches from the README (its "Other tools" line included). */
const COMMANDS = [
  'inspect',
  'verify',
  'extract',
  'convert',
  'optimize',
  'pull',
  'cat',
  'images',
  'cache status',
  'cache gc',
  'mount',
  'umount',
  'agent',
  'deploy',
  'ps',
  'status',
  'logs',
  'stop',
  'start',
  'rm',
  'bandwidth',
  'fleet deploy',
  'fleet stop',
  'fleet start',
  'fleet remove',
  'fleet prefetch',
  'fleet bandwidth',
  'fleet gc',
  'fleet status',
  'fleet watch',
  'fleet keygen',
]

/** Agent clients and the argument each needs, run against a socket nobody listens on. */
const CLIENTS: string[][] = [
  ['ps'],
  ['status'],
  ['status', 'app'],
  ['logs', 'app'],
  ['stop', 'app'],
  ['start', 'app'],
  ['rm', 'app'],
  ['bandwidth'],
]

interface Outcome {
  code: number
  stdout: string
  stderr: string
}

let dir = ''

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'edgestar-newuser-'))
})

after(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Runs the CLI and returns its exit code and output, never throwing on a non-zero exit. */
async function edgestar(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Outcome> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], {
      env: { ...process.env, EDGESTAR_LOG_LEVEL: 'warn', ...env },
    })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const failed = err as { code?: number; stdout?: string; stderr?: string }
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' }
  }
}

describe('README commands', () => {
  it('each has --help that exits 0 and lists --json', async () => {
    const outcomes = await Promise.all(
      COMMANDS.map(async (command) => ({
        command,
        outcome: await edgestar([...command.split(' '), '--help']),
      })),
    )
    for (const { command, outcome } of outcomes) {
      assert.equal(outcome.code, 0, `${command} --help exited ${outcome.code}`)
      assert.match(outcome.stdout, /--json/, `${command} --help does not list --json`)
    }
  })

  it('each answers a usage error under --json with {ok: false, error: {code, message, hint}}', async () => {
    const outcomes = await Promise.all(
      COMMANDS.map(async (command) => ({
        command,
        outcome: await edgestar([...command.split(' '), '--no-such-option', '--json']),
      })),
    )
    for (const { command, outcome } of outcomes) {
      assert.equal(outcome.code, 1, `${command} exited ${outcome.code}`)
      const body = JSON.parse(outcome.stdout) as { ok: boolean; error: Record<string, string> }
      assert.equal(body.ok, false, command)
      assert.equal(body.error.code, 'EDGESTAR_CLI_USAGE', command)
      assert.ok(body.error.message, command)
      assert.ok(body.error.hint, command)
    }
  })

  it('read-only commands print ok: true on success', async () => {
    const state = ['--state-dir', path.join(dir, 'no-state'), '--json']
    for (const args of [['images'], ['cache', 'status'], ['cache', 'gc']]) {
      const outcome = await edgestar([...args, ...state])
      assert.equal(outcome.code, 0, `${args.join(' ')}: ${outcome.stderr}`)
      assert.equal((JSON.parse(outcome.stdout) as { ok: boolean }).ok, true, args.join(' '))
    }
  })

  it('--version prints the version, as JSON with --json', async () => {
    const text = await edgestar(['--version'])
    assert.equal(text.code, 0)
    assert.match(text.stdout.trim(), /^\d+\.\d+\.\d+$/)
    const json = await edgestar(['--version', '--json'])
    assert.deepEqual(JSON.parse(json.stdout), { ok: true, version: text.stdout.trim() })
  })

  it('agent clients name the missing agent, with a hint, in text and in JSON', async () => {
    const env = { EDGESTAR_SOCKET: path.join(dir, 'nobody.sock') }
    for (const args of CLIENTS) {
      const text = await edgestar(args, env)
      assert.equal(text.code, 1, `${args.join(' ')} exited ${text.code}`)
      assert.match(text.stderr, /EDGESTAR_AGENT_NOT_RUNNING/)
      assert.match(text.stderr, /hint: /)

      const json = await edgestar([...args, '--json'], env)
      assert.equal(json.code, 1)
      const result = JSON.parse(json.stdout) as { ok: boolean; error: { code: string } }
      assert.equal(result.ok, false)
      assert.equal(result.error.code, 'EDGESTAR_AGENT_NOT_RUNNING')
    }
  })

  it('fleet keygen writes a 0600 private key and refuses to overwrite it without --force', async () => {
    const key = path.join(dir, 'fleet.key')
    const made = await edgestar(['fleet', 'keygen', '--out', key, '--json'])
    assert.equal(made.code, 0)
    assert.deepEqual(JSON.parse(made.stdout), {
      ok: true,
      privateKey: key,
      publicKey: `${key}.pub`,
    })
    assert.equal((await stat(key)).mode & 0o777, 0o600)
    assert.match(await readFile(`${key}.pub`, 'utf8'), /BEGIN PUBLIC KEY/)

    const again = await edgestar(['fleet', 'keygen', '--out', key])
    assert.equal(again.code, 1)
    assert.match(again.stderr, /--force/)
  })

  it('fleet commands without a broker say how to give one', async () => {
    const outcome = await edgestar(['fleet', 'status', '--device-id', 'gw-1'], {
      EDGESTAR_MQTT_URL: '',
      EDGESTAR_FLEET_BROKER: '',
    })
    assert.equal(outcome.code, 1)
    assert.match(outcome.stderr, /--mqtt-url/)
  })
})
