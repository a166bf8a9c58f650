import { mkdir } from 'node:fs/promises'
import { run } from './exec.js'
import { type LaunchRequest, writeBundle } from './oci-bundle.js'
import type { ContainerRuntime, RunningProcess } from './runtime.js'
import { spawnContainer } from './spawn-container.js'

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

    const { child, exited } = await spawnContainer(
      this.binary,
      ['--root', this.stateRoot, 'run', '--bundle', bundleDir, req.id],
      { afterExit: () => this.cleanup(req.id) },
    )
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
