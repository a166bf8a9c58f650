import { access, constants } from 'node:fs/promises'
import { EdgestarError } from '../errors.js'

/**
 * Where the init binary appears inside the container. /dev is a tmpfs of the container's
 * own (OCI default mounts, and the chroot runtime's setup), so binding it there writes
 * nothing into the image's tree or the overlay's upper dir.
 */
export const INIT_PATH_IN_CONTAINER = '/dev/init'

/**
 * Debian's `tini` package ships this statically linked build: it runs in any image,
 * whatever libc the image has (or none).
 */
export const DEFAULT_INIT_BINARY = '/usr/bin/tini-static'

/**
 * The host path of the init binary. Throws EDGESTAR_RUNTIME_INIT_NOT_FOUND when it is
 * missing or not executable.
 */
export async function findInitBinary(binary = DEFAULT_INIT_BINARY): Promise<string> {
  const isExecutable = await access(binary, constants.X_OK).then(
    () => true,
    () => false,
  )
  if (isExecutable) return binary
  throw new EdgestarError(
    'EDGESTAR_RUNTIME_INIT_NOT_FOUND',
    `the init for --init (${binary}) is not installed`,
    { hint: 'apt-get install tini (it ships tini-static), or deploy without --init' },
  )
}

/**
 * The command line with the init in front. `-g` makes tini pass signals to the whole
 * process group of the command, so a shell wrapper's children get SIGTERM too; tini
 * exits with the command's code (128+N after signal N), like the runtimes do.
 */
export function withInit(args: string[]): string[] {
  return [INIT_PATH_IN_CONTAINER, '-g', '--', ...args]
}
