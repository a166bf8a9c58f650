import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { Socket } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './registry-server.js'

const execFileAsync = promisify(execFile)

/** How a test broker authenticates clients. */
export interface BrokerOptions {
  /** Serve MQTT over TLS with a fresh CA; `requireClientCert` asks clients for a cert too. */
  tls?: { requireClientCert?: boolean }
  /** Refuse anonymous clients; accept only this user. */
  user?: { username: string; password: string }
}

/** PEM files of the test CA, the broker's certificate and a client certificate. */
export interface BrokerTls {
  caFile: string
  clientCertFile: string
  clientKeyFile: string
}

/**
 * A Debian `mosquitto` on a free loopback port, with its own config, persistence and
 * log in a temporary directory. `stop()` + `start()` restart it on the same port with
 * the same persistence (sessions, retained messages, queued QoS 1 messages survive);
 * `kill()` ends it abruptly.
 */
export class TestBroker {
  readonly dir: string
  readonly port: number
  readonly options: BrokerOptions
  readonly tls: BrokerTls | undefined
  #child: ChildProcess | undefined

  private constructor(dir: string, port: number, options: BrokerOptions, tls?: BrokerTls) {
    this.dir = dir
    this.port = port
    this.options = options
    this.tls = tls
  }

  /** Writes the config (and certificates, password file) and starts the broker. */
  static async start(options: BrokerOptions = {}): Promise<TestBroker> {
    const dir = await mkdtemp(join(tmpdir(), 'edgestar-broker-'))
    // Mosquitto drops to the `mosquitto` user when started as root; everything it writes
    // must belong to that user (and `-d` would hide the error, so it runs in front).
    await mkdir(join(dir, 'data'))
    if (userInfo().uid === 0) {
      const ids = await mosquittoIds()
      await chown(join(dir, 'data'), ids.uid, ids.gid)
    }
    await chmod(dir, 0o755)

    const port = await freePort()
    const tls = options.tls === undefined ? undefined : await makeCertificates(dir)
    const broker = new TestBroker(dir, port, options, tls)
    await writeFile(join(dir, 'mosquitto.conf'), await broker.#config())
    await broker.start()
    return broker
  }

  /** mqtt://127.0.0.1:PORT or mqtts://localhost:PORT (the name in the certificate). */
  get url(): string {
    return this.tls === undefined
      ? `mqtt://127.0.0.1:${this.port}`
      : `mqtts://localhost:${this.port}`
  }

  /** Starts (or restarts) the broker; resolves once it accepts TCP connections. */
  async start(): Promise<void> {
    if (this.#child !== undefined) throw new Error('test broker already running')
    const child = spawn('mosquitto', ['-c', join(this.dir, 'mosquitto.conf')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    this.#child = child

    let exited = false
    child.once('exit', () => {
      exited = true
      if (this.#child === child) this.#child = undefined
    })
    for (let attempt = 0; attempt < 200; attempt++) {
      if (exited) {
        const log = await readFile(join(this.dir, 'data', 'mosquitto.log'), 'utf8').catch(() => '')
        throw new Error(`mosquitto exited at start: ${stderr}${log}`)
      }
      if (await canConnect(this.port)) return
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    throw new Error(`mosquitto did not listen on ${this.port}: ${stderr}`)
  }

  /** Stops the broker cleanly (SIGTERM: it saves its persistence file first). */
  async stop(): Promise<void> {
    await this.#end('SIGTERM')
  }

  /** Ends the broker at once (SIGKILL), as a crash would. */
  async kill(): Promise<void> {
    await this.#end('SIGKILL')
  }

  /** Freezes the broker (SIGSTOP): connections stay open but nothing answers. */
  pause(): void {
    this.#child?.kill('SIGSTOP')
  }

  /** Lets a paused broker run again (SIGCONT). */
  resume(): void {
    this.#child?.kill('SIGCONT')
  }

  /** Deletes the persistence file of a stopped broker: sessions and retained messages go. */
  async forgetSessions(): Promise<void> {
    if (this.#child !== undefined) throw new Error('stop the test broker first')
    await rm(join(this.dir, 'data', 'mosquitto.db'), { force: true })
  }

  /** Stops the broker and removes its directory. */
  async close(): Promise<void> {
    await this.#end('SIGKILL')
    await rm(this.dir, { recursive: true, force: true })
  }

  /** The broker's log (connections, subscriptions, wills), for failure messages. */
  async log(): Promise<string> {
    return readFile(join(this.dir, 'data', 'mosquitto.log'), 'utf8').catch(() => '')
  }

  /**
   * How many PUBLISH packets the broker received from client `clientId` on `topic`
   * (from its log; a DUP resend counts too), to tell a sender's repeat from a broker
   * redelivering to a subscriber.
   */
  async publishesReceived(clientId: string, topic: string): Promise<number> {
    const needle = `Received PUBLISH from ${clientId} (`
    const quoted = `'${topic}'`
    return (await this.log())
      .split('\n')
      .filter((line) => line.includes(needle) && line.includes(quoted)).length
  }

  async #end(signal: NodeJS.Signals): Promise<void> {
    const child = this.#child
    if (child === undefined) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGCONT')
    child.kill(signal)
    await exited
    this.#child = undefined
  }

  async #config(): Promise<string> {
    const data = join(this.dir, 'data')
    const lines = [
      'per_listener_settings false',
      'persistence true',
      `persistence_location ${data}/`,
      'autosave_interval 1',
      `log_dest file ${data}/mosquitto.log`,
      'log_type all',
      'connection_messages true',
      `listener ${this.port} 127.0.0.1`,
    ]
    if (this.tls !== undefined) {
      lines.push(
        `cafile ${this.tls.caFile}`,
        `certfile ${join(this.dir, 'server.crt')}`,
        `keyfile ${join(this.dir, 'server.key')}`,
        `require_certificate ${this.options.tls?.requireClientCert ? 'true' : 'false'}`,
      )
    }
    if (this.options.user === undefined) {
      lines.push('allow_anonymous true')
    } else {
      const passwordFile = join(this.dir, 'passwords')
      await writeFile(passwordFile, '')
      await execFileAsync('mosquitto_passwd', [
        '-b',
        passwordFile,
        this.options.user.username,
        this.options.user.password,
      ])
      await chmod(passwordFile, 0o644)
      lines.push('allow_anonymous false', `password_file ${passwordFile}`)
    }
    return `${lines.join('\n')}\n`
  }
}

async function mosquittoIds(): Promise<{ uid: number; gid: number }> {
  const { stdout } = await execFileAsync('id', ['mosquitto'])
  const uid = /uid=(\d+)/.exec(stdout)?.[1]
  const gid = /gid=(\d+)/.exec(stdout)?.[1]
  if (uid === undefined || gid === undefined) throw new Error(`cannot read ids: ${stdout}`)
  return { uid: Number(uid), gid: Number(gid) }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket()
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
    socket.connect(port, '127.0.0.1')
  })
}

// A throwaway CA signing a server certificate for localhost/127.0.0.1 and a client
// certificate; every file readable by the mosquitto user.
async function makeCertificates(dir: string): Promise<BrokerTls> {
  const path = (name: string): string => join(dir, name)
  const openssl = (args: string[]) => execFileAsync('openssl', args)
  // An EC P-256 key, unencrypted, made alongside each certificate request.
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
  await openssl([
    'req',
    '-x509',
    ...newKey,
    '-keyout',
    path('ca.key'),
    '-out',
    path('ca.crt'),
    '-days',
    '2',
    '-subj',
    '/CN=edgestar test CA',
  ])
  for (const [name, subject, ext] of [
    ['server', '/CN=localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    ['client', '/CN=edgestar-test-device', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    await openssl([
      'req',
      ...newKey,
      '-keyout',
      path(`${name}.key`),
      '-out',
      path(`${name}.csr`),
      '-subj',
      subject,
    ])
    await writeFile(path(`${name}.ext`), `${ext}\n`)
    await openssl([
      'x509',
      '-req',
      '-in',
      path(`${name}.csr`),
      '-CA',
      path('ca.crt'),
      '-CAkey',
      path('ca.key'),
      '-CAcreateserial',
      '-out',
      path(`${name}.crt`),
      '-days',
      '2',
      '-extfile',
      path(`${name}.ext`),
    ])
    await chmod(path(`${name}.key`), 0o644)
  }
  return {
    caFile: path('ca.crt'),
    clientCertFile: path('client.crt'),
    clientKeyFile: path('client.key'),
  }
}
