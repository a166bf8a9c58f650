import type { Readable } from 'node:stream'
import type { LaunchRequest } from './oci-bundle.js'

/** The container runtimes edgestar can drive. */
export type RuntimeKind = 'runc' | 'crun' | 'chroot'

/** How a container process ended; `exitCode` is 128+N after signal N. */
export interface ProcessExit {
  exitCode: number
  signal?: string
}

/** A container process as a runtime started it. */
export interface RunningProcess {
  /** Host pid of the runtime's own process (runc, or unshare). */
  pid: number
  stdout: Readable
  stderr: Readable
  /** Settles once the container has exited and the runtime has cleaned up after it. */
  exited: Promise<ProcessExit>
  /** Sends `signal` to the container's main process. */
  kill(signal: NodeJS.Signals): Promise<void>
}

/**
 * One way to run containers. Conformance tests run the same cases against every
 * implementation present on the machine.
 */
export interface ContainerRuntime {
  readonly kind: RuntimeKind
  /** Starts the process; resolves once it was spawned (not when it exits). */
  launch(req: LaunchRequest): Promise<RunningProcess>
  /**
   * Removes what a previous agent left of container `id` (after kill -9 or a reboot):
   * kills a leftover process and deletes runtime state. Safe to call when nothing is left.
   */
  cleanup(id: string, containerDir: string): Promise<void>
}
