/**
 * runtime: turns an image config into a running container over kernel overlayfs
 * (lower = the image's read-only view, upper/work on disk), run by runc or crun, or by
 * an unshare + chroot fallback; with rotating log files, exit codes and restart policy.
 * Knows nothing about images, FUSE or MQTT: callers hand it directories and a config.
 */
export { ChrootRuntime } from './chroot-runtime.js'
export {
  Container,
  type ContainerEvent,
  type ContainerOptions,
  type ContainerPhase,
} from './container.js'
export { detectRuntime, findBinary, RUNTIME_CHOICES, type RuntimeChoice } from './detect.js'
export {
  DEFAULT_INIT_BINARY,
  findInitBinary,
  INIT_PATH_IN_CONTAINER,
  withInit,
} from './init-process.js'
export {
  currentLogSize,
  logFileNames,
  RotatingLog,
  readCurrentLogFrom,
  readLogs,
  readLogsForFollow,
} from './log-file.js'
export { type LaunchRequest, ociConfig } from './oci-bundle.js'
export { OciRuntime } from './oci-runtime.js'
export {
  mountOverlay,
  mountsUnder,
  type OverlayPaths,
  overlayPaths,
  removeOverlay,
  unmountOverlay,
} from './overlay.js'
export { commandLine, mergeEnv, resolveProcessSpec } from './process-spec.js'
export {
  type BackoffOptions,
  DEFAULT_BACKOFF,
  restartDelayMs,
  shouldRestart,
} from './restart-backoff.js'
export { resolveInRoot } from './root-path.js'
export type { ContainerRuntime, ProcessExit, RunningProcess, RuntimeKind } from './runtime.js'
export * from './types.js'
