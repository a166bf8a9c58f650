import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { childPath, NodeTable, parentPath } from '../../src/fs/kernel/node-table.js'
import { ROOT_NODE_ID } from '../../src/fs/kernel/protocol.js'

describe('NodeTable', () => {
  it('gives a path one id while the kernel holds it, and drops it when all lookups are forgotten', () => {
    const nodes = new NodeTable()
    const id = nodes.remember('etc/hosts')
    assert.equal(nodes.remember('etc/hosts'), id, 'a second lookup reuses the id')
    assert.equal(nodes.pathOf(id), 'etc/hosts')

    nodes.forget(id, 1)
    assert.equal(nodes.pathOf(id), 'etc/hosts', 'one lookup is still held')
    nodes.forget(id, 1)
    assert.equal(nodes.pathOf(id), undefined)
    assert.equal(nodes.size, 0)

    assert.notEqual(nodes.remember('etc/hosts'), id, 'a forgotten id is never reused')
  })

  it('keeps the root as id 1 whatever is forgotten', () => {
    const nodes = new NodeTable()
    assert.equal(nodes.remember(''), ROOT_NODE_ID)
    nodes.forget(ROOT_NODE_ID, 5)
    assert.equal(nodes.pathOf(ROOT_NODE_ID), '')
    assert.equal(nodes.size, 0)
  })

  it('ignores forgets of unknown ids and batch counts larger than held', () => {
    const nodes = new NodeTable()
    nodes.forget(999, 1)
    const id = nodes.remember('a')
    nodes.forget(id, 3)
    assert.equal(nodes.pathOf(id), undefined)
  })

  it('keeps the xattrs of a node while the kernel holds it, and none for the root', () => {
    const nodes = new NodeTable()
    const value = Buffer.from('v')
    const withXattrs = nodes.remember('a', { 'user.a': value })
    const without = nodes.remember('b', {})
    assert.deepEqual(nodes.xattrsOf(withXattrs), { 'user.a': value })
    assert.deepEqual(nodes.xattrsOf(without), {})
    assert.equal(nodes.xattrsOf(ROOT_NODE_ID), undefined, 'the root is asked of the view')

    nodes.forget(withXattrs, 1)
    assert.equal(nodes.xattrsOf(withXattrs), undefined)
  })

  it('joins and splits paths the way the view names them', () => {
    assert.equal(childPath('', 'etc'), 'etc')
    assert.equal(childPath('etc', 'hosts'), 'etc/hosts')
    assert.equal(parentPath('etc/hosts'), 'etc')
    assert.equal(parentPath('etc'), '')
  })
})
