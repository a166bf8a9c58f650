import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

/** What `run` resolves with: the command's whole output. */
export interface RunOutput {
  stdout: string
  stderr: string
}

/**
 * Background processes and undo steps the demo has started, torn down in reverse order on
 * exit, on an error and on Ctrl-C, so a run never leaves mounts, namespaces or servers behind.
 */
export class Cleanup {
  private readonly steps: { label: string; undo: () => Promise<void> }[] = []
  private running: Promise<void> | undefined

  /** Registers an undo step; the last registered runs first. */
  add(label: string, undo: () => Promise<void>): void {
    this.steps.push({ label, undo })
  }

  /** Runs every undo step once, reporting but not stopping on failures. */
  runAll(): Promise<void> {
    this.running ??= this.unwind()
    return this.running
  }

  private async unwind(): Promise<void> {
    for (const step of this.steps.reverse()) {
      try {
        await step.undo()
      } catch (err) {
        process.stderr.write(`demo: cleanup of ${step.label} failed: ${String(err)}\n`)
      }
    }
  }
}

/** Runs a command to completion and returns its output; throws with stderr on failure. */
export async function run(
  file: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunOutput> {
  try {
    return await execFileAsync(file, args, {
      env: options.env ?? process.env,
      timeout: options.timeoutMs ?? 600_000,
      maxBuffer: 64 * 1024 * 1024,
    })
  } catch (err) {
    const failed = err as { stderr?: string; message: string }
    const detail = failed.stderr?.trim() || failed.message
    throw new Error(`${file} ${args.join(' ')} failed:\n${detail}`)
  }
}

/** Starts a long-running process, stopped by `cleanup`; its output is read or kept in a log. */
export function startBackground(
  file: string,
  args: string[],
  cleanup: Cleanup,
  label: string,
  options: {
    env?: NodeJS.ProcessEnv
    onStdoutLine?: (line: string) => void
    /** Where the process's stderr (and stdout, unless read line by line) is kept. */
    logPath?: string
  } = {},
): ChildProcess {
  const child = spawn(file, args, {
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const log = options.logPath ? createWriteStream(options.logPath) : undefined
  if (options.onStdoutLine) forEachLine(child.stdout, options.onStdoutLine)
  else if (log) child.stdout?.pipe(log, { end: false })
  else child.stdout?.resume()
  if (log) child.stderr?.pipe(log)
  else child.stderr?.resume()

  cleanup.add(label, () => stopChild(child))
  return child
}

/** Sends SIGTERM, then SIGKILL after a grace period, and waits for the exit. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

/** Calls `onLine` for each complete line the stream produces. */
export function forEachLine(
  stream: NodeJS.ReadableStream | null,
  onLine: (line: string) => void,
): void {
  if (!stream) return
  let pending = ''
  stream.setEncoding('utf8')
  stream.on('data', (text: string) => {
    pending += text
    let newline = pending.indexOf('\n')
    while (newline >= 0) {
      onLine(pending.slice(0, newline))
      pending = pending.slice(newline + 1)
      newline = pending.indexOf('\n')
    }
  })
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
