import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { isEdgestarError } from '../../src/errors.js'
import { AuthManager, parseChallenge } from '../../src/registry/auth.js'
import { RegistryClient } from '../../src/registry/index.js'
import { makeTarLayer, pushTestImage } from '../helpers/images.js'
import { type RegistryServer, startRegistry, TEST_USER } from '../helpers/registry-server.js'

const execFileAsync = promisify(execFile)

function dockerConfig(host: string, password: string): string {
  const auth = Buffer.from(`${TEST_USER.username}:${password}`).toString('base64')
  return JSON.stringify({ auths: { [`http://${host}`]: { auth } } })
}

describe('basic auth (htpasswd registry)', () => {
  let registry: RegistryServer
  let dir: string

  before(async () => {
    registry = await startRegistry({ auth: { kind: 'htpasswd' } })
    dir = await mkdtemp(join(tmpdir(), 'edgestar-auth-'))
  })
  after(async () => {
    await registry?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('pushes and resolves with explicit credentials', async () => {
    const client = new RegistryClient({
      dockerConfigPath: null,
      credentials: { [registry.host]: TEST_USER },
    })
    try {
      await pushTestImage(client, `${registry.host}/basic:1`, [await makeTarLayer({ f: 'basic' })])
      const image = await client.resolve(`${registry.host}/basic:1`, { platform: 'amd64' })
      assert.equal(image.layers.length, 1)
    } finally {
      await client.close()
    }
  })

  it('refuses without credentials, with a hint and no secret in the error', async () => {
    const client = new RegistryClient({ dockerConfigPath: null })
    try {
      await assert.rejects(client.resolve(`${registry.host}/basic:1`), (err) => {
        assert.ok(isEdgestarError(err, 'EDGESTAR_REGISTRY_UNAUTHORIZED'))
        assert.ok(err.hint)
        return true
      })
    } finally {
      await client.close()
    }
  })

  it('names the config.json it really reads in the login hint (DOCKER_CONFIG honoured)', async () => {
    const saved = process.env.DOCKER_CONFIG
    process.env.DOCKER_CONFIG = join(dir, 'docker-cfg')
    const client = new RegistryClient()
    try {
      await assert.rejects(client.resolve(`${registry.host}/basic:1`), (err) => {
        assert.ok(isEdgestarError(err, 'EDGESTAR_REGISTRY_UNAUTHORIZED'))
        assert.match(err.hint ?? '', new RegExp(join(dir, 'docker-cfg', 'config.json')))
        assert.doesNotMatch(err.hint ?? '', /~\/\.docker/)
        return true
      })
    } finally {
      await client.close()
      if (saved === undefined) delete process.env.DOCKER_CONFIG
      else process.env.DOCKER_CONFIG = saved
    }

    const off = new RegistryClient({ dockerConfigPath: null })
    try {
      await assert.rejects(off.resolve(`${registry.host}/basic:1`), (err) => {
        assert.ok(isEdgestarError(err, 'EDGESTAR_REGISTRY_UNAUTHORIZED'))
        assert.doesNotMatch(err.hint ?? '', /docker login/)
        return true
      })
    } finally {
      await off.close()
    }
  })

  it('takes credentials from config.json and picks up a change on disk', async () => {
    const path = join(dir, 'config.json')
    await writeFile(path, dockerConfig(registry.host, 'wrong-password'))
    const client = new RegistryClient({ dockerConfigPath: path })
    try {
      await assert.rejects(client.resolve(`${registry.host}/basic:1`), (err) => {
        assert.ok(isEdgestarError(err, 'EDGESTAR_REGISTRY_UNAUTHORIZED'))
        assert.doesNotMatch(`${err.message} ${err.hint}`, /wrong-password/)
        return true
      })
      await writeFile(path, dockerConfig(registry.host, TEST_USER.password))
      const image = await client.resolve(`${registry.host}/basic:1`, { platform: 'amd64' })
      assert.equal(image.layers.length, 1)
    } finally {
      await client.close()
    }
  })
})

describe('bearer token auth (token registry)', () => {
  let registry: RegistryServer

  before(async () => {
    registry = await startRegistry({ auth: { kind: 'token' } })
    const pusher = new RegistryClient({
      dockerConfigPath: null,
      credentials: { [registry.host]: TEST_USER },
    })
    await pushTestImage(pusher, `${registry.host}/tok:1`, [await makeTarLayer({ f: 'token' })])
    await pusher.close()
  })
  after(async () => {
    await registry?.stop()
  })

  it('pulls anonymously with a token from the WWW-Authenticate realm', async () => {
    const client = new RegistryClient({ dockerConfigPath: null })
    try {
      const image = await client.resolve(`${registry.host}/tok:1`, { platform: 'amd64' })
      assert.equal(image.layers.length, 1)
      const last = registry.tokenServer?.requests.at(-1)
      assert.deepEqual(last, { scopes: ['repository:tok:pull'], authenticated: false })
    } finally {
      await client.close()
    }
  })

  it('caches the token across requests', async () => {
    const client = new RegistryClient({ dockerConfigPath: null })
    try {
      const before = registry.tokenServer?.requests.length ?? 0
      const image = await client.resolve(`${registry.host}/tok:1`, { platform: 'amd64' })
      const reader = client.blobReader(
        image.reference,
        image.layers[0]!.digest,
        image.layers[0]!.size,
      )
      for (let i = 0; i < 5; i++) await reader.readAt(i, 1)
      assert.equal((registry.tokenServer?.requests.length ?? 0) - before, 1)
    } finally {
      await client.close()
    }
  })

  it('shares one token request among concurrent first reads', async () => {
    const setup = new RegistryClient({ dockerConfigPath: null })
    const image = await setup.resolve(`${registry.host}/tok:1`, { platform: 'amd64' })
    await setup.close()
    const client = new RegistryClient({ dockerConfigPath: null })
    try {
      const before = registry.tokenServer?.requests.length ?? 0
      const reader = client.blobReader(
        image.reference,
        image.layers[0]!.digest,
        image.layers[0]!.size,
      )
      const reads = await Promise.all(Array.from({ length: 10 }, (_, i) => reader.readAt(i, 1)))
      assert.equal(reads.length, 10)
      assert.equal((registry.tokenServer?.requests.length ?? 0) - before, 1)
    } finally {
      await client.close()
    }
  })

  it('refuses an anonymous push', async () => {
    const client = new RegistryClient({ dockerConfigPath: null })
    try {
      await assert.rejects(
        client.pushBlob(`${registry.host}/tok:1`, Buffer.from('nope')),
        (err) =>
          isEdgestarError(err, 'EDGESTAR_REGISTRY_UNAUTHORIZED') ||
          isEdgestarError(err, 'EDGESTAR_REGISTRY_DENIED'),
      )
    } finally {
      await client.close()
    }
  })

  it('renews a token that expires in the middle of a session without failing reads', async () => {
    const client = new RegistryClient({ dockerConfigPath: null })
    try {
      // The next token claims 300 s but the registry stops honouring it after about 1 s.
      registry.tokenServer?.setJwtLifetime(1)
      const image = await client.resolve(`${registry.host}/tok:1`, { platform: 'amd64' })
      const reader = client.blobReader(
        image.reference,
        image.layers[0]!.digest,
        image.layers[0]!.size,
      )
      const first = await reader.readAt(0, 2)
      const before = registry.tokenServer?.requests.length ?? 0
      await sleep(2100)
      registry.tokenServer?.setJwtLifetime(300)
      const second = await reader.readAt(0, 2)
      assert.deepEqual(second, first)
      assert.equal((registry.tokenServer?.requests.length ?? 0) - before, 1)
    } finally {
      await client.close()
    }
  })
})

describe('AuthManager', () => {
  it('parses bearer and basic challenges', () => {
    assert.deepEqual(
      parseChallenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"',
      ),
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.example/token',
          service: 'reg',
          scope: 'repository:a/b:pull,push',
        },
      },
    )
    assert.deepEqual(parseChallenge('Basic realm="x"'), { scheme: 'basic', params: { realm: 'x' } })
  })

  it('renews a cached token shortly before it expires', async () => {
    let nowMs = 1_000_000
    let issued = 0
    const auth = new AuthManager({
      credentials: {},
      dockerConfig: undefined,
      insecureRegistries: [],
      now: () => nowMs,
      fetchToken: async () => ({ status: 200, body: { token: `t${++issued}`, expires_in: 60 } }),
    })
    await auth.onUnauthorized(
      'reg',
      ['repository:a:pull'],
      'Bearer realm="https://auth.example/token"',
      undefined,
    )
    assert.equal(await auth.header('reg', ['repository:a:pull']), 'Bearer t1')
    nowMs += 45_000
    assert.equal(await auth.header('reg', ['repository:a:pull']), 'Bearer t1')
    nowMs += 10_000
    assert.equal(await auth.header('reg', ['repository:a:pull']), 'Bearer t2')
  })
})

