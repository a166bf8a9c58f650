import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { describe, it } from 'node:test'
import type { Agent } from '../../src/agent/agent.js'
import { AgentDeviceController } from '../../src/agent/device-controller.js'

describe('device controller', () => {
  it('asks for a new retained status when a deployment is removed', () => {
    const deployments = new EventEmitter()
    const agent = { deployments, backend: { onLinkChange: () => () => {} } } as unknown as Agent
    const controller = new AgentDeviceController(agent)
    let republished = 0
    controller.events.on('status-changed', () => republished++)

    deployments.emit('removed', 'app')
    assert.equal(republished, 1)

    controller.detach()
    deployments.emit('removed', 'app')
    assert.equal(republished, 1, 'nothing after detach')
  })
})
