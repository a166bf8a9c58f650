import { mkdir, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { type Cleanup, sleep, startBackground } from './processes.js'

/** A server the demo started, reachable from the device namespace at `address`. */
export interface DemoServer {
  address: string
}

/**
 * Starts Debian's `docker-registry` on HOST:PORT with its own storage under `workDir`.
 * The registry listens on the host end of the veth pair so the device reaches it only
 * through the shaped link.
 */
export async function startDemoRegistry(
  host: string,
  port: number,
  workDir: string,
  cleanup: Cleanup,
): Promise<DemoServer> {
  const storage = join(workDir, 'registry')
  await mkdir(storage, { recursive: true })
  const configPath = join(workDir, 'registry.yml')
  await writeFile(
    configPath,
    [
      'version: 0.1',
      'log: { level: warn }',
      `storage: { filesystem: { rootdirectory: ${storage} }, delete: { enabled: true } }`,
      `http: { addr: "${host}:${port}" }`,
      '',
    ].join('\n'),
  )

  startBackground('docker-registry', ['serve', configPath], cleanup, 'registry')
  await waitForPort(host, port, 'docker-registry')
  return { address: `${host}:${port}` }
}

/**
 * Starts Mosquitto on HOST:PORT. It runs as root here (`user root`) because it drops to the
 * `mosquitto` user otherwise and then cannot write its files in our work dir (NOTES.md).
 */
export async function startDemoBroker(
  host: string,
  port: number,
  workDir: string,
  cleanup: Cleanup,
): Promise<DemoServer> {
  const configPath = join(workDir, 'mosquitto.conf')
  await writeFile(
    configPath,
    ['user root', `listener ${port} ${host}`, 'allow_anonymous true', 'persistence false', ''].join(
      '\n',
    ),
  )

  startBackground('mosquitto', ['-c', configPath], cleanup, 'mosquitto')
  await waitForPort(host, port, 'mosquitto')
  return { address: `${host}:${port}` }
}

async function waitForPort(host: string, port: number, what: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (await isListening(host, port)) return
    await sleep(100)
  }
  throw new Error(`demo: ${what} did not start listening on ${host}:${port} within 10 s`)
}

function isListening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}
