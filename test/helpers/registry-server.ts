import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { createSign, randomUUID } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

/** The one user the htpasswd and token variants accept. */
export const TEST_USER = { username: 'edgestar', password: 'edgestar-secret-pw' }
// bcrypt (cost 4) of TEST_USER.password; docker-registry 2.8 accepts only bcrypt entries.
const TEST_USER_BCRYPT = '$2b$04$.v5a.uhM97v3VuWEUC8Jvuf5dZjisPHDMiAziJa3/itA4kQ17IELC'

/** How the test registry authenticates. */
export type RegistryAuth =
  | { kind: 'none' }
  | { kind: 'htpasswd' }
  | {
      kind: 'token'
      /** Anonymous clients get pull tokens (like Docker Hub); default true. */
      allowAnonymousPull?: boolean
      /** `expires_in` the token service announces, in seconds; default 300. */
      expiresInSec?: number
    }

/** A running registry: base URL, `host:port` for references, and a stop function. */
export interface RegistryServer {
  url: string
  host: string
  storageDir: string
  /** The token service, when auth is `token`. */
  tokenServer?: TokenServer
  stop(): Promise<void>
}

/**
 * Starts Debian's `docker-registry serve CONFIG` (distribution 2.8) on a free loopback
 * port (of 127.0.0.1, or `listenHost`) with its own storage directory; resolves once
 * `/v2/` answers. The token variant also starts a small token service (ES256 JWTs signed
 * by a throw-away certificate the registry trusts). Always `stop()` it (it removes the
 * directory).
 */
