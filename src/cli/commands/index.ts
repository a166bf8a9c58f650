import type { Command } from 'commander'

/** A CLI command module: adds its subcommand (and options) to the program. */
export type RegisterCommand = (program: Command) => void

/**
 * Every subcommand, in the order `--help` lists them. Each lives in its own file
 * under `src/cli/commands/` and exports `register`.
 */
export const COMMANDS: RegisterCommand[] = []
