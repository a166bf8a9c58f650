import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { isEdgestarError } from '../../src/errors.js'
import {
  ChrootRuntime,
  Container,
  type ContainerEvent,
  type ContainerOptions,
  type ContainerRuntime,
  findBinary,
  mountsUnder,
  OciRuntime,
  readLogs,
} from '../../src/runtime/index.js'

const rootfs = process.env.EDGESTAR_TEST_ROOTFS
const skip = rootfs === undefined ? 'EDGESTAR_TEST_ROOTFS is not set (run scripts/test.sh)' : false
const FAST_BACKOFF = { initialMs: 10, maxMs: 40, resetAfterMs: 60_000 }

/** Every runtime present on this machine runs the same cases (STYLE.md: one suite per interface). */
async function runtimesHere(stateRoot: string): Promise<ContainerRuntime[]> {
  const found: ContainerRuntime[] = []
  const runc = await findBinary('runc')
  if (runc !== undefined) found.push(new OciRuntime('runc', runc, path.join(stateRoot, 'runc')))
  if ((await findBinary('unshare')) !== undefined) found.push(new ChrootRuntime())
  return found
}

function nextEvent(container: Container, type: ContainerEvent['type']): Promise<ContainerEvent> {
  return new Promise((resolve) => {
    const listener = (event: ContainerEvent): void => {
      if (event.type !== type) return
      container.off('event', listener)
      resolve(event)
    }
    container.on('event', listener)
  })
}

let work = ''
const containers: Container[] = []
const runtimeState = await mkdtemp(path.join(tmpdir(), 'edgestar-runtime-state-'))
const runtimes = await runtimesHere(runtimeState)

// NOTE: the shared rootfs has python3-minimal, whose stdlib lacks `json`, so its own
// /app/app.py cannot run; a second lower layer on top brings an app that needs no more.
const APP = [
  'import hashlib, sys',
  'digest = hashlib.sha256(b"edge").hexdigest()[:12]',
  'print(f"edgestar-demo ready {digest} python {sys.version_info.major}", flush=True)',
].join('\n')
let appLayer = ''

// Sets no handler: as pid 1 it ignores SIGTERM, as anyone else it dies of it.
const PID1_SLEEPER = ['import time', 'print("up", flush=True)', 'time.sleep(3600)'].join('\n')

// A grandchild that outlives its parent is handed to pid 1; `gone` means pid 1 reaped it.
// The wait is bounded so a missing reaper shows as `orphan Z`, not as a hung test.
const ORPHAN_MAKER = `
import os, time
r, w = os.pipe()
child = os.fork()
if child == 0:
    grandchild = os.fork()
    if grandchild == 0:
        time.sleep(0.2)
        os._exit(0)
    os.write(w, str(grandchild).encode())
    os._exit(0)
os.close(w)
os.waitpid(child, 0)
orphan = int(os.read(r, 32))
def state():
    try:
        with open(f"/proc/{orphan}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0]
    except FileNotFoundError:
        return "gone"
for _ in range(400):
    if state() == "gone":
        break
    time.sleep(0.05)
print("orphan", state(), flush=True)
`

// Runs the image's own app, then waits to be stopped.
const DEMO_APP_THEN_WAIT = [
  'import runpy, time',
  'runpy.run_path("/app/app.py", run_name="__main__")',
  'print("up", flush=True)',
  'time.sleep(3600)',
].join('\n')

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'edgestar-runtime-'))
  appLayer = path.join(work, 'app-layer')
  await mkdir(path.join(appLayer, 'app'), { recursive: true })
  await writeFile(path.join(appLayer, 'app/app.py'), APP)
})

after(async () => {
  for (const container of containers) await container.remove().catch(() => undefined)
  await rm(work, { recursive: true, force: true })
  await rm(runtimeState, { recursive: true, force: true })
})

