import type { Command } from 'commander'
import { type UnmountResult, unmountDir } from '../../fs/index.js'
import { parseSeconds } from '../options.js'
import { printResult } from '../output.js'

interface UmountOptions {
  json?: boolean
  force?: boolean
  timeout: string
  exitTimeout: string
}

/** `edgestar umount DIR`: stops the edgestar mount at DIR (clean, or forced when stuck). */
export function register(program: Command): void {
  program
    .command('umount')
    .description(
      'unmount an image mounted with `edgestar mount`: the mount is unmounted cleanly ' +
        '(refused while in use, like umount(8)) and its serving process is waited for until ' +
        'it has recorded its last chunks and exited; a mount whose process is gone or stuck ' +
        "is aborted (fusectl) and detached. A deployment's mount belongs to the agent: stop " +
        'the deployment instead',
    )
    .argument('<dir>', 'mount point')
    .option('--timeout <seconds>', 'wait this long for a clean unmount before forcing it', '10')
    .option(
      '--exit-timeout <seconds>',
      'then wait this long for the serving process to exit (it finishes its chunk writes)',
      '15',
    )
    .option(
      '--force',
      "abort a mount that is in use, or a deployment's mount (the agent keeps running); " +
        'readers inside then get errors',
    )
    .option('--json', 'print the result as JSON')
    .action(async (dir: string, options: UmountOptions) => {
      const result = await unmountDir(dir, {
        unmountMs: parseSeconds('--timeout', options.timeout) * 1000,
        exitMs: parseSeconds('--exit-timeout', options.exitTimeout) * 1000,
        force: options.force ?? false,
      })
      if (!result.servingExited) warnStillRunning(result, options.exitTimeout)
      const why = options.force ? '--force' : 'its server was gone or stuck'
      printResult(options, { ok: true, ...result }, () =>
        result.how === 'signalled'
          ? `unmounted ${result.mountpoint}`
          : `unmounted ${result.mountpoint} (aborted: ${why})`,
      )
    })
}

// The unmount itself worked, so the command succeeds; the warning says why the state
// directory may not be settled yet.
function warnStillRunning(result: UnmountResult, exitTimeout: string): void {
  process.stderr.write(
    `warning: the serving process ${result.servingPid} is still running ${exitTimeout} s ` +
      'after the unmount (it records the chunks it is writing, then exits)\n' +
      `hint: wait for it (\`ps -p ${result.servingPid}\`) before opening the same state ` +
      'directory again, or chunks it has not recorded are fetched again; its log is the ' +
      'mount --log-file\n',
  )
}
