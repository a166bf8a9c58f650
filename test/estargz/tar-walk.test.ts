import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isEdgestarError } from '../../src/errors.js'
import { ESTARGZ_ERRORS, type LayerTarEntry } from '../../src/estargz/index.js'
import { walkTar } from '../../src/estargz/tar-walk.js'
import { paxEntry, tarEntry } from './blob-builder.js'

async function walk(...entries: Buffer[]): Promise<LayerTarEntry[]> {
  const seen: LayerTarEntry[] = []
  async function* input(): AsyncGenerator<Buffer> {
    yield Buffer.concat([...entries, Buffer.alloc(1024)])
  }
  await walkTar(input(), async (entry) => void seen.push(entry))
  return seen
}

describe('walkTar: PAX numbers', () => {
  it('accepts a negative and a fractional mtime, as PAX allows (files from before 1970)', async () => {
    const [before, fraction] = await walk(
      paxEntry({ mtime: '-86400.5' }),
      tarEntry('old', Buffer.from('x')),
      paxEntry({ mtime: '1672531200.25' }),
      tarEntry('new', Buffer.from('y')),
    )
    assert.equal(before?.mtimeSec, -86401)
    assert.equal(fraction?.mtimeSec, 1672531200)
  })

  for (const key of ['uid', 'gid']) {
    it(`refuses a ${key} beyond 32 bits`, async () => {
      await assert.rejects(
        walk(paxEntry({ [key]: '4294967296' }), tarEntry('f', Buffer.from('x'))),
        (err) => isEdgestarError(err, ESTARGZ_ERRORS.STREAM_CORRUPT),
      )
    })
  }

  it('refuses a negative uid', async () => {
    await assert.rejects(walk(paxEntry({ uid: '-1' }), tarEntry('f', Buffer.from('x'))), (err) =>
      isEdgestarError(err, ESTARGZ_ERRORS.STREAM_CORRUPT),
    )
  })
})
