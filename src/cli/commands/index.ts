import type { Command } from 'commander'
import { register as agentCommand } from './agent.js'
import { register as bandwidthCommand } from './bandwidth.js'
import { register as cacheCommand } from './cache.js'
import { register as catCommand } from './cat.js'
import { register as convertCommand } from './convert.js'
import { register as deployCommand } from './deploy.js'
import { register as extractCommand } from './extract.js'
import { register as fleetCommand } from './fleet.js'
import { register as imagesCommand } from './images.js'
import { register as inspectCommand } from './inspect.js'
import { register as logsCommand } from './logs.js'
import { register as mountCommand } from './mount.js'
import { register as optimizeCommand } from './optimize.js'
import { register as psCommand } from './ps.js'
import { register as pullCommand } from './pull.js'
import { register as rmCommand } from './rm.js'
import { register as startCommand } from './start.js'
import { register as statusCommand } from './status.js'
import { register as stopCommand } from './stop.js'
import { register as umountCommand } from './umount.js'
import { register as verifyCommand } from './verify.js'

/** A CLI command module: adds its subcommand (and options) to the program. */
export type RegisterCommand = (program: Command) => void

/**
 * Every subcommand, in the order `--help` lists them. Each lives in its own file
 * under `src/cli/commands/` and exports `register`.
 */
export const COMMANDS: RegisterCommand[] = [
  inspectCommand,
  verifyCommand,
  extractCommand,
  convertCommand,
  optimizeCommand,
  pullCommand,
  catCommand,
  imagesCommand,
  cacheCommand,
  mountCommand,
  umountCommand,
  agentCommand,
  deployCommand,
  psCommand,
  statusCommand,
  logsCommand,
  stopCommand,
  startCommand,
  rmCommand,
  bandwidthCommand,
  fleetCommand,
]
