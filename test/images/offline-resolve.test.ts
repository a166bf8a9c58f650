import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { openServices, settingsFrom } from '../../src/cli/options.js'
import { isEdgestarError } from '../../src/errors.js'
import { RegistryClient } from '../../src/registry/index.js'
import { pushTestImage } from '../helpers/images.js'
import { startRegistry } from '../helpers/registry-server.js'
import { fixtureLayer } from './fixture-image.js'

const work = mkdtempSync(join(tmpdir(), 'edgestar-offline-resolve-'))
after(() => rmSync(work, { recursive: true, force: true }))

describe('resolving an image with the registry down', () => {
  it('uses the image recorded on the device, by tag or digest, and says when there is none', async () => {
    const registry = await startRegistry()
    const services = openServices(
      settingsFrom({ stateDir: join(work, 'state'), insecureRegistry: [registry.host] }),
    )
    try {
      const ref = `${registry.host}/offline/app:1`
      const pusher = new RegistryClient({ dockerConfigPath: null })
      await pushTestImage(pusher, ref, [fixtureLayer('prioritized.estargz')])
      await pushTestImage(pusher, `${registry.host}/offline/other:1`, [
        fixtureLayer('mixed.estargz'),
      ])
      await pusher.close()
      const online = await services.images.resolveOrRecorded(ref)
      await registry.stop()

      const byTag = await services.images.resolveOrRecorded(ref)
      assert.equal(byTag.id, online.id)
      const requestsBefore = services.registry.stats().requests
      const byDigest = await services.images.resolveOrRecorded(
        `${registry.host}/offline/app@${online.manifestDigest}`,
      )
      assert.equal(byDigest.id, online.id)
      assert.equal(
        services.registry.stats().requests,
        requestsBefore,
        'a recorded digest needs no registry request',
      )

      await assert.rejects(
        services.images.resolveOrRecorded(`${registry.host}/offline/other:1`),
        (err) => {
          assert.ok(isEdgestarError(err, 'EDGESTAR_REGISTRY_UNREACHABLE'))
          assert.match(err.hint ?? '', /never been resolved on this device/)
          return true
        },
      )
    } finally {
      await services.close()
      await registry.stop().catch(() => {})
    }
  })

  it('still reports a missing tag while the registry answers', async () => {
    const registry = await startRegistry()
    const services = openServices(
      settingsFrom({ stateDir: join(work, 'state-2'), insecureRegistry: [registry.host] }),
    )
    try {
      await assert.rejects(
        services.images.resolveOrRecorded(`${registry.host}/offline/none:1`),
        (err) => isEdgestarError(err, 'EDGESTAR_REGISTRY_NOT_FOUND'),
      )
    } finally {
      await services.close()
      await registry.stop()
    }
  })
})