describe('credential redaction', () => {
  let basic: RegistryServer
  let token: RegistryServer
  before(async () => {
    basic = await startRegistry({ auth: { kind: 'htpasswd' } })
    token = await startRegistry({ auth: { kind: 'token' } })
  })
  after(async () => {
    await basic?.stop()
    await token?.stop()
  })

  it('never writes a password, a basic header or a token to logs or errors', async () => {
    // A child process, so the JSON-lines log (debug level) can be captured whole.
    const registryModule = new URL('../../src/registry/index.js', import.meta.url).href
    const imagesModule = new URL('../helpers/images.js', import.meta.url).href
    const script = [
      `const { RegistryClient } = await import('${registryModule}')`,
      `const { makeTarLayer, pushTestImage } = await import('${imagesModule}')`,
      'const creds = (host, password) => ({ [host]: { username: "edgestar", password } })',
      'for (const host of process.argv.slice(1)) {',
      '  const good = new RegistryClient({ dockerConfigPath: null,',
      '    credentials: creds(host, "edgestar-secret-pw") })',
      '  await pushTestImage(good, host + "/secret:1", [await makeTarLayer({ f: "s" })])',
      '  await good.resolve(host + "/secret:1", { platform: "amd64" })',
      '  await good.close()',
      '  const bad = new RegistryClient({ dockerConfigPath: null,',
      '    credentials: creds(host, "edgestar-wrong-pw") })',
      '  try { await bad.pushBlob(host + "/secret:1", Buffer.from("x")) } catch (err) {',
      '    console.log(JSON.stringify({ code: err.code, message: err.message, hint: err.hint,',
      '      stack: err.stack, cause: String(err.cause) }))',
      '  }',
      '  await bad.close()',
      '}',
    ].join('\n')
    const { stdout, stderr } = await execFileAsync(
      process.execPath,
      ['--input-type=module', '-e', script, basic.host, token.host],
      { env: { ...process.env, EDGESTAR_LOG_LEVEL: 'debug' } },
    )
    const all = stdout + stderr
    assert.equal(stdout.match(/EDGESTAR_REGISTRY_UNAUTHORIZED/g)?.length, 2)
    assert.match(stderr, /token obtained/)
    for (const secret of ['edgestar-secret-pw', 'edgestar-wrong-pw']) {
      assert.doesNotMatch(all, new RegExp(secret))
      assert.doesNotMatch(all, new RegExp(Buffer.from(`edgestar:${secret}`).toString('base64')))
    }
    assert.doesNotMatch(all, /Basic [A-Za-z0-9+/=]{8,}/)
    // Every JWT starts with the base64 of '{"': no token made it into the output.
    assert.doesNotMatch(all, /eyJ[A-Za-z0-9_-]{10,}/)
  })
})
