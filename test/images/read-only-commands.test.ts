import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { runCli } from './cli.js'

const work = mkdtempSync(join(tmpdir(), 'edgestar-readonly-'))
after(() => rmSync(work, { recursive: true, force: true }))

describe('read-only commands', () => {
  it('images and cache status never create a state directory', async () => {
    const state = join(work, 'nonexistent')
    const images = await runCli(['images', '--state-dir', state])
    assert.equal(images.code, 0, images.stderr)
    assert.match(images.stdout.toString(), /nothing stored yet/)
    const status = await runCli(['cache', 'status', '--state-dir', state, '--json'])
    assert.equal(status.code, 0, status.stderr)
    const body = JSON.parse(status.stdout.toString()) as { presentChunks: number; stateDir: string }
    assert.equal(body.presentChunks, 0)
    const listed = await runCli(['images', '--state-dir', state, '--json'])
    assert.deepEqual(JSON.parse(listed.stdout.toString()).images, [])
    assert.equal(existsSync(state), false)
  })

  it('images offers only the options it uses', async () => {
    const help = await runCli(['images', '--help'])
    const text = help.stdout.toString()
    assert.match(text, /--state-dir/)
    for (const unused of ['--insecure-registry', '--platform', '--allow-unverified'])
      assert.doesNotMatch(text, new RegExp(unused))
    const status = await runCli(['cache', 'status', '--help'])
    assert.doesNotMatch(status.stdout.toString(), /--platform|--insecure-registry/)
  })
})
