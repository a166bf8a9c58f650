import type { Command } from 'commander'
import { clientFor, type DeploymentInfo, formatFetched, formatTable } from '../../agent/index.js'
import { printResult } from '../output.js'

/** `edgestar ps`: one line per deployment. */
export function register(program: Command): void {
  program
    .command('ps')
    .description('list deployments on this device')
    .option('--socket <path>', 'agent socket (env EDGESTAR_SOCKET)')
    .option('--json', 'print {ok, deployments} as JSON')
    .action(async (options: { socket?: string; json?: boolean }) => {
      const list = await clientFor(options).call<DeploymentInfo[]>('list')
      printResult(options, { deployments: list }, () =>
        list.length === 0
          ? 'no deployments'
          : formatTable(
              ['NAME', 'STATE', 'IMAGE', 'LOCAL', 'RESTARTS', 'REASON'],
              list.map((d) => [
                d.name,
                d.state,
                d.image,
                formatFetched(d),
                String(d.restartCount),
                d.reason ?? '',
              ]),
            ),
      )
    })
}
