import { type ChildProcessByStdio, spawn } from 'node:child_process'
import { constants } from 'node:os'
import type { Readable } from 'node:stream'
import { EdgestarError } from '../errors.js'
import type { ProcessExit } from './runtime.js'

/** A spawned runtime process with its output pipes and how it ended. */
export interface SpawnedContainer {
  child: ChildProcessByStdio<null, Readable, Readable>
  /** Settles after the process exited and `afterExit` finished. */
  exited: Promise<ProcessExit>
}

/**
 * Starts a runtime binary in its own process group (so a terminal's Ctrl-C reaches the
 * agent, not the containers) with piped stdout/stderr, and resolves once it is running.
 * `afterExit` runs before `exited` settles (runtime state cleanup). Throws
 * EDGESTAR_RUNTIME_START_FAILED when the binary cannot be run.
 */
export async function spawnContainer(
  file: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; hint?: string; afterExit: () => Promise<void> },
): Promise<SpawnedContainer> {
  const child = spawn(file, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    ...(options.env === undefined ? {} : { env: options.env }),
  })
  const failed = await new Promise<Error | undefined>((resolve) => {
    child.once('spawn', () => resolve(undefined))
    child.once('error', (err) => resolve(err))
  })
  if (failed !== undefined) {
    throw new EdgestarError(
      'EDGESTAR_RUNTIME_START_FAILED',
      `could not run ${file}: ${failed.message}`,
      {
        cause: failed,
        ...(options.hint === undefined ? {} : { hint: options.hint }),
      },
    )
  }

  const exited = new Promise<ProcessExit>((resolve) => {
    child.once('exit', (code, signal) => {
      const exitCode = code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0))
      const exit = signal === null ? { exitCode } : { exitCode, signal }
      void options.afterExit().then(
        () => resolve(exit),
        () => resolve(exit),
      )
    })
  })
  return { child, exited }
}
