import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'

interface DemoRow {
  label: string
  readyMs: number
  bytesBeforeReady: number
  imageBytes: number
  completeMs?: number
}

interface DemoOutput {
  results: { rows: DemoRow[]; neededBytes: number }
  boundMs: number
}

const DEMO = join(process.cwd(), 'dist/scripts/demo/main.js')

/**
 * The README's first command, on the smaller `ci` link profile: the whole product end to end
 * (registry, broker, link shaping in the kernel, optimize, agent, MQTT deploy, runc over the
 * lazy FUSE mount). Asserts bytes, never times: the optimized start needs a small part of
 * the image, the unoptimized lazy start less than all of it, and the full pull all of it.
 */
test('demo: deploy over a shaped link three ways, the optimized one fetching least', {
  skip: process.env.EDGESTAR_TEST_ROOTFS ? false : 'EDGESTAR_TEST_ROOTFS is not set',
  timeout: 15 * 60_000,
}, async (t) => {
  const output = await runDemo(['--profile', 'ci', '--json'], t.signal)
  const [optimized, lazy, full] = output.results.rows
  assert.ok(optimized && lazy && full, 'three rows: optimized, lazy, full pull')

  assert.ok(
    optimized.bytesBeforeReady < 0.35 * optimized.imageBytes,
    `optimized start fetched ${optimized.bytesBeforeReady} of ${optimized.imageBytes} bytes`,
  )
  assert.ok(lazy.bytesBeforeReady < full.bytesBeforeReady, 'a lazy start fetches less than a pull')
  assert.ok(full.bytesBeforeReady >= 0.95 * full.imageBytes, 'a full pull fetches the image')
  assert.ok(optimized.completeMs !== undefined, 'the background fetch completed the image')
  assert.ok(output.boundMs > 0)
})

/**
 * Runs the demo in a child process. On a timeout or a cancelled run the demo gets SIGINT,
 * its own Ctrl-C path, so it tears down the link, servers and mounts it made.
 */
function runDemo(args: string[], signal: AbortSignal): Promise<DemoOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--enable-source-maps', DEMO, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const interrupt = (): void => {
      child.kill('SIGINT')
    }
    signal.addEventListener('abort', interrupt, { once: true })
    process.once('SIGTERM', interrupt)
    process.once('exit', interrupt)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (text: Buffer) => {
      stdout += text.toString()
    })
    child.stderr.on('data', (text: Buffer) => {
      stderr += text.toString()
    })
    child.on('exit', (code) => {
      if (code !== 0) {
        reject(new Error(`demo exited with ${code}:\n${stderr.slice(-4000)}`))
        return
      }
      resolve(JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as DemoOutput)
    })
  })
}
