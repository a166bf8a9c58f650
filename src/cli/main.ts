#!/usr/bin/env node
import { Command, CommanderError } from 'commander'
import { EdgestarError } from '../errors.js'
import { COMMANDS } from './commands/index.js'
import { reportError } from './output.js'

const VERSION = '0.1.0'

/** Builds the `edgestar` program with every registered subcommand. */
export function buildProgram(): Command {
  const program = new Command()
    .name('edgestar')
    .description(
      'Run containers on edge gateways before their images have finished downloading:\n' +
        'lazy eStargz layers over FUSE, a bandwidth-capped background fetch, a crash-safe\n' +
        'SQLite chunk index, and deploy commands over MQTT.',
    )
    .version(VERSION)
    .addHelpText(
      'after',
      '\nEvery command takes --json for scripts: a JSON object on stdout with ok, and the\n' +
        'result or an error with code, message and hint (logs and fleet watch: one a line).\n' +
        '`edgestar COMMAND --help` tells more. Logs are JSON lines on stderr;\n' +
        'EDGESTAR_LOG_LEVEL sets their level.',
    )
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()

  for (const register of COMMANDS) register(program)
  for (const command of program.commands) {
    if (!command.summary()) command.summary(summaryOf(command.description()))
  }
  return program
}

/**
 * The one-line form of a command's description for the command list of `--help`: the
 * first sentence or clause, so multi-line descriptions do not break the list's columns.
 */
function summaryOf(description: string): string {
  if (!description.includes('\n')) return description
  const flat = description.replace(/\s*\n\s*/g, ' ').trim()
  const end = flat.search(/[.;](\s|$)/)
  return end > 0 ? flat.slice(0, end) : flat
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram()
  const wantsJson = argv.includes('--json')
  // `edgestar --version --json`: commander would print the bare version text.
  const topLevel = argv.slice(2)
  const isVersionOnly = topLevel.every((arg) => ['--version', '-V', '--json'].includes(arg))
  if (wantsJson && topLevel.length > 1 && isVersionOnly) {
    process.stdout.write(`${JSON.stringify({ ok: true, version: VERSION })}\n`)
    return
  }
  try {
    await program.parseAsync(argv)
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode
      // Commander has printed the usage error; a script reading --json gets its body too.
      if (wantsJson && err.exitCode !== 0) reportError(usageError(err), true)
      return
    }
    process.exitCode = reportError(err, wantsJson)
  }
}

function usageError(err: CommanderError): EdgestarError {
  return new EdgestarError('EDGESTAR_CLI_USAGE', err.message.replace(/^error: /, ''), {
    hint: 'run the command with --help for its arguments and options',
  })
}

// `edgestar images | head` closes our stdout early; that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
  throw err
})

await main(process.argv)
