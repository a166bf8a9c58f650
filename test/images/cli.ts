import { execFile } from 'node:child_process'
import { join } from 'node:path'

/** Path of the compiled CLI entry point. */
export const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js')

/** What one CLI run left behind. */
export interface CliRun {
  code: number
  stdout: Buffer
  stderr: string
}

/** Runs `edgestar ARGS` in a child process (never in-process: it may serve FUSE). */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      {
        encoding: 'buffer',
        maxBuffer: 512 * 1024 * 1024,
        env: { ...process.env, EDGESTAR_LOG_LEVEL: 'warn', ...env },
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0
        resolve({ code, stdout, stderr: stderr.toString() })
      },
    )
  })
}

/** The last JSON line of a text (stats lines, --json results). */
export function lastJsonLine(text: string): Record<string, unknown> {
  const lines = text
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('{'))
  return JSON.parse(lines[lines.length - 1] ?? '{}') as Record<string, unknown>
}
