import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import {
  devicePoolReaders,
  libuvPoolThreads,
  releasePoolReaders,
} from '../../src/fs/kernel/thread-pool.js'

describe('libuvPoolThreads', () => {
  const cases: Array<[string | undefined, number]> = [
    [undefined, 4],
    ['32', 32],
    ['', 1],
    ['0', 1],
    ['many', 1],
    ['8 threads', 8],
    ['2000', 1024],
    ['-1', 1024],
  ]
  for (const [value, threads] of cases) {
    it(`reads UV_THREADPOOL_SIZE=${JSON.stringify(value)} as libuv does: ${threads}`, () => {
      const env = value === undefined ? {} : { UV_THREADPOOL_SIZE: value }
      assert.equal(libuvPoolThreads(env), threads)
    })
  }
})

describe('devicePoolReaders', () => {
  const saved = process.env.UV_THREADPOOL_SIZE
  const taken: number[] = []
  const take = (): number => {
    const readers = devicePoolReaders()
    taken.push(readers)
    return readers
  }

  afterEach(() => {
    for (const readers of taken.splice(0)) releasePoolReaders(readers)
    if (saved === undefined) delete process.env.UV_THREADPOOL_SIZE
    else process.env.UV_THREADPOOL_SIZE = saved
  })

  it('gives two readers, then one, then refuses the mount that would take the last thread', () => {
    process.env.UV_THREADPOOL_SIZE = '4'
    assert.equal(take(), 2)
    assert.equal(take(), 1)
    assert.throws(take, { code: 'EDGESTAR_FS_THREAD_POOL_FULL' })
  })

  it('gives the threads of an ended mount to the next one', () => {
    process.env.UV_THREADPOOL_SIZE = '4'
    assert.equal(take(), 2)
    releasePoolReaders(taken.pop()!)
    assert.equal(take(), 2)
  })

  it('refuses every mount when libuv has a single thread (an empty UV_THREADPOOL_SIZE)', () => {
    process.env.UV_THREADPOOL_SIZE = ''
    assert.throws(take, { code: 'EDGESTAR_FS_THREAD_POOL_FULL' })
  })
})
