import type { Command } from 'commander'
import { clientFor, type DeploymentInfo } from '../../agent/index.js'
import { printResult } from '../output.js'

/** `edgestar stop NAME`. */
export function register(program: Command): void {
  program
    .command('stop')
    .description("stop a deployment's container (it stays stopped across agent restarts)")
    .argument('<name>', 'deployment name')
    .option('--socket <path>', 'agent socket (env EDGESTAR_SOCKET)')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { socket?: string; json?: boolean }) => {
      const result = await clientFor(options).call<DeploymentInfo>('stop', { name })
      // The reason says "stopped on request", and why it took the stop timeout if it did.
      const text = result.reason?.startsWith('stopped') ? result.reason : 'stopped'
      printResult(options, result, () => `${name} ${text}`)
    })
}
