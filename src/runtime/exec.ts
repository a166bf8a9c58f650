import { execFile } from 'node:child_process'

/** What a finished helper command printed and how it exited. */
export interface ExecResult {
  code: number
  stdout: string
  stderr: string
}

/**
 * Runs a helper binary (mount, umount, runc) asynchronously and never throws for a
 * non-zero exit: callers decide what a failure means. Asynchronous on purpose, since
 * the paths involved may be served by this process's own FUSE handlers.
 */
export function run(file: string, args: string[], timeoutMs = 60_000): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 127
        resolve({ code, stdout: String(stdout), stderr: String(stderr || err?.message || '') })
      },
    )
  })
}
