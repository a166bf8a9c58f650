import type { Command } from 'commander'
import { clientFor, type DeploymentInfo } from '../../agent/index.js'
import { printResult } from '../output.js'

/** `edgestar start NAME`. */
export function register(program: Command): void {
  program
    .command('start')
    .description('start a stopped deployment again')
    .argument('<name>', 'deployment name')
    .option('--socket <path>', 'agent socket (env EDGESTAR_SOCKET)')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { socket?: string; json?: boolean }) => {
      const result = await clientFor(options).call<DeploymentInfo>('start', { name })
      printResult(options, result, () => `${name} started`)
    })
}
