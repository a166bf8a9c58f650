import { spawn } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { constants } from 'node:os'
import { EdgestarError } from '../errors.js'
import { run } from './exec.js'
import { type LaunchRequest, writeBundle } from './oci-bundle.js'
import type { ContainerRuntime, ProcessExit, RunningProcess } from './runtime.js'

/**
 * Runs containers with an OCI runtime binary (`runc`, or `crun` which takes the same
 * arguments), in the foreground so that the container's stdout/stderr are the pipes
 * we read and the runtime's exit code is the container's.
 */
export class OciRuntime implements ContainerRuntime {
  readonly kind: 'runc' | 'crun'
  private readonly binary: string
  private readonly stateRoot: string

  /** `binary` is the runtime's path; `stateRoot` its `--root` state directory. */
  constructor(kind: 'runc' | 'crun', binary: string, stateRoot: string) {
    this.kind = kind
    this.binary = binary
    this.stateRoot = stateRoot
  }

  async launch(req: LaunchRequest): Promise<RunningProcess> {
    await mkdir(this.stateRoot, { recursive: true })
    await this.cleanup(req.id)
    const bundleDir = await writeBundle(req)

    const child = spawn(
      this.binary,
      ['--root', this.stateRoot, 'run', '--bundle', bundleDir, req.id],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      },
    )
    const spawned = await new Promise<Error | undefined>((resolve) => {
      child.once('spawn', () => resolve(undefined))
      child.once('error', (err) => resolve(err))
    })
    if (spawned !== undefined) {
      throw new EdgestarError(
        'EDGESTAR_RUNTIME_START_FAILED',
        `could not run ${this.binary}: ${spawned.message}`,
        {
          cause: spawned,
        },
      )
    }

    const exited = new Promise<ProcessExit>((resolve) => {
      child.once('exit', (code, signal) => {
        const exitCode = code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0))
        void this.cleanup(req.id).then(() =>
          resolve(signal === null ? { exitCode } : { exitCode, signal }),
        )
      })
    })
    return {
      pid: child.pid as number,
      stdout: child.stdout,
      stderr: child.stderr,
      exited,
      kill: async (signal) => {
        const result = await run(this.binary, ['--root', this.stateRoot, 'kill', req.id, signal])
        // Before the container exists (or after it is gone) only runc itself can be signalled.
        if (result.code !== 0 && child.exitCode === null) child.kill(signal)
      },
    }
  }

  async cleanup(id: string): Promise<void> {
    await run(this.binary, ['--root', this.stateRoot, 'delete', '--force', id])
  }
}
