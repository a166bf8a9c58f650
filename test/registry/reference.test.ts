import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isEdgestarError } from '../../src/errors.js'
import {
  classifyLayer,
  hostPlatform,
  isPlainHttp,
  parsePlatform,
  parseReference,
  registryBaseUrl,
} from '../../src/registry/index.js'

const DIGEST = `sha256:${'a'.repeat(64)}`

describe('parseReference', () => {
  const cases: [string, string, string, string | undefined, string | undefined][] = [
    ['alpine', 'docker.io', 'library/alpine', 'latest', undefined],
    ['alpine:3.19', 'docker.io', 'library/alpine', '3.19', undefined],
    ['user/app', 'docker.io', 'user/app', 'latest', undefined],
    ['docker.io/alpine', 'docker.io', 'library/alpine', 'latest', undefined],
    ['index.docker.io/library/alpine:1', 'docker.io', 'library/alpine', '1', undefined],
    ['localhost/app', 'localhost', 'app', 'latest', undefined],
    ['localhost:5000/app:v1', 'localhost:5000', 'app', 'v1', undefined],
    ['127.0.0.1:5000/a/b/c:t', '127.0.0.1:5000', 'a/b/c', 't', undefined],
    [`ghcr.io/org/app@${DIGEST}`, 'ghcr.io', 'org/app', undefined, DIGEST],
    [`ghcr.io/org/app:1.0@${DIGEST}`, 'ghcr.io', 'org/app', '1.0', DIGEST],
    ['[::1]:5000/app', '[::1]:5000', 'app', 'latest', undefined],
    ['Registry.Example.com/app', 'Registry.Example.com', 'app', 'latest', undefined],
    ['my-reg.io/a.b/c__d/e-f', 'my-reg.io', 'a.b/c__d/e-f', 'latest', undefined],
  ]
  for (const [input, registry, repository, tag, digest] of cases) {
    it(`parses ${input}`, () => {
      const ref = parseReference(input)
      assert.equal(ref.registry, registry)
      assert.equal(ref.repository, repository)
      assert.equal(ref.tag, tag)
      assert.equal(ref.digest, digest)
    })
  }

  const bad = [
    '',
    'app/UPPER',
    'app:',
    'app@sha256:123',
    'host:99999/app',
    'a//b',
    'app:bad tag',
    '-app',
  ]
  for (const input of bad) {
    it(`refuses "${input}"`, () => {
      assert.throws(
        () => parseReference(input),
        (err) => isEdgestarError(err, 'EDGESTAR_REGISTRY_BAD_REFERENCE'),
      )
    })
  }
})

describe('plain HTTP policy', () => {
  it('uses HTTP for loopback and listed insecure registries only', () => {
    assert.equal(registryBaseUrl('localhost:5000'), 'http://localhost:5000')
    assert.equal(registryBaseUrl('127.0.0.1:5000'), 'http://127.0.0.1:5000')
    assert.equal(registryBaseUrl('[::1]:5000'), 'http://[::1]:5000')
    assert.equal(registryBaseUrl('reg.lan:5000'), 'https://reg.lan:5000')
    assert.equal(registryBaseUrl('reg.lan:5000', ['reg.lan:5000']), 'http://reg.lan:5000')
    assert.equal(isPlainHttp('reg.lan:5000', ['reg.lan']), true)
    assert.equal(isPlainHttp('reg.lan:5000', ['other.lan']), false)
    assert.equal(registryBaseUrl('docker.io'), 'https://registry-1.docker.io')
  })
})

describe('platforms', () => {
  it('parses and normalises platform strings', () => {
    assert.deepEqual(parsePlatform('linux/arm64'), { os: 'linux', architecture: 'arm64' })
    assert.deepEqual(parsePlatform('arm/v7'), { os: 'linux', architecture: 'arm', variant: 'v7' })
    assert.deepEqual(parsePlatform('linux/arm'), {
      os: 'linux',
      architecture: 'arm',
      variant: 'v7',
    })
    assert.deepEqual(parsePlatform('arm64/v8'), { os: 'linux', architecture: 'arm64' })
    assert.deepEqual(parsePlatform('x86_64'), { os: 'linux', architecture: 'amd64' })
    assert.throws(
      () => parsePlatform('linux/a b'),
      (err) => isEdgestarError(err, 'EDGESTAR_REGISTRY_BAD_PLATFORM'),
    )
  })

  it("maps the device's own architecture", () => {
    const expected: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm' }
    assert.equal(hostPlatform().architecture, expected[process.arch] ?? process.arch)
  })
})

describe('classifyLayer', () => {
  it('lazy with a TOC digest, whole without, zstd:chunked by its checksum', () => {
    const gzip = 'application/vnd.oci.image.layer.v1.tar+gzip'
    const zstd = 'application/vnd.oci.image.layer.v1.tar+zstd'
    const toc = {
      'containerd.io/snapshot/stargz/toc.digest': DIGEST,
      'io.containers.estargz.uncompressed-size': '42',
    }
    const lazy = classifyLayer({ mediaType: gzip, annotations: toc })
    assert.equal(lazy.mode, 'lazy')
    assert.equal(lazy.annotations.uncompressedSizeBytes, 42)
    assert.equal(classifyLayer({ mediaType: gzip, annotations: {} }).mode, 'whole')
    assert.equal(
      classifyLayer({
        mediaType: gzip,
        annotations: { 'containerd.io/snapshot/stargz/toc.digest': 'nope' },
      }).mode,
      'whole',
    )
    const chunked = classifyLayer({
      mediaType: zstd,
      annotations: {
        'io.containers.zstd-chunked.manifest-checksum': DIGEST,
        'io.containers.zstd-chunked.manifest-position': '1747:1127:13959:1',
      },
    })
    assert.equal(chunked.mode, 'lazy')
    assert.deepEqual(chunked.annotations.zstdChunkedPosition, {
      offset: 1747,
      compressedLength: 1127,
      uncompressedLength: 13959,
      type: 1,
    })
  })
})
