import { destination, type Logger, pino, stdTimeFunctions } from 'pino'

export type { Logger }

// The daemons (`edgestar agent`, `edgestar mount`) log every event at info; one-shot commands
// print their result, and their info events would only clutter a terminal.
const DAEMON_COMMANDS = new Set(['agent', 'mount'])
const level =
  process.env.EDGESTAR_LOG_LEVEL ?? (DAEMON_COMMANDS.has(process.argv[2] ?? '') ? 'info' : 'warn')

/**
 * The process-wide JSON-lines logger (one event per line, on stderr so stdout stays
 * free for command output). Modules take a child with their context:
 * `rootLogger.child({ module: 'fetch', layer })`. EDGESTAR_LOG_LEVEL sets the level
 * (`silent` turns it off); the default is info for the daemons and warn for other commands.
 */
export const rootLogger: Logger = pino(
  {
    level,
    base: { pid: process.pid },
    timestamp: stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: ['*.authorization', '*.password', '*.token'], censor: '[REDACTED]' },
  },
  destination({ fd: 2, sync: true }),
)

/** A child logger for one module, carrying its fixed context fields. */
export function moduleLogger(module: string, context: Record<string, unknown> = {}): Logger {
  return rootLogger.child({ module, ...context })
}
