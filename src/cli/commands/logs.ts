import type { Command } from 'commander'
import { type ApiMessage, clientFor } from '../../agent/index.js'

/** `edgestar logs NAME [-f]`: the container's output kept by the agent. */
export function register(program: Command): void {
  program
    .command('logs')
    .description("print a deployment's container output (size-limited, rotated files)")
    .argument('<name>', 'deployment name')
    .option(
      '-f, --follow',
      'keep printing new output, across restarts, until the container has exited for good',
    )
    .option('--socket <path>', 'agent socket (env EDGESTAR_SOCKET)')
    .option('--json', 'print one JSON line per piece of output ({"ok": true, "data": text})')
    .action(
      async (name: string, options: { follow?: boolean; socket?: string; json?: boolean }) => {
        const onMessage = (message: ApiMessage): void => {
          if (message.type !== 'log') return
          const text = Buffer.from(message.data, 'base64')
          if (options.json)
            process.stdout.write(`${JSON.stringify({ ok: true, data: text.toString('utf8') })}\n`)
          else process.stdout.write(text)
        }
        const stream = clientFor(options).open(
          'logs',
          { name, follow: options.follow === true },
          onMessage,
        )
        process.once('SIGINT', () => {
          stream.close()
          process.exit(0)
        })
        await stream.result
      },
    )
}
