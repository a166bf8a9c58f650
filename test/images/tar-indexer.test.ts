import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { pack } from 'tar-stream'
import { isEdgestarError } from '../../src/errors.js'
import { TarIndexer } from '../../src/images/tar-indexer.js'

async function tarOf(
  entries: { header: Parameters<ReturnType<typeof pack>['entry']>[0]; body?: Buffer }[],
): Promise<Buffer> {
  const p = pack()
  for (const { header, body } of entries) p.entry(header, body ?? Buffer.alloc(0))
  p.finalize()
  const parts: Buffer[] = []
  for await (const chunk of p) parts.push(chunk as Buffer)
  return Buffer.concat(parts)
}

// Fed in odd-sized pieces, as a decompressor hands them over.
function index(tar: Buffer, pieceBytes = 97): TarIndexer {
  const indexer = new TarIndexer()
  for (let at = 0; at < tar.length; at += pieceBytes)
    indexer.push(tar.subarray(at, at + pieceBytes))
  return indexer
}

describe('TarIndexer (plain layers)', () => {
  it('applies PAX path, times, owners and binary xattrs; records where content starts', async () => {
    const longName = `deep/${'d'.repeat(150)}/file.txt`
    const binary = Buffer.from([0x00, 0xff, 0x80, 0x41])
    const tar = await tarOf([
      { header: { name: 'deep/', type: 'directory', mode: 0o755 } },
      {
        header: {
          name: longName,
          size: 5,
          mode: 0o644,
          uid: 1000,
          gid: 1000,
          pax: {
            mtime: '1000000000000000',
            'SCHILY.xattr.user.bin': binary.toString('latin1'),
          },
        },
        body: Buffer.from('hello'),
      },
      { header: { name: 'link', type: 'symlink', linkname: longName } },
    ])
    const indexer = index(tar)
    const [dir, file, link] = indexer.entries
    assert.equal(dir?.type, 'dir')
    assert.equal(file?.name, longName)
    assert.equal(file?.size, 5)
    assert.equal(file?.uid, 1000)
    assert.equal(file?.modtime, '9999-12-31T23:59:59.000Z')
    assert.equal(link?.linkName, longName)
    const extent = indexer.extents[0]!
    assert.equal(extent.chunkSize, 5)
    assert.equal(tar.subarray(extent.innerOffset, extent.innerOffset + 5).toString(), 'hello')
    const xattr = (file as { xattrs?: Record<string, string> }).xattrs?.['user.bin']
    assert.deepEqual(Buffer.from(xattr ?? '', 'base64'), Buffer.from(binary.toString('latin1')))
  })

  it('refuses a name that climbs out of the root and a malformed header field', async () => {
    const climbing = await tarOf([{ header: { name: 'x', size: 0, pax: { path: '../../etc/x' } } }])
    assert.throws(
      () => index(climbing),
      (err) => isEdgestarError(err, 'EDGESTAR_IMAGES_BAD_NAME'),
    )

    const bad = await tarOf([{ header: { name: 'f', size: 0 } }])
    bad.write('9999999', 100, 'latin1')
    assert.throws(
      () => index(bad),
      (err) => isEdgestarError(err, 'EDGESTAR_IMAGES_BAD_TAR'),
    )
  })
})
