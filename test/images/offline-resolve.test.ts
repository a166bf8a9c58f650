import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { openServices, settingsFrom } from '../../src/cli/options.js'
import { isEdgestarError } from '../../src/errors.js'
import { RegistryClient } from '../../src/registry/index.js'
import { FaultProxy } from '../helpers/fault-proxy.js'
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

  it('gives up on a silent registry after one attempt when a recorded image can stand in', async () => {
    const registry = await startRegistry()
    const proxy = await startSwitchableProxy(Number(registry.host.split(':')[1]))
    const settings = settingsFrom({
      stateDir: join(work, 'state-silent'),
      insecureRegistry: [proxy.host],
    })
    const ref = `${proxy.host}/offline/app:1`
    try {
      const pusher = new RegistryClient({ dockerConfigPath: null })
      await pushTestImage(pusher, `${registry.host}/offline/app:1`, [
        fixtureLayer('prioritized.estargz'),
      ])
      await pusher.close()
      const recorder = openServices(settings)
      const online = await recorder.images.resolveOrRecorded(ref).finally(() => recorder.close())

      // A fresh client (no kept-alive connection): its one request hangs at the proxy.
      proxy.goSilent()
      const services = openServices(settings)
      const silent = await services.images.resolveOrRecorded(ref).finally(() => services.close())
      assert.equal(silent.id, online.id)
      assert.equal(proxy.silentConnections(), 1, 'one attempt, not the retry policy')
    } finally {
      await proxy.close()
      await registry.stop()
    }
  })

  it('answers a tag still naming the recorded image with no blob request; follows a moved one', async () => {
    const registry = await startRegistry()
    const proxy = await FaultProxy.start(registry.url)
    const services = openServices(
      settingsFrom({ stateDir: join(work, 'state-same'), insecureRegistry: [proxy.host] }),
    )
    const ref = `${proxy.host}/offline/same:1`
    try {
      const pusher = new RegistryClient({ dockerConfigPath: null })
      await pushTestImage(pusher, `${registry.host}/offline/same:1`, [
        fixtureLayer('prioritized.estargz'),
      ])
      const online = await services.images.resolveOrRecorded(ref)

      // Blobs hang where manifests answer: only a blob request could hold this up.
      proxy.setFault({ kind: 'hang' }, { match: 'blob-get' })
      const gets = proxy.blobGets().length
      const same = await services.images.resolveOrRecorded(ref)
      assert.equal(same.id, online.id)
      assert.equal(proxy.blobGets().length, gets, 'no config or TOC fetched')
      proxy.setFault(undefined)

      await pushTestImage(pusher, `${registry.host}/offline/same:1`, [
        fixtureLayer('mixed.estargz'),
      ])
      await pusher.close()
      const moved = await services.images.resolveOrRecorded(ref)
      assert.notEqual(moved.manifestDigest, online.manifestDigest)
    } finally {
      proxy.setFault(undefined)
      await services.close()
      await proxy.stop()
      await registry.stop()
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

/**
 * A TCP proxy to a local port that can be switched to accept connections and never
 * answer (a hung registry), dropping the connections it was forwarding.
 */
async function startSwitchableProxy(targetPort: number): Promise<{
  host: string
  goSilent(): void
  silentConnections(): number
  close(): Promise<void>
}> {
  let isSilent = false
  let silentCount = 0
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    if (isSilent) {
      silentCount++
      return
    }
    const upstream = connect(targetPort, '127.0.0.1')
    upstream.on('error', () => socket.destroy())
    socket.pipe(upstream).pipe(socket)
    socket.on('close', () => upstream.destroy())
  })
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  const { port } = server.address() as { port: number }
  return {
    host: `127.0.0.1:${port}`,
    goSilent: () => {
      isSilent = true
      for (const socket of sockets) socket.destroy()
    },
    silentConnections: () => silentCount,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise((done) => server.close(done))
    },
  }
}
