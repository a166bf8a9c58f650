/**
 * The part of an OCI image config that says how to run the image
 * (image-spec `config.md`, the `config` object; field names as in the spec).
 */
export interface ImageRunConfig {
  Entrypoint?: string[] | null
  Cmd?: string[] | null
  Env?: string[] | null
  WorkingDir?: string
  User?: string
}

/**
 * What a deployment changes about how the image runs. `command` replaces the image's
 * Entrypoint and drops its Cmd; `args` replaces Cmd (the Kubernetes convention).
 * `env` entries override the image's variables of the same name.
 */
export interface RunOverrides {
  command?: string[]
  args?: string[]
  env?: Record<string, string>
  workingDir?: string
  user?: string
}

/** A host path made visible inside the container. */
export interface BindMount {
  source: string
  target: string
  readOnly?: boolean
}

/** `host` shares the host's network namespace; `none` gives a namespace with only loopback. */
export type NetworkMode = 'host' | 'none'

/** `no` never restarts; `on-failure` restarts after a non-zero exit; `always` after any exit. */
export type RestartPolicy = 'no' | 'on-failure' | 'always'

/** The restart policies, for validating input at the edge. */
export const RESTART_POLICIES: readonly RestartPolicy[] = ['no', 'on-failure', 'always']

/** The process to run, fully resolved against the image and its root filesystem. */
export interface ProcessSpec {
  args: string[]
  env: string[]
  cwd: string
  uid: number
  gid: number
  additionalGids: number[]
}

/** How one run of a container ended. `exitCode` is 128+N when killed by signal N. */
export interface ExitStatus {
  exitCode: number
  signal?: string
  startedAt: string
  finishedAt: string
  /**
   * Set when a stop had to SIGKILL the process: it had not exited this many
   * milliseconds after SIGTERM (the stop timeout).
   */
  killedAfterMs?: number
}

/** Size limits of a container's log files. */
export interface LogLimits {
  maxFileBytes: number
  maxFiles: number
}

/** Defaults: 1 MiB per file, 3 files per container. */
export const DEFAULT_LOG_LIMITS: LogLimits = { maxFileBytes: 1024 * 1024, maxFiles: 3 }
