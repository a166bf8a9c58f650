import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import { abortMount, findFuseMounts } from '../../src/fs/index.js'
import { runChild } from '../helpers/mount.js'

// A process that mounts a one-file image, then leaves without unmounting: by
// process.exit, or by an uncaught exception. Run with the compiled modules' URLs.
const EXITING_SERVER = `
const [fsUrl, builderUrl, dir, how] = process.argv.slice(1)
const { MergedView, mountImage } = await import(fsUrl)
const { buildLayers } = await import(builderUrl)
await mountImage(new MergedView(buildLayers({ f: 'x' })), dir)
console.log('mounted')
if (how === 'exit') process.exit(3)
setImmediate(() => {
  throw new Error('crash with the mount up')
})
`

const compiled = (path: string): string => pathToFileURL(join(import.meta.dirname, path)).href

describe('a process that leaves with its mount still up', () => {
  let dir: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'edgestar-mnt-exit-'))
  })

  after(async () => {
    await abortMount(dir).catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })

  for (const [how, code] of [
    ['exit', 3],
    ['crash', 1],
  ] as const) {
    it(`exits on ${how} and leaves the mount point empty`, async () => {
      const args = [compiled('../../src/fs/index.js'), compiled('layer-builder.js'), dir, how]
      // A hang here is the failure: the child's pool threads stay blocked on /dev/fuse.
      const child = await runChild(
        process.execPath,
        ['--input-type=module', '-e', EXITING_SERVER, ...args],
        { timeoutMs: 60_000 },
      )

      assert.equal(child.stdout.trim(), 'mounted', child.stderr)
      assert.equal(child.code, code, child.stderr)
      assert.deepEqual(await findFuseMounts(dir), [])
      assert.deepEqual(await readdir(dir), [])
    })
  }
})
