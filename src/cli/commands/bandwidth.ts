import type { Command } from 'commander'
import { clientFor, formatDuration } from '../../agent/index.js'
import { parseDuration } from '../../config.js'
import { formatBytes, parseByteSize } from '../../fetch/index.js'
import { printResult } from '../output.js'

/** `edgestar bandwidth [RATE]`: show or set the agent's background fetch cap. */
export function register(program: Command): void {
  program
    .command('bandwidth')
    .description(
      'show or change the background fetch cap of the running agent (kept across restarts)',
    )
    .argument('[rate]', 'bytes per second, e.g. 256KiB, 2MB; 0 or "off" removes the cap')
    .option(
      '--offline-wait <duration>',
      'also set how long reads of missing chunks wait for the link, e.g. 500ms, 10s, 2m ' +
        '(a plain number is milliseconds)',
    )
    .option('--socket <path>', 'agent socket (env EDGESTAR_SOCKET)')
    .option('--json', 'print JSON')
    .action(
      async (
        rate: string | undefined,
        options: { offlineWait?: string; socket?: string; json?: boolean },
      ) => {
        // Checked before anything changes: a bad value must not leave the cap half-set.
        const waitMs =
          options.offlineWait === undefined
            ? undefined
            : parseDuration(options.offlineWait, '--offline-wait')
        const client = clientFor(options)
        const params =
          rate === undefined
            ? {}
            : {
                capBytesPerSec: /^(off|none|unlimited)$/i.test(rate)
                  ? null
                  : parseByteSize(rate, 'RATE'),
              }
        const result = await client.call<{ capBytesPerSec: number | null }>('bandwidth', params)
        const wait = await client.call<{ offlineWaitMs: number }>(
          'offline-wait',
          waitMs === undefined ? {} : { waitMs },
        )
        printResult(options, { ...result, ...wait }, () =>
          [
            `background cap  ${capText(result.capBytesPerSec)}`,
            `offline wait    ${formatDuration(wait.offlineWaitMs)}`,
          ].join('\n'),
        )
      },
    )
}

function capText(capBytesPerSec: number | null): string {
  return capBytesPerSec === null ? 'none' : `${formatBytes(capBytesPerSec)}/s`
}
