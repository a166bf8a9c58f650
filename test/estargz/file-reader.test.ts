import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { isEdgestarError } from '../../src/errors.js'
import { ESTARGZ_ERRORS, FileReader } from '../../src/estargz/index.js'

const scratch = mkdtempSync(join(tmpdir(), 'edgestar-file-reader-'))
const fifo = join(scratch, 'fifo')
after(() => {
  // A reader stuck in open(2) would keep the process alive; a writer end releases it.
  try {
    closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK))
  } catch {}
  rmSync(scratch, { recursive: true, force: true })
})

describe('FileReader.open refuses what is no blob file', () => {
  // A FIFO's open(2) waits for a writer: the guard ends the test instead of hanging the run.
  it('refuses a FIFO instead of waiting for a writer', { timeout: 10_000 }, async () => {
    execFileSync('mkfifo', [fifo])
    await assert.rejects(FileReader.open(fifo), (err) => {
      assert.ok(isEdgestarError(err, ESTARGZ_ERRORS.READ_FAILED), String(err))
      assert.match((err as Error).message, /not a regular file/)
      return true
    })
  })

  it('says why a path cannot be opened', async () => {
    await assert.rejects(FileReader.open(join(scratch, 'missing')), (err) => {
      assert.ok(isEdgestarError(err, ESTARGZ_ERRORS.READ_FAILED), String(err))
      assert.match((err as Error).message, /no such file/)
      return true
    })
  })
})