for (const runtime of runtimes) {
  describe(`container runtime ${runtime.kind}`, { skip }, () => {
    let count = 0
    function makeContainer(overrides: Partial<ContainerOptions>): Container {
      count += 1
      const id = `t-${runtime.kind}-${count}`
      const container = new Container({
        id,
        containerDir: path.join(work, id),
        lowerDirs: [appLayer, rootfs as string],
        runtime,
        image: { Cmd: ['python3', '/app/app.py'], Env: ['PATH=/usr/bin:/bin'], WorkingDir: '/' },
        backoff: FAST_BACKOFF,
        stopTimeoutMs: 2000,
        ...overrides,
      })
      containers.push(container)
      return container
    }

    async function runToExit(container: Container): Promise<ContainerEvent> {
      const exited = nextEvent(container, 'exited')
      await container.start()
      return exited
    }

    it('runs the image command over stacked lower dirs and keeps its output in the log files', async () => {
      const container = makeContainer({})
      const event = await runToExit(container)
      assert.equal(event.type === 'exited' && event.exit.exitCode, 0)
      const logs = (await readLogs(container.logDir, 3)).toString()
      assert.match(logs, /edgestar-demo ready [0-9a-f]{12} python 3/)
    })

    it('records the exit code and applies env, workdir and user overrides', async () => {
      const script = [
        'import os, sys',
        'print(os.environ["GREETING"], os.getcwd(), os.getuid(), os.getgid(), flush=True)',
        'sys.exit(3)',
      ].join('\n')
      const container = makeContainer({
        overrides: {
          command: ['python3', '-c', script],
          env: { GREETING: 'hi there' },
          workingDir: '/tmp',
          user: 'nobody',
        },
      })
      const event = await runToExit(container)
      assert.equal(event.type === 'exited' && event.exit.exitCode, 3)
      const logs = (await readLogs(container.logDir, 3)).toString()
      assert.match(logs, /hi there \/tmp 65534 65534/)
    })

    it('writes into the upper dir and never into the lower dir', async () => {
      const container = makeContainer({
        overrides: {
          command: ['sh', '-c', 'echo changed > /etc/edgestar-upper && rm /app/app.py'],
        },
      })
      const event = await runToExit(container)
      assert.equal(event.type === 'exited' && event.exit.exitCode, 0)
      const upper = await readFile(
        path.join(container.paths.upperDir, 'etc/edgestar-upper'),
        'utf8',
      )
      assert.equal(upper, 'changed\n')
      await stat(path.join(rootfs as string, 'app/app.py'))
      assert.equal(
        await stat(path.join(rootfs as string, 'etc/edgestar-upper')).catch(() => 'absent'),
        'absent',
      )
    })

    it('gives network none only a loopback interface and binds host paths', async () => {
      const shared = await mkdtemp(path.join(work, 'bind-'))
      await writeFile(path.join(shared, 'in.txt'), 'from host')
      const container = makeContainer({
        network: 'none',
        binds: [{ source: shared, target: '/data' }],
        overrides: {
          command: [
            'sh',
            '-c',
            'cat /data/in.txt; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " > /data/ifaces',
          ],
        },
      })
      const event = await runToExit(container)
      assert.equal(event.type === 'exited' && event.exit.exitCode, 0)
      assert.equal((await readFile(path.join(shared, 'ifaces'), 'utf8')).trim(), 'lo')
      assert.match((await readLogs(container.logDir, 3)).toString(), /from host/)
    })

    it('refuses a command that does not exist in the image before starting anything', async () => {
      const container = makeContainer({ overrides: { command: ['/usr/bin/no-such-app'] } })
      await assert.rejects(container.start(), (err) =>
        isEdgestarError(err, 'EDGESTAR_RUNTIME_COMMAND_NOT_FOUND'),
      )
      await container.remove()
      assert.deepEqual(await mountsUnder(container.paths.mergedDir), [])
    })

    it('restarts on failure with backoff until the command succeeds', async () => {
      const shared = await mkdtemp(path.join(work, 'count-'))
      const script =
        'n=$(($(cat /data/n 2>/dev/null || echo 0)+1)); echo $n > /data/n; [ $n -ge 3 ]'
      const container = makeContainer({
        restart: 'on-failure',
        binds: [{ source: shared, target: '/data' }],
        overrides: { command: ['sh', '-c', script] },
      })
      const exits: number[] = []
      const done = new Promise<void>((resolve) => {
        container.on('event', (event: ContainerEvent) => {
          if (event.type !== 'exited') return
          exits.push(event.exit.exitCode)
          if (event.restartInMs === undefined) resolve()
        })
      })
      await container.start()
      await done
      assert.deepEqual(exits, [1, 1, 0])
      assert.equal(container.restartCount, 2)
    })

    it('restarts always, and stop ends the loop', async () => {
      const container = makeContainer({ restart: 'always', overrides: { command: ['true'] } })
      let starts = 0
      const twice = new Promise<void>((resolve) => {
        container.on('event', (event: ContainerEvent) => {
          if (event.type === 'started' && ++starts === 3) resolve()
        })
      })
      await container.start()
      await twice
      await container.stop()
      assert.equal(container.phase, 'stopped')
    })

    it('stops a long-running process, killing it when SIGTERM is ignored', async () => {
      const container = makeContainer({
        restart: 'always',
        stopTimeoutMs: 300,
        overrides: { command: ['sh', '-c', 'trap "" TERM; echo up; while true; do sleep 1; done'] },
      })
      const started = nextEvent(container, 'started')
      await container.start()
      await started
      // Only once the trap is set does SIGTERM go unanswered.
      while (!(await readLogs(container.logDir, 3)).toString().includes('up'))
        await new Promise((resolve) => setTimeout(resolve, 20))
      const exited = nextEvent(container, 'exited')
      await container.stop()
      const event = await exited
      assert.equal(event.type === 'exited' && event.restartInMs, undefined)
      assert.equal(container.phase, 'stopped')
    })

    async function waitForLog(container: Container, text: string): Promise<void> {
      while (!(await readLogs(container.logDir, 3)).toString().includes(text))
        await new Promise((resolve) => setTimeout(resolve, 20))
    }

    async function stopOnceUp(container: Container): Promise<ContainerEvent> {
      await container.start()
      await waitForLog(container, 'up')
      const exited = nextEvent(container, 'exited')
      await container.stop()
      return exited
    }

    it('kills a pid 1 that sets no SIGTERM handler only after the stop timeout', async () => {
      const container = makeContainer({
        stopTimeoutMs: 300,
        overrides: { command: ['python3', '-c', PID1_SLEEPER] },
      })
      const event = await stopOnceUp(container)
      assert.equal(event.type === 'exited' && event.exit.exitCode, 128 + 9)
      assert.equal(container.lastExit?.killedAfterMs, 300, 'the exit says the SIGKILL was needed')
    })

    it('with init, that pid 1 ends on SIGTERM, passed on by the init', async () => {
      const container = makeContainer({
        init: true,
        stopTimeoutMs: 60_000,
        overrides: { command: ['python3', '-c', PID1_SLEEPER] },
      })
      const event = await stopOnceUp(container)
      assert.equal(event.type === 'exited' && event.exit.exitCode, 128 + 15)
      assert.equal(container.phase, 'stopped')
      assert.equal(container.lastExit?.killedAfterMs, undefined)
    })

    it('with init, orphans are reaped and the init leaves no file in the upper dir', async () => {
      const container = makeContainer({
        init: true,
        overrides: { command: ['python3', '-c', ORPHAN_MAKER] },
      })
      const event = await runToExit(container)
      assert.equal(event.type === 'exited' && event.exit.exitCode, 0)
      const logs = (await readLogs(container.logDir, 3)).toString()
      assert.match(logs, /orphan gone/)
      const initInUpper = path.join(container.paths.upperDir, 'dev', 'init')
      assert.equal(await stat(initInUpper).catch(() => 'absent'), 'absent')
    })

    it("the image's demo app (/app/app.py) ends on SIGTERM as pid 1", async () => {
      const container = makeContainer({
        lowerDirs: [rootfs as string],
        stopTimeoutMs: 60_000,
        overrides: { command: ['python3', '-c', DEMO_APP_THEN_WAIT] },
      })
      const event = await stopOnceUp(container)
      assert.equal(event.type === 'exited' && event.exit.exitCode, 0)
      assert.match((await readLogs(container.logDir, 3)).toString(), /edgestar-demo ready/)
    })

    it('removes the upper dir and the overlay mount', async () => {
      const container = makeContainer({ overrides: { command: ['sh', '-c', 'echo x > /x'] } })
      await runToExit(container)
      await container.remove()
      assert.deepEqual(await mountsUnder(container.paths.mergedDir), [])
      assert.equal(await stat(container.paths.upperDir).catch(() => 'absent'), 'absent')
    })
  })
}
