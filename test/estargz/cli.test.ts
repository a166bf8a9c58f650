import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { getFixture } from '../helpers/fixtures.js'

const MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js')
const scratch = mkdtempSync(join(tmpdir(), 'edgestar-cli-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

interface Run {
  code: number
  stdout: string
  stderr: string
}

function cli(...args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [MAIN, ...args],
      { env: { ...process.env, EDGESTAR_LOG_LEVEL: 'silent' } },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0
        done({ code: typeof code === 'number' ? code : 1, stdout, stderr })
      },
    )
  })
}

describe('edgestar inspect, verify, extract', () => {
  const mixed = getFixture('mixed', 'estargz')
  const zstd = getFixture('mixed', 'zstd:chunked')

  it('inspect --json prints format, TOC digest, counts, landmark and the TOC entries', async () => {
    const run = await cli('inspect', mixed.path, '--json')
    assert.equal(run.code, 0, run.stderr)
    const out = JSON.parse(run.stdout)
    assert.equal(out.format, 'estargz')
    assert.equal(out.tocDigest, mixed.index.tocDigest)
    assert.equal(out.landmark, 'no-prefetch')
    assert.equal(out.entries.length, mixed.sidecar.tocEntries)
    assert.ok(out.entries.some((e: { name: string }) => e.name === 'etc/config'))
  })

  it('inspect prints a human summary', async () => {
    const run = await cli('inspect', zstd.path)
    assert.equal(run.code, 0, run.stderr)
    assert.match(run.stdout, /format:\s+zstd-chunked/)
    assert.match(run.stdout, /landmark:\s+no-prefetch/)
  })

  it('verify exits 0 and prints {ok, tocDigest, diffID, entries, chunks, errors}', async () => {
    const run = await cli(
      'verify',
      zstd.path,
      '--toc-digest',
      zstd.index.tocDigest!,
      '--diff-id',
      zstd.index.diffID,
      '--json',
    )
    assert.equal(run.code, 0, run.stdout + run.stderr)
    const out = JSON.parse(run.stdout)
    assert.deepEqual(Object.keys(out).sort(), [
      'chunks',
      'diffID',
      'entries',
      'errors',
      'ok',
      'tocDigest',
    ])
    assert.equal(out.ok, true)
    assert.equal(out.diffID, zstd.index.diffID)
    assert.ok(out.chunks > 0)
  })

  it('verify exits non-zero with the error code when a check fails', async () => {
    const run = await cli('verify', mixed.path, '--diff-id', `sha256:${'2'.repeat(64)}`, '--json')
    assert.equal(run.code, 1)
    const out = JSON.parse(run.stdout)
    assert.equal(out.ok, false)
    assert.equal(out.errors[0].code, 'EDGESTAR_ESTARGZ_DIFFID_MISMATCH')
    assert.equal(out.error.code, 'EDGESTAR_ESTARGZ_DIFFID_MISMATCH')
    assert.ok(out.error.hint)

    const truncated = join(scratch, 'truncated.tar.gz')
    writeFileSync(truncated, readFileSync(mixed.path).subarray(0, mixed.index.size - 7))
    const cut = await cli('verify', truncated)
    assert.equal(cut.code, 1)
    assert.match(cut.stdout, /EDGESTAR_ESTARGZ_FOOTER_TRUNCATED/)
  })

  it('verify lists the first 20 problems of a badly damaged blob, --json all of them', async () => {
    const large = getFixture('large', 'estargz')
    const damaged = Buffer.from(readFileSync(large.path))
    for (let at = 1000; at < large.index.size - 20_000; at += 3000) damaged[at]! ^= 0xff
    const path = join(scratch, 'damaged.tar.gz')
    writeFileSync(path, damaged)
    const json = JSON.parse((await cli('verify', path, '--json')).stdout)
    assert.ok(json.errors.length > 20, `${json.errors.length} errors`)
    const human = await cli('verify', path)
    assert.equal(human.code, 1)
    assert.equal(human.stdout.match(/^error /gm)?.length, 20)
    assert.match(human.stdout, new RegExp(`and ${json.errors.length - 20} more problems`))
  })

  it('prints code, message and hint for a missing blob and exits non-zero', async () => {
    const run = await cli('inspect', join(scratch, 'nope'))
    assert.equal(run.code, 1)
    assert.match(run.stderr, /error EDGESTAR_ESTARGZ_READ_FAILED: cannot open blob/)
    assert.match(run.stderr, /hint: /)
  })

  it('extract --json writes the layer and reports it', async () => {
    const dir = join(scratch, 'tree')
    const run = await cli('extract', mixed.path, dir, '--json')
    assert.equal(run.code, 0, run.stderr)
    const out = JSON.parse(run.stdout)
    assert.equal(out.diffID, mixed.index.diffID)
    assert.equal(readFileSync(join(dir, 'etc/config'), 'utf8').length, 18)
  })
})
