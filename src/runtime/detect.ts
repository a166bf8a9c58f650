import { access, constants } from 'node:fs/promises'
import path from 'node:path'
import { EdgestarError } from '../errors.js'
import { ChrootRuntime } from './chroot-runtime.js'
import { OciRuntime } from './oci-runtime.js'
import type { ContainerRuntime, RuntimeKind } from './runtime.js'

/** `auto` picks runc, then crun, then the chroot fallback. */
export type RuntimeChoice = RuntimeKind | 'auto'

/** The runtime choices, for validating input at the edge. */
export const RUNTIME_CHOICES: readonly RuntimeChoice[] = ['auto', 'runc', 'crun', 'chroot']

/**
 * Finds a runtime binary on PATH and returns a runtime keeping its state under
 * `stateRoot`. `auto` prefers runc because crun 1.8 fails on hybrid-cgroup hosts
 * (NOTES.md); naming one explicitly that is missing throws EDGESTAR_RUNTIME_NOT_FOUND.
 */
export async function detectRuntime(
  choice: RuntimeChoice,
  stateRoot: string,
): Promise<ContainerRuntime> {
  const order: RuntimeKind[] = choice === 'auto' ? ['runc', 'crun', 'chroot'] : [choice]
  for (const kind of order) {
    const binary = await findBinary(kind === 'chroot' ? 'unshare' : kind)
    if (binary === undefined) continue
    return kind === 'chroot' ? new ChrootRuntime() : new OciRuntime(kind, binary, stateRoot)
  }
  throw new EdgestarError(
    'EDGESTAR_RUNTIME_NOT_FOUND',
    `no container runtime found (tried ${order.join(', ')})`,
    {
      hint: 'install runc (apt-get install runc), or util-linux for the chroot fallback',
    },
  )
}

/** The absolute path of `name` on PATH (plus the sbin dirs), or undefined. */
export async function findBinary(name: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin']
  for (const dir of dirs.filter((d) => d.startsWith('/'))) {
    const candidate = path.join(dir, name)
    const isExecutable = await access(candidate, constants.X_OK).then(
      () => true,
      () => false,
    )
    if (isExecutable) return candidate
  }
  return undefined
}