export async function startRegistry(
  options: { auth?: RegistryAuth; listenHost?: string } = {},
): Promise<RegistryServer> {
  const dir = await mkdtemp(join(tmpdir(), 'edgestar-registry-'))
  try {
    return await startIn(dir, options)
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
}

async function startIn(
  dir: string,
  options: { auth?: RegistryAuth; listenHost?: string },
): Promise<RegistryServer> {
  const auth = options.auth ?? { kind: 'none' }
  // Another loopback address (127.0.0.2) makes a registry that is not plain HTTP by default.
  const listenHost = options.listenHost ?? '127.0.0.1'
  const port = await freePort()
  let tokenServer: TokenServer | undefined
  let authYaml = ''

  if (auth.kind === 'htpasswd') {
    await writeFile(join(dir, 'htpasswd'), `${TEST_USER.username}:${TEST_USER_BCRYPT}\n`)
    authYaml = `auth:\n  htpasswd:\n    realm: edgestar-test\n    path: ${join(dir, 'htpasswd')}\n`
  } else if (auth.kind === 'token') {
    tokenServer = await startTokenServer(dir, auth)
    authYaml = [
      'auth:',
      '  token:',
      `    realm: ${tokenServer.url}/token`,
      `    service: ${TOKEN_SERVICE}`,
      `    issuer: ${TOKEN_ISSUER}`,
      `    rootcertbundle: ${tokenServer.certPath}`,
      '',
    ].join('\n')
  }

  const config = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${listenHost}:${port}`,
    `  secret: ${randomUUID()}`,
    authYaml,
  ].join('\n')
  await writeFile(join(dir, 'config.yml'), config)

  const child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000)
  })
  const url = `http://${listenHost}:${port}`
  const stop = async (): Promise<void> => {
    await stopChild(child)
    await tokenServer?.close()
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await waitReady(url, child, () => stderr)
  } catch (err) {
    await stop()
    throw err
  }
  const server: RegistryServer = {
    url,
    host: `${listenHost}:${port}`,
    storageDir: join(dir, 'data'),
    stop,
  }
  if (tokenServer) server.tokenServer = tokenServer
  return server
}

async function waitReady(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr()}`)
    try {
      const res = await fetch(`${url}/v2/`)
      await res.arrayBuffer()
      if (res.status === 200 || res.status === 401) return
    } catch {
      // not listening yet
    }
    await sleep(50)
  }
  throw new Error(`docker-registry did not come up at ${url}: ${stderr()}`)
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
  await exited
  clearTimeout(timer)
}

/** A free TCP port on 127.0.0.1 (closed again before use; fine on a test machine). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

const TOKEN_SERVICE = 'edgestar-test-registry'
const TOKEN_ISSUER = 'edgestar-test-issuer'

/** The loopback token service of the `token` auth variant. */
export interface TokenServer {
  url: string
  certPath: string
  /** Token requests received, with whether they carried valid credentials. */
  requests: { scopes: string[]; authenticated: boolean }[]
  /**
   * Makes the next tokens expire (for the registry) `validForSec` seconds after issue,
   * whatever `expires_in` says; distribution allows 60 s of clock leeway on top.
   */
  setJwtLifetime(validForSec: number): void
  close(): Promise<void>
}

async function startTokenServer(
  dir: string,
  auth: Extract<RegistryAuth, { kind: 'token' }>,
): Promise<TokenServer> {
  const keyPath = join(dir, 'token.key')
  const certPath = join(dir, 'token.crt')
  await execFileAsync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    keyPath,
    '-out',
    certPath,
    '-days',
    '2',
    '-subj',
    '/CN=edgestar-test-token',
  ])
  const key = await readFile(keyPath, 'utf8')
  const certDer = Buffer.from(
    (await readFile(certPath, 'utf8')).replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''),
    'base64',
  )
  const requests: TokenServer['requests'] = []
  let jwtLifetimeSec = auth.expiresInSec ?? 300

  const server: Server = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const scopes = url.searchParams.getAll('scope')
    const authenticated = hasTestCredentials(req)
    requests.push({ scopes, authenticated })
    if (req.headers.authorization && !authenticated) {
      res.writeHead(401).end()
      return
    }
    const mayPush = authenticated
    const mayPull = authenticated || auth.allowAnonymousPull !== false
    const access = scopes
      .map(parseScope)
      .filter((s) => s !== undefined)
      .map((s) => ({
        ...s,
        actions: s.actions.filter((a) => (a === 'pull' ? mayPull : a === 'push' ? mayPush : false)),
      }))
    const token = signJwt(key, certDer, {
      iss: TOKEN_ISSUER,
      sub: authenticated ? TEST_USER.username : '',
      aud: TOKEN_SERVICE,
      exp: Math.floor(Date.now() / 1000) + jwtLifetimeSec - 60,
      nbf: Math.floor(Date.now() / 1000) - 5,
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
      access,
    })
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(
      JSON.stringify({
        token,
        expires_in: auth.expiresInSec ?? 300,
        issued_at: new Date().toISOString(),
      }),
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${address.port}`,
    certPath,
    requests,
    setJwtLifetime: (sec) => {
      jwtLifetimeSec = sec
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

function hasTestCredentials(req: IncomingMessage): boolean {
  const header = req.headers.authorization ?? ''
  if (!header.startsWith('Basic ')) return false
  return (
    Buffer.from(header.slice(6), 'base64').toString() ===
    `${TEST_USER.username}:${TEST_USER.password}`
  )
}

function parseScope(scope: string): { type: string; name: string; actions: string[] } | undefined {
  const parts = scope.split(':')
  if (parts.length < 3) return undefined
  return {
    type: parts[0] as string,
    name: parts.slice(1, -1).join(':'),
    actions: (parts.at(-1) as string).split(','),
  }
}

/** An ES256 JWT with the signing certificate in `x5c`, as distribution's token auth expects. */
function signJwt(keyPem: string, certDer: Buffer, claims: Record<string, unknown>): string {
  const header = { typ: 'JWT', alg: 'ES256', x5c: [certDer.toString('base64')] }
  const encode = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
  const input = `${encode(header)}.${encode(claims)}`
  const signature = createSign('SHA256')
    .update(input)
    .sign({ key: keyPem, dsaEncoding: 'ieee-p1363' })
  return `${input}.${signature.toString('base64url')}`
}
