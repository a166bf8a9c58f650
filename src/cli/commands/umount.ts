import type { Command } from 'commander'
import { unmountDir } from '../../fs/index.js'
import { printResult } from '../output.js'

interface UmountOptions {
  json?: boolean
  timeout: string
}

/** `edgestar umount DIR`: stops the edgestar mount at DIR (clean, or forced when stuck). */
export function register(program: Command): void {
  program
    .command('umount')
    .description(
      'unmount an image mounted with `edgestar mount`: the serving process unmounts ' +
        'cleanly; a mount whose process is gone or stuck is aborted (fusectl) and detached',
    )
    .argument('<dir>', 'mount point')
    .option('--timeout <seconds>', 'wait this long for a clean unmount before forcing it', '10')
    .option('--json', 'print the result as JSON')
    .action(async (dir: string, options: UmountOptions) => {
      const result = await unmountDir(dir, Number(options.timeout) * 1000)
      printResult(options, { ok: true, ...result }, () =>
        result.how === 'signalled'
          ? `unmounted ${result.mountpoint}`
          : `unmounted ${result.mountpoint} (forced: its server was gone or stuck)`,
      )
    })
}
