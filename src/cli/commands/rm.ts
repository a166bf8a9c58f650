import type { Command } from 'commander'
import { clientFor, type RemoveResult } from '../../agent/index.js'
import { printResult } from '../output.js'

/** `edgestar rm NAME`. */
export function register(program: Command): void {
  program
    .command('rm')
    .description(
      'stop and remove a deployment: container, written files, logs; its image chunks become collectable',
    )
    .argument('<name>', 'deployment name')
    .option('--socket <path>', 'agent socket (env EDGESTAR_SOCKET)')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { socket?: string; json?: boolean }) => {
      const result = await clientFor(options).call<RemoveResult>('remove', { name })
      const note = result.note === undefined ? '' : ` (its program ${result.note})`
      printResult(options, result, () => `${name} removed${note}`)
    })
}
